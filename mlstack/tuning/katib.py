"""Cluster tuning: the search space as a Katib v1beta1 Experiment, created and awaited.

Each Katib trial is a batch/v1 Job running ``mlstack tune-trial --<param>=<value> …`` in
the pipeline image; the trial prints ``<objective>=<value>`` lines that Katib's StdOut
metrics collector reads. ``trial_command`` and ``parse_trial_args`` are the two ends of
that command line, both derived from the search space.

The Experiment is a plain dict, the API's JSON: the Katib SDK's models only help build it,
so that fields newer than the installed SDK (``feasibleSpace.distribution``, Katib 0.18+)
are there whichever SDK version is installed. ``trial_container`` and
``parse_stdout_metrics`` do what Katib's controller and StdOut collector do with it, so a
trial can be run and read outside a cluster exactly as Katib would (Katib v0.19.0 sources:
``pkg/controller.v1beta1/experiment/manifest/generator.go``,
``pkg/metricscollector/v1beta1/file-metricscollector``).
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from kubeflow.katib import (
    ApiClient,
    KatibClient,
    V1beta1AlgorithmSetting,
    V1beta1AlgorithmSpec,
    V1beta1CollectorSpec,
    V1beta1EarlyStoppingSetting,
    V1beta1EarlyStoppingSpec,
    V1beta1Experiment,
    V1beta1ExperimentSpec,
    V1beta1MetricsCollectorSpec,
    V1beta1MetricStrategy,
    V1beta1ObjectiveSpec,
    V1beta1TrialParameterSpec,
    V1beta1TrialTemplate,
)
from kubernetes import client as k8s

from mlstack.config import ParamSpec, Settings
from mlstack.tuning.space import (
    KATIB_ALGORITHMS,
    as_text,
    describe,
    grid_size,
    katib_parameters,
    typed_params,
)

log = logging.getLogger(__name__)

API_VERSION = "kubeflow.org/v1beta1"
KIND = "Experiment"
PRIMARY_CONTAINER = "training"
TRIAL_ENTRYPOINT = ("mlstack", "tune-trial")
METRICS_COLLECTOR = "StdOut"
OBJECTIVE_STRATEGY = "latest"
EARLY_STOPPING_ALGORITHM = "medianstop"
# Katib's defaults for a batch/v1 Job trial, spelled out so the manifest stands on its own
JOB_SUCCESS_CONDITION = 'status.conditions.#(type=="Complete")#|#(status=="True")#'
JOB_FAILURE_CONDITION = 'status.conditions.#(type=="Failed")#|#(status=="True")#'
TRIAL_POD_ANNOTATIONS = {"sidecar.istio.io/inject": "false"}
TRIAL_RESOURCES = {
    "requests": {"cpu": "1", "memory": "2Gi"},
    "limits": {"cpu": "2", "memory": "4Gi"},
}
_REFERENCE = "${{trialParameters.{name}}}"
# Katib's consts.TrialTemplateParamReplaceFormatRegex / TrialTemplateMetaReplaceFormatRegex
_REFERENCE_PATTERN = re.compile(r"\$\{trialParameters\..+?\}")
_META_REFERENCE = re.compile(r"\$\{trialSpec\.(.+?)\}")
_META_INDEX = re.compile(r"(.+)\[(.+)]")
# Katib's metricscollector/v1beta1/common.DefaultFilter, verbatim (a Go regular expression)
DEFAULT_METRICS_FILTER = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"
# what Katib records when a trial never printed its objective (consts.UnavailableMetricValue)
UNAVAILABLE_METRIC_VALUE = "unavailable"
_FLAG = re.compile(r"--([^=]+)=(.*)", re.DOTALL)


class KatibError(RuntimeError):
    """A Katib Experiment that could not be created, failed, or did not finish in time."""


# -- the trial command line ------------------------------------------------------------------
def flag(name: str) -> str:
    """The command-line flag of a parameter: ``learning_rate`` → ``--learning-rate``."""
    return "--" + name.replace("_", "-")


def trial_command(settings: Settings, entrypoint: Sequence[str] | None = None) -> list[str]:
    """The trial container's command: the entrypoint (default: `mlstack tune-trial` on the
    training set at ``katib.dataset_uri``), then one flag per search-space parameter whose
    value is Katib's ``${trialParameters.<name>}`` substitution."""
    if entrypoint is None:
        entrypoint = [*TRIAL_ENTRYPOINT, "--dataset", settings.katib.dataset_uri]
    flags = [f"{flag(p.name)}={_REFERENCE.format(name=p.name)}" for p in settings.tuning.space]
    return [*entrypoint, *flags]


def parse_trial_args(argv: Sequence[str], space: Sequence[ParamSpec]) -> dict[str, Any]:
    """``["--learning-rate=0.1", …]`` back into typed parameters of the space."""
    names = {flag(spec.name)[2:]: spec.name for spec in space}
    assignments: dict[str, str] = {}
    for arg in argv:
        match = _FLAG.fullmatch(arg)
        if match is None or match.group(1) not in names:
            known = ", ".join(f"--{n}=…" for n in names)
            raise ValueError(f"unexpected trial argument {arg!r}; expected {known}")
        assignments[names[match.group(1)]] = match.group(2)
    return typed_params(assignments, space)


# -- a trial, as Katib runs and reads it ---------------------------------------------------
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
        text = text.replace(_REFERENCE.format(name=name), value)
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


# -- the Experiment ------------------------------------------------------------------------
def build_experiment(
    settings: Settings, training_command: Sequence[str] | None = None
) -> dict[str, Any]:
    """The Katib Experiment for ``settings.tuning`` and ``settings.katib``, as the plain dict
    the Kubernetes API receives.

    ``training_command`` is the trial's program and leading arguments (default
    ``mlstack tune-trial``); one flag per search-space parameter follows it. Numeric
    parameters carry ``feasibleSpace.distribution`` (``logUniform`` for the log-scale ones).
    """
    tuning, katib = settings.tuning, settings.katib
    _check_katib_limits(settings)
    command = trial_command(settings, training_command)
    choices = [as_text(c) for spec in tuning.space for c in spec.choices or []]
    _check_shell_safe([*command, *choices])
    experiment = V1beta1Experiment(
        api_version=API_VERSION,
        kind=KIND,
        metadata=k8s.V1ObjectMeta(name=katib.experiment_name, namespace=katib.namespace),
        spec=V1beta1ExperimentSpec(
            objective=V1beta1ObjectiveSpec(
                type=tuning.direction,
                objective_metric_name=tuning.objective,
                # compare trials by their final value, as the local study does
                metric_strategies=[
                    V1beta1MetricStrategy(name=tuning.objective, value=OBJECTIVE_STRATEGY)
                ],
            ),
            algorithm=_algorithm(settings),
            early_stopping=_early_stopping(settings),
            # A run's trial budget (a pipeline parameter) caps both: Katib rejects either
            # above maxTrialCount, and no more trials than the budget can run or fail anyway.
            parallel_trial_count=min(tuning.parallel_trials, tuning.max_trials),
            max_trial_count=tuning.max_trials,
            max_failed_trial_count=min(tuning.max_failed_trials, tuning.max_trials),
            metrics_collector_spec=V1beta1MetricsCollectorSpec(
                collector=V1beta1CollectorSpec(kind=METRICS_COLLECTOR)
            ),
            # plain dicts: they carry `distribution`, which Katib SDK 0.14's models lack
            parameters=katib_parameters(tuning.space, grid_points=tuning.algorithm == "grid"),
            trial_template=_trial_template(settings, command),
        ),
    )
    return ApiClient().sanitize_for_serialization(experiment)


def _check_shell_safe(command: Sequence[str]) -> None:
    """Katib's StdOut collector runs the trial as ``sh -c "<command joined by spaces> 1>…"``
    (pkg/webhook/v1beta1/pod/utils.go), unquoted: an argument the shell would split or
    expand is an error here rather than a broken trial on the cluster."""
    for arg in command:
        if _REFERENCE_PATTERN.search(arg):
            continue  # a parameter reference, checked through the space's values
        if shlex.quote(arg) != arg:
            raise ValueError(
                f"trial command argument or parameter value {arg!r} needs shell quoting; "
                "Katib's StdOut collector joins the trial command with spaces into `sh -c`, "
                "unquoted"
            )


def _check_katib_limits(settings: Settings) -> None:
    """Settings Katib's admission webhook or grid suggestion would reject, named up front."""
    tuning = settings.tuning
    if tuning.algorithm == "grid" and tuning.max_trials > (size := grid_size(tuning.space)):
        raise ValueError(
            f"tuning.max_trials={tuning.max_trials} exceeds the {size} grid points; "
            "Katib's grid search rejects that"
        )


def _algorithm(settings: Settings) -> V1beta1AlgorithmSpec:
    tuning = settings.tuning
    name = KATIB_ALGORITHMS[tuning.algorithm]
    seeded = name in ("tpe", "random")
    return V1beta1AlgorithmSpec(
        algorithm_name=name,
        algorithm_settings=(
            [V1beta1AlgorithmSetting(name="random_state", value=str(tuning.seed))]
            if seeded
            else None
        ),
    )


def _early_stopping(settings: Settings) -> V1beta1EarlyStoppingSpec | None:
    tuning = settings.tuning
    if tuning.early_stopping != "median":
        return None
    return V1beta1EarlyStoppingSpec(
        algorithm_name=EARLY_STOPPING_ALGORITHM,
        algorithm_settings=[
            V1beta1EarlyStoppingSetting(
                name="min_trials_required", value=str(tuning.early_stopping_min_trials)
            )
        ],
    )


def _trial_template(settings: Settings, command: list[str]) -> V1beta1TrialTemplate:
    return V1beta1TrialTemplate(
        primary_container_name=PRIMARY_CONTAINER,
        success_condition=JOB_SUCCESS_CONDITION,
        failure_condition=JOB_FAILURE_CONDITION,
        trial_parameters=[
            V1beta1TrialParameterSpec(
                name=spec.name, reference=spec.name, description=describe(spec)
            )
            for spec in settings.tuning.space
        ],
        trial_spec=_trial_job(settings, command),
    )


def _trial_job(settings: Settings, command: list[str]) -> k8s.V1Job:
    """The batch/v1 Job of one trial: a single training container, no Istio sidecar."""
    container = k8s.V1Container(
        name=PRIMARY_CONTAINER,
        image=settings.pipeline.base_image,
        command=command,
        # scikit-learn's OpenMP threads: as many as the CPU limit, not the node's cores
        env=[
            k8s.V1EnvVar(name="OMP_NUM_THREADS", value=TRIAL_RESOURCES["limits"]["cpu"]),
            *_object_store_env(settings),
        ],
        resources=k8s.V1ResourceRequirements(**TRIAL_RESOURCES),
    )
    pod = k8s.V1PodTemplateSpec(
        metadata=k8s.V1ObjectMeta(annotations=dict(TRIAL_POD_ANNOTATIONS)),
        spec=k8s.V1PodSpec(
            restart_policy="Never",
            service_account_name=settings.katib.service_account,
            containers=[container],
        ),
    )
    return k8s.V1Job(api_version="batch/v1", kind="Job", spec=k8s.V1JobSpec(template=pod))


def _object_store_env(settings: Settings) -> list[k8s.V1EnvVar]:
    """A trial reads the training set from the object store: its endpoint, and its key pair
    from the Secret the pipeline's steps get (by name; never the values)."""
    env = []
    if settings.object_store.endpoint_url:
        env.append(
            k8s.V1EnvVar(
                name="MLSTACK_OBJECT_STORE__ENDPOINT_URL",
                value=settings.object_store.endpoint_url,
            )
        )
    secret = settings.pipeline.object_store_secret
    if settings.mode == "cluster" and secret:
        for key, name in settings.pipeline.object_store_secret_keys.items():
            source = k8s.V1SecretKeySelector(name=secret, key=key)
            env.append(
                k8s.V1EnvVar(name=name, value_from=k8s.V1EnvVarSource(secret_key_ref=source))
            )
    return env


def experiment_manifest(settings: Settings) -> dict[str, Any]:
    """The Experiment as a plain dict, as the Kubernetes API receives it; its trials read the
    training set at ``katib.dataset_uri`` (the pipeline passes its own artifact's URI)."""
    return build_experiment(settings)


def write_manifest(settings: Settings, path: Path) -> Path:
    """Write the Experiment as YAML (``manifests/katib-experiment.yaml`` in the repo)."""
    header = (
        "# Katib Experiment rendered from the search space in the config "
        "(mlstack.tuning.katib.write_manifest).\n# Do not edit: change the config and re-render.\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump(experiment_manifest(settings), sort_keys=False))
    return path


# -- running it ----------------------------------------------------------------------------
class _ConfiguredKatibClient(KatibClient):
    """A KatibClient for the API server of an explicit Kubernetes ``Configuration``.

    KatibClient 0.14 accepts ``client_configuration`` but only loads kubeconfig into it; its
    API calls go through the process-wide default configuration, and its constructor
    requires a kubeconfig. This sets the same attributes from the given configuration.
    """

    def __init__(self, configuration: k8s.Configuration) -> None:
        self.in_cluster = False
        self.api_instance = k8s.CustomObjectsApi(k8s.ApiClient(configuration))
        self.api_client = ApiClient()


def katib_client(configuration: k8s.Configuration | None = None) -> KatibClient:
    """A KatibClient: kubeconfig or in-cluster config, or the server ``configuration`` names."""
    if configuration is None:
        return KatibClient()
    return _ConfiguredKatibClient(configuration)


def run_katib(
    settings: Settings,
    client: KatibClient | None = None,
    training_command: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Create the Experiment, wait for it to succeed, and return the best trial's parameters.

    `training_command` is the trial's program and leading arguments (e.g. the dataset's URI),
    as in `build_experiment`.
    """
    katib = settings.katib
    client = client or katib_client()
    _create(client, build_experiment(settings, training_command), katib.namespace)
    log.info("Katib Experiment %s/%s created", katib.namespace, katib.experiment_name)
    experiment = wait_for_experiment(settings, client)
    params, value, trial_name = best_trial(experiment, settings)
    log.info(
        "Katib Experiment %s/%s succeeded: best trial %s, %s=%s",
        katib.namespace,
        katib.experiment_name,
        trial_name,
        settings.tuning.objective,
        value,
    )
    return params


def _create(client: KatibClient, experiment: dict[str, Any], namespace: str) -> None:
    name = experiment["metadata"]["name"]
    try:
        client.create_experiment(experiment, namespace=namespace)
    except RuntimeError as err:
        # KatibClient 0.14 wraps the ApiException in a RuntimeError; the status is on the cause
        status = getattr(err.__cause__ or err.__context__, "status", None)
        if status == 409:
            raise KatibError(
                f"Katib Experiment {namespace}/{name} already exists: delete it "
                f"(kubectl delete experiment {name} -n {namespace}) or set katib.experiment_name"
            ) from err
        raise KatibError(
            f"could not create Katib Experiment {namespace}/{name}: {_reason(err)}"
        ) from err


def wait_for_experiment(settings: Settings, client: KatibClient) -> dict[str, Any]:
    """Poll the Experiment until it has Succeeded; a Failed one or a timeout is a KatibError."""
    katib = settings.katib
    label = f"Katib Experiment {katib.namespace}/{katib.experiment_name}"
    deadline = time.monotonic() + katib.timeout_seconds
    while True:
        try:
            experiment = client.get_experiment(katib.experiment_name, namespace=katib.namespace)
        except RuntimeError as err:
            raise KatibError(f"could not read {label}: {_reason(err)}") from err
        failed = _condition(experiment, "Failed")
        if failed is not None:
            raise KatibError(
                f"{label} failed: {failed.get('reason', '')}: {failed.get('message', '')}"
            )
        if _condition(experiment, "Succeeded") is not None:
            return experiment
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise KatibError(
                f"{label} did not succeed within katib.timeout_seconds={katib.timeout_seconds} "
                f"(last condition: {_last_condition(experiment)}); it is left running"
            )
        time.sleep(min(katib.poll_seconds, remaining))


def best_trial(
    experiment: dict[str, Any], settings: Settings
) -> tuple[dict[str, Any], float | None, str]:
    """The optimal trial of a finished Experiment: typed parameters, objective value, name."""
    katib = settings.katib
    optimal = (experiment.get("status") or {}).get("currentOptimalTrial") or {}
    assignments = {a["name"]: a["value"] for a in optimal.get("parameterAssignments") or []}
    if not assignments:
        raise KatibError(
            f"Katib Experiment {katib.namespace}/{katib.experiment_name} has no optimal trial "
            "(did any trial report the objective metric?)"
        )
    metrics = (optimal.get("observation") or {}).get("metrics") or []
    value = next(
        (_metric_value(m) for m in metrics if m.get("name") == settings.tuning.objective), None
    )
    return typed_params(assignments, settings.tuning.space), value, optimal.get("bestTrialName", "")


def _metric_value(metric: dict[str, Any]) -> float | None:
    """A metric's final reported value (Katib reports values as strings)."""
    latest = metric.get(OBJECTIVE_STRATEGY)
    return None if latest in (None, "", "unavailable") else float(latest)


def _condition(experiment: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for condition in (experiment.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return condition
    return None


def _last_condition(experiment: dict[str, Any]) -> str:
    conditions = (experiment.get("status") or {}).get("conditions") or []
    return conditions[-1].get("type", "none") if conditions else "none"


def _reason(err: BaseException) -> str:
    """The API server's own words for a failed call, without KatibClient's wrapping."""
    cause = err.__cause__ or err.__context__
    status, reason = getattr(cause, "status", None), getattr(cause, "reason", None)
    if status is not None:
        return f"HTTP {status} {reason}: {getattr(cause, 'body', '') or ''}".strip()
    return " ".join(str(err).split())
