"""Where a model change made by hand goes: the registry alone, or the cluster first.

On this machine `promote` and `rollback` move the MLflow aliases only. On a cluster
(`mode: cluster`, or asked for) they change the InferenceService's traffic through the
Kubernetes API first and the aliases follow (`deploy.rollout`). A canary rollout and the
automatic rollback exist only on a cluster. Each function returns what to tell the user.
"""

from __future__ import annotations

from mlstack.config import Settings
from mlstack.deploy import rollout as ops
from mlstack.deploy.kube import api_client
from mlstack.registry import models as registry
from mlstack.registry import tracking

ACTOR = "cli"


def on_cluster(settings: Settings, cluster: bool) -> bool:
    """Whether a change goes through the InferenceService: asked for, or `mode: cluster`."""
    return cluster or settings.mode == "cluster"


def promote(
    settings: Settings, version: str, reason: str, *, cluster: bool = False, actor: str = ACTOR
) -> str:
    """Make `version` the champion; on a cluster, give it all the traffic first."""
    if on_cluster(settings, cluster):
        api = api_client(settings.deploy)
        client = tracking.configure(settings.mlflow)
        return ops.promote(api, client, settings, version, reason, actor=actor).report()
    return registry.promote(
        tracking.configure(settings.mlflow), settings.mlflow, version, reason, actor
    ).message


def rollback(settings: Settings, reason: str, *, cluster: bool = False, actor: str = ACTOR) -> str:
    """Give `champion` back to the previous champion; on a cluster, return the traffic to the
    previous rolled-out revision first."""
    client = tracking.configure(settings.mlflow)
    if on_cluster(settings, cluster):
        return ops.rollback(
            api_client(settings.deploy), client, settings, reason, actor=actor
        ).report()
    return registry.rollback(client, settings.mlflow, reason, actor).message


def auto_rollback(settings: Settings) -> str:
    """Judge the canary by deploy.rollback's limits and roll it back if it breaks one."""
    client = tracking.configure(settings.mlflow)
    health, outcome = ops.auto_rollback(api_client(settings.deploy), client, settings)
    if health.note:
        return health.note
    if not health.judged:
        verdict = "not judged: too little traffic"
    else:
        verdict = "; ".join(health.breaches) or "within limits"
    lines = [f"canary: {health.summary()}: {verdict}"]
    if outcome is not None:
        lines.append(outcome.report())
    return "\n".join(lines)


def roll_out(
    settings: Settings, version: str, canary_percent: int, *, storage_uri: str | None = None
) -> str:
    """Send `canary_percent`% of the InferenceService's traffic to a revision serving
    `version` (the challenger)."""
    client = tracking.configure(settings.mlflow)
    api = api_client(settings.deploy)
    return ops.rollout(
        api, client, settings, version, canary_percent, storage_uri=storage_uri
    ).report()
