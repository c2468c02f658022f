"""Cluster tuning: the search space as a Katib v1beta1 Experiment (`katib_runs` creates and
awaits it).

Each Katib trial is a batch/v1 Job running ``mlstack tune-trial --<param>=<value> …`` in
the pipeline image; the trial prints ``<objective>=<value>`` lines that Katib's StdOut
metrics collector reads. ``trial_command`` and ``parse_trial_args`` are the two ends of
that command line, both derived from the search space.

The Experiment is a plain dict, the API's JSON: the Katib SDK's models only help build it,
so that fields newer than the installed SDK (``feasibleSpace.distribution``, Katib 0.18+)
are there whichever SDK version is installed. What Katib's controller and
StdOut collector do with it is in `mlstack.tuning.katib_controller`.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from kubeflow.katib import (
    ApiClient,
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
from mlstack.config.modelling import TuningSettings
from mlstack.tuning.space import (
    KATIB_ALGORITHMS,
    as_text,
    describe,
    grid_size,
    katib_parameters,
    typed_params,
)

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
PARAMETER_REFERENCE = "${{trialParameters.{name}}}"
"""How a trial template names a trial parameter (`.format(name=…)`)."""
# Katib's consts.TrialTemplateParamReplaceFormatRegex
_REFERENCE_PATTERN = re.compile(r"\$\{trialParameters\..+?\}")
_FLAG = re.compile(r"--([^=]+)=(.*)", re.DOTALL)


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
    flags = [
        f"{flag(p.name)}={PARAMETER_REFERENCE.format(name=p.name)}" for p in settings.tuning.space
    ]
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
) -> dict[str, Any]:
    """The Katib Experiment for ``settings.tuning`` and ``settings.katib``, as the plain dict
    the Kubernetes API receives.

    ``training_command`` is the trial's program and leading arguments (default
    ``mlstack tune-trial``); one flag per search-space parameter follows it. Numeric
    parameters carry ``feasibleSpace.distribution`` (``logUniform`` for the log-scale ones).
    """
    tuning, katib = settings.tuning, settings.katib
    _check_katib_limits(settings.tuning)
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
            algorithm=_algorithm(settings.tuning),
            early_stopping=_early_stopping(settings.tuning),
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


def _check_katib_limits(tuning: TuningSettings) -> None:
    """Settings Katib's admission webhook or grid suggestion would reject, named up front."""
    tuning = tuning
    if tuning.algorithm == "grid" and tuning.max_trials > (size := grid_size(tuning.space)):
        raise ValueError(
            f"tuning.max_trials={tuning.max_trials} exceeds the {size} grid points; "
            "Katib's grid search rejects that"
        )


def _algorithm(tuning: TuningSettings) -> V1beta1AlgorithmSpec:
    tuning = tuning
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


def _early_stopping(tuning: TuningSettings) -> V1beta1EarlyStoppingSpec | None:
    tuning = tuning
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
