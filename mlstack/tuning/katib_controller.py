"""What Katib's controller and StdOut metrics collector do with an Experiment, so a trial can
be run and read outside a cluster exactly as Katib would: ``trial_run_spec`` and
``trial_container`` build the trial's Job from the template, ``parse_stdout_metrics`` reads
its output (Katib v0.19.0 sources: ``pkg/controller.v1beta1/experiment/manifest/
generator.go``, ``pkg/metricscollector/v1beta1/file-metricscollector``). The rehearsal and
the tests run trials with it; the cluster runs them with Katib itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from mlstack.tuning.katib import PARAMETER_REFERENCE, PRIMARY_CONTAINER
from mlstack.tuning.space import as_text

# Katib's consts.TrialTemplateMetaReplaceFormatRegex
_META_REFERENCE = re.compile(r"\$\{trialSpec\.(.+?)\}")
_META_INDEX = re.compile(r"(.+)\[(.+)]")
# Katib's metricscollector/v1beta1/common.DefaultFilter, verbatim (a Go regular expression)
DEFAULT_METRICS_FILTER = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"
# what Katib records when a trial never printed its objective (consts.UnavailableMetricValue)
UNAVAILABLE_METRIC_VALUE = "unavailable"


def trial_run_spec(
    experiment: Mapping[str, Any],
    assignments: Mapping[str, Any],
    trial_name: str = "trial",
    namespace: str | None = None,
) -> dict[str, Any]:
    """The trial's Job as Katib's controller creates it from ``experiment`` for the parameter
    values ``assignments`` (by search-space name).

    As ``GetRunSpecWithHyperParameters`` does: the trial template is serialised to JSON, each
    ``${trialParameters.<name>}`` is replaced by its value's text (a parameter's ``reference``
    names an assignment, or the trial's metadata as ``${trialSpec.Name}`` etc.), the text is
    read back, and the Job gets the trial's name and namespace. Values that are not strings
    are written as Katib's suggestion services write them (``repr`` of a float, ``str`` of an
    int); every assignment must be a trial parameter and every trial parameter resolvable.
    """
    template = experiment["spec"]["trialTemplate"]
    spec = template.get("trialSpec")
    if spec is None:
        raise ValueError("the trial template has no trialSpec (a ConfigMap source is not read)")
    namespace = namespace or experiment.get("metadata", {}).get("namespace") or "default"
    values = {
        name: value if isinstance(value, str) else as_text(value)
        for name, value in assignments.items()
    }
    placeholders: dict[str, str] = {}
    consumed = 0
    for parameter in template.get("trialParameters") or []:
        name, reference = parameter["name"], parameter.get("reference", "")
        meta = _META_REFERENCE.search(reference)
        if meta is None:
            if reference not in values:
                raise ValueError(
                    f"trial parameter {name} references {reference!r}, which is not among the "
                    f"assignments {sorted(values)}"
                )
            placeholders[name] = values[reference]
            consumed += 1
            continue
        placeholders[name] = _meta_value(meta.group(1), spec, trial_name, namespace, reference)
    if consumed != len(values):
        raise ValueError(
            f"assignments {sorted(values)} are not all trial parameters of the template "
            f"({sorted(p['name'] for p in template.get('trialParameters') or [])})"
        )
    text = json.dumps(spec, ensure_ascii=False)
    for name, value in placeholders.items():
        text = text.replace(PARAMETER_REFERENCE.format(name=name), value)
    try:
        run_spec = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"the substituted trial template is not valid JSON: {err}") from err
    run_spec.setdefault("metadata", {}).update(name=trial_name, namespace=namespace)
    return run_spec


def _meta_value(
    key: str, spec: Mapping[str, Any], trial_name: str, namespace: str, reference: str
) -> str:
    """A ``${trialSpec.<key>}`` reference: the trial's name, namespace, kind, API version,
    or one of the template's ``Labels[…]`` / ``Annotations[…]``."""
    index = None
    if (match := _META_INDEX.fullmatch(key)) is not None:
        key, index = match.group(1), match.group(2)
    metadata = spec.get("metadata") or {}
    simple = {
        "Name": trial_name,
        "Namespace": namespace,
        "Kind": spec.get("kind", ""),
        "APIVersion": spec.get("apiVersion", ""),
    }
    if key in simple and index is None:
        return simple[key]
    field = {"Annotations": "annotations", "Labels": "labels"}.get(key)
    if field is not None and index is not None and index in (metadata.get(field) or {}):
        return metadata[field][index]
    raise ValueError(f"illegal reference of trial metadata: {reference}")


def trial_container(
    experiment: Mapping[str, Any],
    assignments: Mapping[str, Any],
    trial_name: str = "trial",
    namespace: str | None = None,
) -> dict[str, Any]:
    """The primary (training) container of the trial Katib runs for ``assignments``: the
    container of ``trial_run_spec`` with ``command``, ``args`` and ``env`` always present
    (empty lists when the template has none).

    Its ``command`` is the whole program (``mlstack tune-trial …``), so it runs the same
    under Kubernetes and Docker semantics, whatever the image's ENTRYPOINT. On a cluster,
    Katib's StdOut collector then runs it as ``sh -c "<command and args joined by spaces>
    1>/var/log/katib/metrics.log 2>&1 && …"`` and parses stdout and stderr together with
    ``parse_stdout_metrics``.
    """
    run_spec = trial_run_spec(experiment, assignments, trial_name, namespace)
    primary = experiment["spec"]["trialTemplate"].get("primaryContainerName", PRIMARY_CONTAINER)
    containers = run_spec["spec"]["template"]["spec"]["containers"]
    container = next((c for c in containers if c.get("name") == primary), None)
    if container is None:
        raise ValueError(f"the trial template has no container named {primary!r}")
    return {
        **container,
        "command": list(container.get("command") or []),
        "args": list(container.get("args") or []),
        "env": list(container.get("env") or []),
    }


def _go_regex(pattern: str) -> re.Pattern[str]:
    """A Go (RE2) pattern as Python reads it the same way: ASCII classes, Go's ``\\s``."""
    return re.compile(pattern.replace(r"\s", r"[\t\n\f\r ]"), re.ASCII)


def parse_stdout_metrics(
    text: str, metrics: Sequence[str], filters: Sequence[str] | None = None
) -> dict[str, str]:
    """The last value of each metric in a trial's output, read as Katib's StdOut collector
    reads it; ``metrics`` is the objective first, then any additional metric names.

    As ``parseLogsInTextFormat`` does: line by line, every match of each filter (Katib's
    ``DEFAULT_METRICS_FILTER`` unless ``filters`` are given) whose first group is one of
    ``metrics`` records the second group, trimmed, as text (a line may start with an
    RFC 3339 timestamp). The values are Katib's text (``"0.361234"``; an empty string for
    ``pr_auc=nan``, which the filter matches with no digits). A metric never printed is left
    out, except the objective, which Katib records as ``"unavailable"``.
    """
    if not metrics:
        raise ValueError("no metric names: the objective comes first")
    patterns = [_go_regex(f) for f in (filters or [DEFAULT_METRICS_FILTER])]
    patterns = [p for p in patterns if p.groups >= 2]  # Katib skips a match without two groups
    found: dict[str, str] = {}
    for line in text.split("\n"):
        if not any(m in line for m in metrics):
            continue
        for pattern in patterns:
            for match in pattern.finditer(line):
                name, value = (match.group(1) or "").strip(), (match.group(2) or "").strip()
                if name in metrics:
                    found[name] = value
    if metrics[0] not in found:
        return {metrics[0]: UNAVAILABLE_METRIC_VALUE}
    return found


def experiment_metric_names(experiment: Mapping[str, Any]) -> list[str]:
    """The metrics Katib collects for an Experiment: the objective, then the additional."""
    objective = experiment["spec"]["objective"]
    return [objective["objectiveMetricName"], *(objective.get("additionalMetricNames") or [])]
