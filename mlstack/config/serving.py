"""Settings of serving: the predictor, its InferenceService, and the object store."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator

from mlstack.config.base import Section, quantity


class ObjectStoreSettings(Section):
    """The S3-compatible object store (Kubeflow's MinIO by default) behind `s3://` URIs.

    Credentials are not settings: the usual AWS variables (`AWS_ACCESS_KEY_ID`,
    `AWS_SECRET_ACCESS_KEY`) carry them, set from a Secret on a cluster."""

    endpoint_url: str | None = Field(
        None, description="e.g. http://minio-service.kubeflow:9000; none: AWS S3"
    )


class ResourceSettings(Section):
    """CPU and memory of one serving container (Kubernetes quantities)."""

    cpu_request: str = "500m"
    cpu_limit: str = "1"
    memory_request: str = "512Mi"
    memory_limit: str = "1Gi"

    @field_validator("*", mode="before")
    @classmethod
    def _quantity(cls, value: Any) -> Any:
        return quantity(value)


class BatcherSettings(Section):
    """KServe's request batcher in front of the predictor (off by default)."""

    enabled: bool = False
    max_batch_size: int = Field(32, ge=1)
    max_latency_ms: int = Field(5, ge=1)


class InferenceServiceSettings(Section):
    """The InferenceService (serving.kserve.io/v1beta1) `mlstack manifests` writes."""

    storage_uri: str | None = Field(
        None,
        description="the registered model's artifacts as the cluster sees them "
        "(s3://.../artifacts/<id>/artifacts); none: the predictor loads `model_alias` "
        "from the MLflow registry at `tracking_uri`",
    )
    tracking_uri: str = Field(
        "http://mlstack-mlflow.kubeflow.svc.cluster.local:5000",
        description="MLflow on the cluster (the chart's service for a release named mlstack)",
    )
    service_account: str | None = Field(None, description="e.g. one with S3 credentials")
    port: int = 8080
    resources: ResourceSettings = ResourceSettings()
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(3, ge=1)
    scale_metric: Literal["concurrency", "rps", "cpu", "memory"] = "concurrency"
    scale_target: int = Field(8, ge=1)
    container_concurrency: int = Field(32, ge=0, description="0: unlimited")
    batcher: BatcherSettings = BatcherSettings()
    canary_traffic_percent: int | None = Field(
        None, ge=0, le=100, description="share of traffic for the latest revision; none: all"
    )
    logger_url: str | None = Field(
        None, description="where KServe's logger sends requests and responses (CloudEvents)"
    )
    logger_mode: Literal["all", "request", "response"] = "all"
    feast_config_file: str = Field(
        "feature_store.cluster.yaml", description="the Feast config the predictor uses (Redis)"
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="more environment, e.g. MLSTACK_FEAST_REDIS_CONNECTION, MLSTACK_FEAST_REGISTRY",
    )
    auth_secret: str | None = Field(
        None,
        description="a Secret holding the bearer token the predictor requires "
        "(serving.auth_token); none: no token, leave auth to the mesh",
    )
    auth_secret_key: str = Field("token", description="the token's key in auth_secret")
    startup_seconds: int = Field(
        300,
        ge=10,
        description="how long the model may take to load (MLflow down, no champion yet) "
        "before the kubelet restarts the container (the startupProbe)",
    )
    termination_grace_seconds: int = Field(
        30, ge=1, description="SIGTERM to SIGKILL: draining requests and flushing payloads"
    )


class ServingSettings(Section):
    """The model server: which model, how requests are checked, logged and reloaded."""

    model_name: str = Field("propensity", description="the name in /v1/models/<name>:predict")
    model_alias: str = Field("champion", description="the registry alias served")
    storage_uri: str | None = Field(
        None, description="serve this MLflow model URI or folder instead of the alias"
    )
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_batch_size: int = Field(1000, ge=1, description="instances per request")
    auth_token: SecretStr | None = Field(
        None,
        description="when set, every route but health, readiness, metrics and the OpenAPI "
        "document needs `Authorization: Bearer <token>`; on a cluster it comes from a Secret "
        "(the chart's inferenceService.auth.secretName)",
    )
    lookup_timeout_seconds: float = Field(
        0.5,
        gt=0,
        description="the budget of one online feature lookup (Redis); past it the request "
        "gets a 503 with Retry-After, and each Redis connect and read is bounded by it too",
    )
    body_timeout_seconds: float = Field(
        10.0, gt=0, description="a request body that stalls this long gets a 408"
    )
    drain_seconds: float = Field(
        5.0,
        ge=0,
        description="after SIGTERM: readiness 503 and requests still answered this long, "
        "so the endpoint leaves the rotation before the server stops accepting",
    )
    shutdown_grace_seconds: float = Field(
        10.0, gt=0, description="then: how long requests in flight may take to finish"
    )
    unknown_customer: Literal["default", "error"] = Field(
        "default",
        description="default: score `default_features` and flag features_found=false; "
        "error: that instance gets an error, the others are scored",
    )
    default_features: dict[str, float] = Field(
        default_factory=dict, description="the default vector; features not named are missing"
    )
    reload_interval_seconds: float = Field(
        30.0, ge=0, description="how often the alias is polled; 0: never"
    )
    payload_log: bool = True
    payload_dir: str | None = Field(
        None, description="a folder or object store URI; default: <state store>/payloads"
    )
    payload_flush_rows: int = Field(5000, ge=1, description="flush when this many rows wait")
    payload_flush_seconds: float = Field(10.0, gt=0, description="and at least this often")
    payload_buffer_rows: int = Field(
        100_000,
        ge=1,
        description="rows held while the sink is down or slow; more are dropped and counted",
    )
    batch_output_dir: Path | None = Field(None, description="default: <artifacts_dir>/scores")
    inference_service: InferenceServiceSettings = InferenceServiceSettings()

    def scores_folder(self, artifacts_dir: Path) -> Path:
        return self.batch_output_dir or artifacts_dir / "scores"
