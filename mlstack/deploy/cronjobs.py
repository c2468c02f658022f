"""CronJobs of the stack: the daily drift check and Feast materialization (batch/v1).

Built from `monitoring` settings (schedule, history limits, deadlines, resources, service
account) and written to `manifests/` by `mlstack manifests`. Both run the one image; the
drift check runs in cluster mode, so a retrain becomes a KFP run through `kfp.Client`
authenticated with a projected service-account token for the KFP API's audience.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mlstack.config import CronJobSettings, Settings

KFP_TOKEN_DIR = "/var/run/secrets/kubeflow/pipelines"
KFP_AUDIENCE = "pipelines.kubeflow.org"
LABELS = {"app.kubernetes.io/name": "mlstack", "app.kubernetes.io/part-of": "mlstack"}


def _resources(cfg: CronJobSettings) -> dict[str, Any]:
    r = cfg.resources
    return {
        "requests": {"cpu": r.cpu_request, "memory": r.memory_request},
        "limits": {"cpu": r.cpu_limit, "memory": r.memory_limit},
    }


def _cronjob(
    name: str,
    component: str,
    cfg: CronJobSettings,
    settings: Settings,
    args: list[str],
    env: list[dict[str, Any]],
    extra_mounts: list[dict[str, Any]] | None = None,
    extra_volumes: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    labels = {**LABELS, "app.kubernetes.io/component": component}
    container = {
        "name": component,
        "image": settings.pipeline.base_image,
        "command": ["mlstack"],
        "args": args,
        "env": [{"name": "MLSTACK_ARTIFACTS_DIR", "value": "/tmp/artifacts"}, *env],
        "resources": _resources(cfg),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, *(extra_mounts or [])],
    }
    pod = {
        "restartPolicy": "Never",
        "serviceAccountName": settings.monitoring.service_account,
        "automountServiceAccountToken": False,
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}, *(extra_volumes or [])],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "namespace": settings.monitoring.namespace, "labels": labels},
        "spec": {
            "schedule": cfg.schedule,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": cfg.starting_deadline_seconds,
            "successfulJobsHistoryLimit": cfg.successful_jobs_history_limit,
            "failedJobsHistoryLimit": cfg.failed_jobs_history_limit,
            "jobTemplate": {
                "spec": {
                    "backoffLimit": cfg.backoff_limit,
                    "activeDeadlineSeconds": cfg.active_deadline_seconds,
                    "template": {"metadata": {"labels": labels}, "spec": pod},
                }
            },
        },
    }


def drift_check_cronjob(settings: Settings) -> dict[str, Any]:
    """The drift check (`mlstack drift`) on its schedule; retrains go to KFP."""
    env = [
        {"name": "MLSTACK_MODE", "value": "cluster"},
        {"name": "MLSTACK_KFP__HOST", "value": settings.kfp.host},
        {"name": "MLSTACK_KFP__AUTH", "value": "service_account"},
        {"name": "MLSTACK_KFP__TOKEN_PATH", "value": f"{KFP_TOKEN_DIR}/token"},
    ]
    token = {
        "name": "kfp-token",
        "projected": {
            "sources": [
                {
                    "serviceAccountToken": {
                        "path": "token",
                        "audience": KFP_AUDIENCE,
                        "expirationSeconds": 3600,
                    }
                }
            ]
        },
    }
    mount = {"name": "kfp-token", "mountPath": KFP_TOKEN_DIR, "readOnly": True}
    return _cronjob(
        "mlstack-drift-check",
        "drift-check",
        settings.monitoring.drift_cronjob,
        settings,
        ["drift"],
        env,
        [mount],
        [token],
    )


def materialize_cronjob(settings: Settings) -> dict[str, Any]:
    """Incremental Feast materialization into the online store on its schedule."""
    return _cronjob(
        "mlstack-materialize",
        "materialize",
        settings.monitoring.materialize_cronjob,
        settings,
        ["materialize"],
        [],
    )


def write_cronjobs(settings: Settings, out_dir: Path) -> Path:
    """Write both CronJobs to `out_dir/cronjobs.yaml`."""
    header = (
        "# CronJobs rendered from the monitoring settings (mlstack.deploy.cronjobs).\n"
        "# Do not edit: change the config and run `mlstack manifests`.\n"
    )
    docs = [drift_check_cronjob(settings), materialize_cronjob(settings)]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "cronjobs.yaml"
    path.write_text(header + yaml.safe_dump_all(docs, sort_keys=False))
    return path
