"""The settings as Helm values of the chart (helm/mlstack): the one translation.

Every setting that shapes the InferenceService or the CronJobs has its chart value here;
`mlstack manifests` renders the chart with these values, so the chart stays the one
definition of each Kubernetes object. What the settings do not describe (Feast's registry
and Redis, the object store, the state store) keeps the chart's default.
"""

from __future__ import annotations

from typing import Any

from mlstack.config import CronJobSettings, Settings
from mlstack.config.serving import InferenceServiceSettings, ResourceSettings


def image_values(image: str) -> dict[str, str]:
    """`repo[:tag][@digest]` as the chart's `image.repository`, `image.tag`, `image.digest`."""
    name, _, digest = image.partition("@")
    if digest:
        return {"repository": name, "tag": "", "digest": digest}
    colon = name.rfind(":")
    if colon > name.rfind("/"):  # a colon after the last slash is the tag's, not a port's
        return {"repository": name[:colon], "tag": name[colon + 1 :], "digest": ""}
    return {"repository": name, "tag": "latest", "digest": ""}


def resource_values(resources: ResourceSettings) -> dict[str, dict[str, str]]:
    """A container's requests and limits."""
    return {
        "requests": {"cpu": resources.cpu_request, "memory": resources.memory_request},
        "limits": {"cpu": resources.cpu_limit, "memory": resources.memory_limit},
    }


def cronjob_values(cronjob: CronJobSettings) -> dict[str, Any]:
    """One CronJob's schedule, run limits and resources."""
    return {
        "schedule": cronjob.schedule,
        "startingDeadlineSeconds": cronjob.starting_deadline_seconds,
        "successfulJobsHistoryLimit": cronjob.successful_jobs_history_limit,
        "failedJobsHistoryLimit": cronjob.failed_jobs_history_limit,
        "backoffLimit": cronjob.backoff_limit,
        "activeDeadlineSeconds": cronjob.active_deadline_seconds,
        "resources": resource_values(cronjob.resources),
    }


def inference_service_values(settings: Settings) -> dict[str, Any]:
    """The chart's `inferenceService` from `serving`, `deploy`, `mlflow` and `feast`."""
    isvc: InferenceServiceSettings = settings.serving.inference_service
    return {
        "name": settings.deploy.inference_service,
        "modelName": settings.serving.model_name,
        "modelAlias": settings.serving.model_alias,
        "registeredModel": settings.mlflow.registered_model,
        "featureService": settings.feast.feature_service,
        "storageUri": isvc.storage_uri or "",
        "trackingUri": isvc.tracking_uri,
        "port": isvc.port,
        "serviceAccountName": isvc.service_account or "",
        "env": dict(isvc.env),
        "autoscaling": {
            "enabled": True,
            "minReplicas": isvc.min_replicas,
            "maxReplicas": isvc.max_replicas,
            "metric": isvc.scale_metric,
            "target": isvc.scale_target,
        },
        "containerConcurrency": isvc.container_concurrency,
        # None removes the chart's key: no canary, all traffic to the latest revision
        "canaryTrafficPercent": isvc.canary_traffic_percent,
        "batcher": {
            "enabled": isvc.batcher.enabled,
            "maxBatchSize": isvc.batcher.max_batch_size,
            "maxLatency": isvc.batcher.max_latency_ms,
        },
        "logger": {
            "enabled": bool(isvc.logger_url),
            "url": isvc.logger_url or "",
            "mode": isvc.logger_mode,
        },
        "resources": resource_values(isvc.resources),
        "auth": {"secretName": isvc.auth_secret or "", "secretKey": isvc.auth_secret_key},
        "startupSeconds": isvc.startup_seconds,
        "terminationGracePeriodSeconds": isvc.termination_grace_seconds,
    }


def chart_values(settings: Settings) -> dict[str, Any]:
    """The chart's values that express these settings."""
    monitoring = settings.monitoring
    return {
        "image": image_values(settings.pipeline.base_image),
        "inferenceService": inference_service_values(settings),
        "feast": {
            "configFile": settings.serving.inference_service.feast_config_file,
            "shards": settings.features.shards,
            "materialization": cronjob_values(monitoring.materialize_cronjob),
        },
        "driftCheck": {**cronjob_values(monitoring.drift_cronjob), "kfpHost": settings.kfp.host},
        "serviceAccounts": {"monitoring": monitoring.service_account},
    }
