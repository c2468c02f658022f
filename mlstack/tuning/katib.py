"""Cluster tuning: the search space as a Katib v1beta1 Experiment, created and awaited.

Each Katib trial is a batch/v1 Job running ``mlstack tune-trial --<param>=<value> …`` in
the pipeline image; the trial prints ``<objective>=<value>`` lines that Katib's StdOut
metrics collector reads. ``trial_command`` and ``parse_trial_args`` are the two ends of
that command line, both derived from the search space.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
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
    describe,
    grid_size,
    katib_parameters,
    log_scale_names,
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


# -- the Experiment ------------------------------------------------------------------------
def build_experiment(
    settings: Settings, training_command: Sequence[str] | None = None
) -> V1beta1Experiment:
    """The Katib Experiment for ``settings.tuning`` and ``settings.katib``.

    ``training_command`` is the trial's program and leading arguments (default
    ``mlstack tune-trial``); one flag per search-space parameter follows it.
    """
    tuning, katib = settings.tuning, settings.katib
    _check_katib_limits(settings)
    uniform = log_scale_names(tuning.space)
    if uniform and tuning.algorithm != "grid":
        log.warning(
            "Katib 0.14 has no log-scale parameters: %s are sampled uniformly on the cluster",
            ", ".join(uniform),
        )
    command = trial_command(settings, training_command)
    return V1beta1Experiment(
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
            parallel_trial_count=tuning.parallel_trials,
            max_trial_count=tuning.max_trials,
            max_failed_trial_count=tuning.max_failed_trials,
            metrics_collector_spec=V1beta1MetricsCollectorSpec(
                collector=V1beta1CollectorSpec(kind=METRICS_COLLECTOR)
            ),
            parameters=katib_parameters(tuning.space, grid_points=tuning.algorithm == "grid"),
            trial_template=_trial_template(settings, command),
        ),
    )


def _check_katib_limits(settings: Settings) -> None:
    """Settings Katib's admission webhook or grid suggestion would reject, named up front."""
    tuning = settings.tuning
    if tuning.max_failed_trials > tuning.max_trials:
        raise ValueError(
            f"tuning.max_failed_trials={tuning.max_failed_trials} exceeds "
            f"tuning.max_trials={tuning.max_trials}; Katib rejects that"
        )
    if tuning.parallel_trials > tuning.max_trials:
        raise ValueError(
            f"tuning.parallel_trials={tuning.parallel_trials} exceeds "
            f"tuning.max_trials={tuning.max_trials}; Katib rejects that"
        )
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
        env=[k8s.V1EnvVar(name="OMP_NUM_THREADS", value=TRIAL_RESOURCES["limits"]["cpu"])],
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


def experiment_manifest(settings: Settings) -> dict[str, Any]:
    """The Experiment as a plain dict, as the Kubernetes API receives it; its trials read the
    training set at ``katib.dataset_uri`` (the pipeline passes its own artifact's URI)."""
    return ApiClient().sanitize_for_serialization(build_experiment(settings))


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


def _create(client: KatibClient, experiment: V1beta1Experiment, namespace: str) -> None:
    name = experiment.metadata.name
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
