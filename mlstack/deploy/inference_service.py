"""The InferenceService (serving.kserve.io/v1beta1) of the propensity model, built from the
settings with the KServe SDK's models and written to `manifests/inference-service.yaml`.

The predictor is the project image running `mlstack serve` (the same server as locally),
configured through `MLSTACK_*` environment variables. With `serving.inference_service.
storage_uri` set, KServe's storage initializer downloads the registered model's artifacts to
`/mnt/models` (the `STORAGE_URI` env var of a custom container) and the server loads them
from there; without it, the server loads the alias from the cluster's MLflow and hot reloads.
Autoscaling (`minReplicas`, `maxReplicas`, `scaleMetric`, `scaleTarget`), the
`containerConcurrency`, an optional batcher, `canaryTrafficPercent`, the request logger and
Prometheus scraping annotations come from the settings.

The predictor opens the feature store as the chart's does: `feature_store.cluster.yaml` with
the registry, offline data and Redis named by `MLSTACK_FEAST_*` variables, and the object
store's endpoint and credentials (`AWS_*` from a Secret, by name). Their values are the
chart's defaults (`helm/mlstack/values.yaml` for a release named mlstack in Kubeflow, the
object store being Kubeflow's MinIO); `serving.inference_service.env` overrides the plain ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from kubernetes.client import (
    V1Capabilities,
    V1Container,
    V1ContainerPort,
    V1EmptyDirVolumeSource,
    V1EnvVar,
    V1EnvVarSource,
    V1HTTPGetAction,
    V1ObjectMeta,
    V1PodSecurityContext,
    V1Probe,
    V1ResourceRequirements,
    V1SeccompProfile,
    V1SecretKeySelector,
    V1SecurityContext,
    V1Volume,
    V1VolumeMount,
)

from mlstack.config import Settings
from mlstack.serving import kserve_argv_guard

API_VERSION = "serving.kserve.io/v1beta1"
KIND = "InferenceService"
CONTAINER = "kserve-container"
MODEL_MOUNT = "/mnt/models"
METRICS_PATH = "/metrics"
# the root filesystem is read-only: temporary files go to an emptyDir
SCRATCH_VOLUME, SCRATCH_PATH = "tmp", "/tmp"
# the image's unprivileged user (the Dockerfile and the chart use the same ids)
RUN_AS_USER = 10001
# the cluster's services as the chart's default values name them (helpers `mlstack.feastEnv`
# and `mlstack.objectStoreEnv`): Feast's registry, offline data and Redis, and the object store
FEAST_ENV = {
    "MLSTACK_FEAST_REGISTRY": "s3://mlpipeline/mlstack/feast/registry.db",
    "MLSTACK_FEAST__DATA_DIR": f"{SCRATCH_PATH}/feast",
    "MLSTACK_FEAST_REDIS_CONNECTION": "mlstack-redis:6379",
}
AUTH_TOKEN_ENV = "MLSTACK_SERVING__AUTH_TOKEN"
LIVE_PATH = "/v2/health/live"
STARTUP_PERIOD_SECONDS = 2
# the state store (the payload log goes to <state>/payloads, where the drift check reads it)
STATE_URI = "s3://mlpipeline/mlstack"
OBJECT_STORE_ENDPOINT = "http://minio-service.kubeflow.svc.cluster.local:9000"
# Kubeflow Pipelines' MinIO Secret: its key -> the variable the container gets
OBJECT_STORE_SECRET = "mlpipeline-minio-artifact"
OBJECT_STORE_SECRET_KEYS = {"accesskey": "AWS_ACCESS_KEY_ID", "secretkey": "AWS_SECRET_ACCESS_KEY"}


def _env(settings: Settings) -> list[V1EnvVar]:
    config = settings.serving
    isvc = config.inference_service
    env = {
        "MLSTACK_SERVING__HOST": "0.0.0.0",
        "MLSTACK_SERVING__PORT": str(isvc.port),
        "MLSTACK_SERVING__MODEL_NAME": config.model_name,
        "MLSTACK_SERVING__MODEL_ALIAS": config.model_alias,
        "MLSTACK_MLFLOW__TRACKING_URI": isvc.tracking_uri,
        "MLSTACK_MLFLOW__REGISTERED_MODEL": settings.mlflow.registered_model,
        "MLSTACK_FEAST__FEATURE_SERVICE": settings.feast.feature_service,
    }
    if isvc.storage_uri:
        env["STORAGE_URI"] = isvc.storage_uri  # KServe's storage initializer fetches it
        env["MLSTACK_SERVING__STORAGE_URI"] = MODEL_MOUNT
    env |= {
        # Feast: the cluster config file, which expands the MLSTACK_FEAST_* variables
        "MLSTACK_FEAST__CONFIG_FILE": isvc.feast_config_file,
        **FEAST_ENV,
        # the state store and the object store (MLflow's artifacts, the Feast registry)
        "MLSTACK_STATE_URI": STATE_URI,
        "MLSTACK_OBJECT_STORE__ENDPOINT_URL": OBJECT_STORE_ENDPOINT,
        "MLFLOW_S3_ENDPOINT_URL": OBJECT_STORE_ENDPOINT,
        "AWS_ENDPOINT_URL": OBJECT_STORE_ENDPOINT,
    }
    env |= isvc.env
    secret = [
        V1EnvVar(
            name=variable,
            value_from=V1EnvVarSource(
                secret_key_ref=V1SecretKeySelector(name=OBJECT_STORE_SECRET, key=key)
            ),
        )
        for key, variable in OBJECT_STORE_SECRET_KEYS.items()
        if variable not in env
    ]
    if isvc.auth_secret:
        secret.append(
            V1EnvVar(
                name=AUTH_TOKEN_ENV,
                value_from=V1EnvVarSource(
                    secret_key_ref=V1SecretKeySelector(
                        name=isvc.auth_secret, key=isvc.auth_secret_key
                    )
                ),
            )
        )
    return [V1EnvVar(name=key, value=value) for key, value in env.items()] + secret


def _container(settings: Settings) -> V1Container:
    isvc = settings.serving.inference_service
    res = isvc.resources
    ready_path = f"/v2/models/{settings.serving.model_name}/ready"
    return V1Container(
        name=CONTAINER,
        image=settings.pipeline.base_image,
        command=["mlstack"],
        args=["serve"],
        env=_env(settings),
        ports=[V1ContainerPort(container_port=isvc.port, protocol="TCP")],
        resources=V1ResourceRequirements(
            requests={"cpu": res.cpu_request, "memory": res.memory_request},
            limits={"cpu": res.cpu_limit, "memory": res.memory_limit},
        ),
        # startup: the model may take a while (MLflow down, no champion yet: the server
        # retries); readiness: a model is loaded; liveness: the event loop still answers.
        startup_probe=V1Probe(
            http_get=V1HTTPGetAction(path=ready_path, port=isvc.port),
            period_seconds=STARTUP_PERIOD_SECONDS,
            failure_threshold=max(1, isvc.startup_seconds // STARTUP_PERIOD_SECONDS),
        ),
        readiness_probe=V1Probe(
            http_get=V1HTTPGetAction(path=ready_path, port=isvc.port),
            period_seconds=5,
        ),
        liveness_probe=V1Probe(
            http_get=V1HTTPGetAction(path=LIVE_PATH, port=isvc.port),
            period_seconds=10,
            timeout_seconds=5,
            failure_threshold=3,
        ),
        security_context=V1SecurityContext(
            allow_privilege_escalation=False,
            read_only_root_filesystem=True,
            run_as_non_root=True,
            capabilities=V1Capabilities(drop=["ALL"]),
            seccomp_profile=V1SeccompProfile(type="RuntimeDefault"),
        ),
        volume_mounts=[V1VolumeMount(name=SCRATCH_VOLUME, mount_path=SCRATCH_PATH)],
    )


def inference_service_object(settings: Settings) -> Any:
    """The InferenceService as the KServe SDK's `V1beta1InferenceService`."""
    with kserve_argv_guard():
        from kserve import (
            V1beta1Batcher,
            V1beta1InferenceService,
            V1beta1InferenceServiceSpec,
            V1beta1LoggerSpec,
            V1beta1PredictorSpec,
        )

    isvc = settings.serving.inference_service
    predictor = V1beta1PredictorSpec(
        containers=[_container(settings)],
        min_replicas=isvc.min_replicas,
        max_replicas=isvc.max_replicas,
        scale_metric=isvc.scale_metric,
        scale_target=isvc.scale_target,
        container_concurrency=isvc.container_concurrency,
        canary_traffic_percent=isvc.canary_traffic_percent,
        service_account_name=isvc.service_account,
        security_context=V1PodSecurityContext(
            run_as_non_root=True,
            run_as_user=RUN_AS_USER,
            run_as_group=RUN_AS_USER,
            fs_group=RUN_AS_USER,
            seccomp_profile=V1SeccompProfile(type="RuntimeDefault"),
        ),
        volumes=[V1Volume(name=SCRATCH_VOLUME, empty_dir=V1EmptyDirVolumeSource())],
        termination_grace_period_seconds=isvc.termination_grace_seconds,
    )
    if isvc.batcher.enabled:
        predictor.batcher = V1beta1Batcher(
            max_batch_size=isvc.batcher.max_batch_size, max_latency=isvc.batcher.max_latency_ms
        )
    if isvc.logger_url:
        predictor.logger = V1beta1LoggerSpec(mode=isvc.logger_mode, url=isvc.logger_url)
    annotations = {
        "serving.kserve.io/enable-prometheus-scraping": "true",
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(isvc.port),
        "prometheus.io/path": METRICS_PATH,
    }
    return V1beta1InferenceService(
        api_version=API_VERSION,
        kind=KIND,
        metadata=V1ObjectMeta(
            name=settings.deploy.inference_service,
            namespace=settings.deploy.namespace,
            labels={
                "app.kubernetes.io/name": "mlstack",
                "app.kubernetes.io/component": "predictor",
            },
            annotations=annotations,
        ),
        spec=V1beta1InferenceServiceSpec(predictor=predictor),
    )


def build_inference_service(settings: Settings) -> dict[str, Any]:
    """The InferenceService manifest (camelCase keys, no nulls) for these settings."""
    with kserve_argv_guard():
        from kserve import ApiClient

    return ApiClient().sanitize_for_serialization(inference_service_object(settings))


def write_inference_service(settings: Settings, path: Path) -> Path:
    """Write the manifest as YAML with a header that says where it comes from."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "# Written by `mlstack manifests` from the `serving:` settings; do not edit by hand.\n"
    body = yaml.safe_dump(build_inference_service(settings), sort_keys=False)
    path.write_text(header + body)
    return path
