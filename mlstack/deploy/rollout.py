"""Rollout, promote, rollback and automatic rollback of the model's InferenceService.

KServe keeps two rolled-out revisions: with `canaryTrafficPercent: P` a new revision gets P%
and the last rolled-out one the rest; removing the field promotes the new revision to 100%;
setting it to 0 sends all traffic back to the previous rolled-out revision. Each revision is
pinned to one registered model version through the predictor's `MLSTACK_SERVING__STORAGE_URI`
(`models:/<name>/<version>`), and the MLflow aliases follow: `challenger` while a version is a
canary, `champion` once promoted, and back on rollback. The cluster is changed first, so an
API error leaves the aliases (and the serving model) as they were.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client as k8s
from mlflow import MlflowClient

from mlstack.config import Settings
from mlstack.config.modelling import MlflowSettings
from mlstack.config.operations import DeploySettings
from mlstack.deploy.canary import Health, canary_health
from mlstack.deploy.errors import RolloutError
from mlstack.deploy.kube import get_isvc, update
from mlstack.deploy.names import KSERVE_STORAGE_ENV, MODEL_MOUNT, PREDICTOR_CONTAINER, STORAGE_ENV
from mlstack.registry import models as registry

log = logging.getLogger(__name__)

VERSION_ANNOTATION = "mlstack.io/model-version"
PREVIOUS_ANNOTATION = "mlstack.io/previous-model-version"


@dataclass(frozen=True)
class Traffic:
    """One revision's share of the predictor's traffic, as KServe reports it."""

    revision: str
    percent: int
    latest: bool
    tag: str | None = None


@dataclass
class Outcome:
    """What an operation did, and where traffic goes afterwards."""

    message: str
    traffic: list[Traffic] = field(default_factory=list)
    alias_messages: list[str] = field(default_factory=list)

    def report(self) -> str:
        lines = [self.message, *self.alias_messages, "traffic (as KServe reports it):"]
        lines += [
            f"  {t.revision}: {t.percent}%{' (latest)' if t.latest else ''}" for t in self.traffic
        ] or ["  (no traffic reported yet)"]
        return "\n".join(lines)


# -- reading ---------------------------------------------------------------------------------
def predictor_status(isvc: dict[str, Any]) -> dict[str, Any]:
    """`status.components.predictor` (empty before KServe has reconciled)."""
    return isvc.get("status", {}).get("components", {}).get("predictor", {}) or {}


def traffic(isvc: dict[str, Any]) -> list[Traffic]:
    """Where the predictor's traffic goes, from `status.components.predictor.traffic`."""
    return [
        Traffic(
            revision=t.get("revisionName", "?"),
            percent=int(t.get("percent", 0)),
            latest=bool(t.get("latestRevision", False)),
            tag=t.get("tag"),
        )
        for t in predictor_status(isvc).get("traffic", [])
    ]


def served_version(isvc: dict[str, Any]) -> str | None:
    """The model version the spec's (latest) revision serves, as rollout recorded it."""
    return isvc["metadata"].get("annotations", {}).get(VERSION_ANNOTATION)


def model_ref(mlflow_settings: MlflowSettings, version: str) -> str:
    """The MLflow model URI the predictor loads for `version`."""
    return f"models:/{mlflow_settings.registered_model}/{version}"


def _container(isvc: dict[str, Any]) -> dict[str, Any]:
    containers = isvc["spec"]["predictor"].get("containers") or []
    for container in containers:
        if container.get("name") == PREDICTOR_CONTAINER:
            return container
    raise RolloutError(
        f"InferenceService {isvc['metadata']['name']} has no `{PREDICTOR_CONTAINER}` container: "
        "it was not created by this chart or `mlstack manifests`"
    )


def _pinned_containers(
    isvc: dict[str, Any], ref: str, storage_uri: str | None
) -> list[dict[str, Any]]:
    """The predictor's containers with the model container pinned to `ref` (or `storage_uri`)."""
    target = _container(isvc)
    env = [e for e in target.get("env", []) if e["name"] not in (STORAGE_ENV, KSERVE_STORAGE_ENV)]
    if storage_uri:
        env += [
            {"name": KSERVE_STORAGE_ENV, "value": storage_uri},
            {"name": STORAGE_ENV, "value": MODEL_MOUNT},
        ]
    else:
        env.append({"name": STORAGE_ENV, "value": ref})
    pinned = {**target, "env": env}
    return [pinned if c is target else c for c in isvc["spec"]["predictor"]["containers"]]


def _check_percent(percent: int) -> None:
    if not 0 <= percent <= 100:
        raise RolloutError(f"canary percent must be between 0 and 100, got {percent}")


def _namespace_name(deploy: DeploySettings) -> tuple[str, str]:
    return deploy.namespace, deploy.inference_service


# -- operations ------------------------------------------------------------------------------
def _registered(mlflow: MlflowClient, mlflow_settings: MlflowSettings, version: str) -> str:
    """The registered model's name, once `version` of it is known to exist."""
    name = mlflow_settings.registered_model
    try:
        registry.get_version(mlflow, name, version)
    except registry.RegistryError as err:
        raise RolloutError(str(err)) from err
    return name


def _serve(
    mlflow_settings: MlflowSettings,
    version: str,
    canary_percent: int | None,
    storage_uri: str | None,
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The patch that gives model `version` the latest revision with `canary_percent` of the
    traffic; a new revision (containers pinned to the version) only when it serves another."""

    def change(current: dict[str, Any]) -> dict[str, Any]:
        predictor: dict[str, Any] = {"canaryTrafficPercent": canary_percent}
        patch: dict[str, Any] = {"spec": {"predictor": predictor}}
        if served_version(current) != version:
            predictor["containers"] = _pinned_containers(
                current, model_ref(mlflow_settings, version), storage_uri
            )
            patch["metadata"] = {
                "annotations": {
                    VERSION_ANNOTATION: version,
                    PREVIOUS_ANNOTATION: served_version(current),
                }
            }
        return patch

    return change


def rollout(
    api: k8s.ApiClient,
    mlflow: MlflowClient,
    settings: Settings,
    version: str,
    canary_percent: int,
    *,
    storage_uri: str | None = None,
    reason: str = "canary rollout",
    actor: str = "cli",
) -> Outcome:
    """Send `canary_percent`% of traffic to a new revision serving model `version`.

    If the latest revision already serves `version`, only the split changes (no new revision).
    The `challenger` alias moves to `version` once the cluster accepted the change.
    """
    _check_percent(canary_percent)
    name = _registered(mlflow, settings.mlflow, version)
    ns, isvc_name = _namespace_name(settings.deploy)
    stored = update(
        api, ns, isvc_name, _serve(settings.mlflow, version, canary_percent, storage_uri)
    )
    outcome = Outcome(
        f"InferenceService {ns}/{isvc_name}: model version {version} gets {canary_percent}% "
        "of traffic (canary)",
        traffic(stored),
    )
    alias = registry.set_alias(mlflow, name, registry.CHALLENGER, version, reason, actor)
    outcome.alias_messages.append(alias.message)
    return outcome


def promote(
    api: k8s.ApiClient,
    mlflow: MlflowClient,
    settings: Settings,
    version: str,
    reason: str,
    *,
    actor: str = "cli",
) -> Outcome:
    """Give model `version` all the traffic (ending a canary of it) and make it `champion`."""
    _registered(mlflow, settings.mlflow, version)
    ns, isvc_name = _namespace_name(settings.deploy)
    # a canaryTrafficPercent of None removes it (merge patch): all traffic to the latest
    stored = update(api, ns, isvc_name, _serve(settings.mlflow, version, None, None))
    outcome = Outcome(
        f"InferenceService {ns}/{isvc_name}: model version {version} gets 100% of traffic",
        traffic(stored),
    )
    outcome.alias_messages.append(
        registry.promote(mlflow, settings.mlflow, version, reason, actor).message
    )
    return outcome


def rollback(
    api: k8s.ApiClient,
    mlflow: MlflowClient,
    settings: Settings,
    reason: str,
    *,
    actor: str = "cli",
) -> Outcome:
    """Return all traffic to the previous rolled-out revision, and the aliases with it.

    During a canary that is the stable revision; after a promotion, the one before it.
    """
    ns, isvc_name = _namespace_name(settings.deploy)
    current = get_isvc(api, ns, isvc_name)
    status = predictor_status(current)
    in_canary = current["spec"]["predictor"].get("canaryTrafficPercent") not in (None, 100)
    target = (
        status.get("latestRolledoutRevision")
        if in_canary
        else status.get("previousRolledoutRevision")
    )
    if not target:
        raise RolloutError(
            f"cannot roll back InferenceService {ns}/{isvc_name}: KServe reports no "
            f"{'rolled-out' if in_canary else 'previous rolled-out'} revision to return to"
        )
    bad_version = served_version(current)
    stored = update(
        api, ns, isvc_name, lambda _: {"spec": {"predictor": {"canaryTrafficPercent": 0}}}
    )
    outcome = Outcome(
        f"InferenceService {ns}/{isvc_name}: traffic back to revision {target} "
        f"(was model version {bad_version or 'unknown'}): {reason}",
        traffic(stored),
    )
    name = settings.mlflow.registered_model
    aliases = registry.aliases(mlflow, name)
    if bad_version is not None and aliases.get(registry.CHAMPION) == bad_version:
        try:
            change = registry.rollback(mlflow, settings.mlflow, reason, actor)
        except registry.RegistryError as err:
            outcome.alias_messages.append(f"aliases not changed: {err}")
        else:
            outcome.alias_messages.append(change.message)
    if bad_version is not None and aliases.get(registry.CHALLENGER) == bad_version:
        cleared = registry.clear_alias(mlflow, name, registry.CHALLENGER, reason, actor)
        outcome.alias_messages.append(cleared.message)
    return outcome


# -- automatic rollback ----------------------------------------------------------------------
def in_canary(isvc: dict[str, Any]) -> bool:
    """Whether a canary split is in progress (a share between 1 and 99 on the new revision)."""
    percent = isvc["spec"]["predictor"].get("canaryTrafficPercent")
    return percent is not None and 0 < percent < 100


def auto_rollback(
    api: k8s.ApiClient, mlflow: MlflowClient, settings: Settings, health: Health | None = None
) -> tuple[Health, Outcome | None]:
    """Apply the rollback rule: roll the canary back if it breaks a limit, saying why.

    Only a canary in progress is judged: a promoted revision is never rolled back by the rule.
    """
    ns, name = _namespace_name(settings.deploy)
    if not in_canary(get_isvc(api, ns, name)):
        note = f"no canary in progress on InferenceService {ns}/{name}"
        return Health(0, 0, None, "-", judged=False, note=note), None
    health = health or canary_health(settings.deploy)
    if not health.judged:
        log.info(
            "canary not judged: %s (fewer than %d requests)",
            health.summary(),
            settings.deploy.rollback.min_requests,
        )
        return health, None
    if not health.breaches:
        log.info("canary within limits: %s", health.summary())
        return health, None
    reason = "automatic rollback: " + "; ".join(health.breaches) + f" ({health.summary()})"
    return health, rollback(api, mlflow, settings, reason, actor="auto-rollback")
