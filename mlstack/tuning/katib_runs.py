"""Running an Experiment on a cluster: create it through the Katib SDK, wait for it, and read
the best trial's parameters (`run_katib`). The Experiment itself is `mlstack.tuning.katib`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from kubeflow.katib import ApiClient, KatibClient
from kubernetes import client as k8s

from mlstack.config import Settings
from mlstack.config.modelling import KatibSettings
from mlstack.tuning.katib import OBJECTIVE_STRATEGY, build_experiment
from mlstack.tuning.space import typed_params

log = logging.getLogger(__name__)


class KatibError(RuntimeError):
    """A Katib Experiment that could not be created, failed, or did not finish in time."""


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
    experiment = wait_for_experiment(settings.katib, client)
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


def wait_for_experiment(katib: KatibSettings, client: KatibClient) -> dict[str, Any]:
    """Poll the Experiment until it has Succeeded; a Failed one or a timeout is a KatibError."""
    katib = katib
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
