"""Settings of operations: the pipeline's steps, KFP, monitoring and its CronJobs, and
deployments (canary and rollback)."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from mlstack.config.base import Section, quantity
from mlstack.config.serving import ResourceSettings


class StepResources(Section):
    """CPU and memory of one pipeline step; a field left out keeps `pipeline.resources`."""

    cpu_request: str | None = None
    cpu_limit: str | None = None
    memory_request: str | None = None
    memory_limit: str | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _quantity(cls, value: Any) -> Any:
        return quantity(value)


class PipelineSettings(Section):
    """KFP settings: the one image every component runs in, each step's resources, and the
    Secret that gives every step the object store's credentials on a cluster."""

    base_image: str = "ghcr.io/mlstack/mlstack:0.1.0"
    name: str = "mlstack-training"
    resources: ResourceSettings = Field(
        ResourceSettings(cpu_request="1", cpu_limit="2", memory_request="1Gi", memory_limit="3Gi"),
        description="requests and limits (Kubernetes quantities) of every pipeline step's "
        "container, unless `step_resources` names the step",
    )
    step_resources: dict[str, StepResources] = Field(
        default_factory=lambda: {
            "tune": StepResources(
                cpu_request="2", cpu_limit="4", memory_request="3Gi", memory_limit="6Gi"
            ),
            "train": StepResources(
                cpu_request="2", cpu_limit="4", memory_request="3Gi", memory_limit="6Gi"
            ),
        },
        description="per step, by component name (ingest, training_set, tune, train, score, "
        "drift_check, ...): the fields that differ from `resources`; tuning and training get "
        "more. Setting this map in a config replaces these defaults, so list tune and train too",
    )
    object_store_secret: str | None = Field(
        "mlpipeline-minio-artifact",
        description="the Kubernetes Secret (its name, never its values) whose keys become "
        "every step's environment in cluster mode (KFP's MinIO credentials by default); "
        "none: no Secret is mounted",
    )
    object_store_secret_keys: dict[str, str] = Field(
        default_factory=lambda: {
            "accesskey": "AWS_ACCESS_KEY_ID",
            "secretkey": "AWS_SECRET_ACCESS_KEY",
        },
        description="key in `object_store_secret` -> environment variable of each step",
    )

    def resources_for(self, step: str) -> ResourceSettings:
        """The requests and limits of the step named `step` (its component's name)."""
        override = self.step_resources.get(step)
        if override is None:
            return self.resources
        return self.resources.model_copy(update=override.model_dump(exclude_none=True))


class DriftPolicySettings(Section):
    """When a drift check asks for nothing, an alert or a retrain (every rule gives a reason)."""

    retrain_drifted_share: float = Field(
        0.5, ge=0, le=1, description="retrain when at least this share of features drifted"
    )
    alert_drifted_share: float = Field(
        0.2, ge=0, le=1, description="alert when at least this share of features drifted"
    )
    retrain_on_prediction_drift: bool = Field(
        True, description="retrain when the predictions' distribution drifted"
    )
    performance_floor: float | None = Field(
        None, ge=0, le=1, description="retrain when the realised PR-AUC falls below this"
    )
    max_performance_drop: float = Field(
        0.05,
        ge=0,
        description="retrain when the realised PR-AUC trails the model's test PR-AUC "
        "by more than this",
    )
    alert_on_dead_feature: bool = Field(
        True, description="alert when a feature is empty or constant in the window"
    )
    max_calibration_error: float = Field(
        0.1, ge=0, description="alert when the realised calibration error is above this"
    )
    min_days_between_retrains: int = Field(
        28, ge=0, description="a retrain asked for sooner after the last training is an alert"
    )


class CronJobSettings(Section):
    """A Kubernetes CronJob of the stack (the drift check, Feast materialization)."""

    schedule: str
    starting_deadline_seconds: int = Field(600, ge=1)
    successful_jobs_history_limit: int = Field(3, ge=0)
    failed_jobs_history_limit: int = Field(3, ge=0)
    backoff_limit: int = Field(1, ge=0)
    active_deadline_seconds: int = Field(3600, ge=1)
    resources: ResourceSettings = ResourceSettings()


class DriftCronJobSettings(CronJobSettings):
    schedule: str = Field("0 4 * * *", description="cron (UTC): daily at 04:00")


class MaterializeCronJobSettings(CronJobSettings):
    schedule: str = Field("30 2 * * *", description="cron (UTC): daily at 02:30")


class MonitoringSettings(Section):
    """Drift checks against the champion's training reference, the policy, alerts, CronJobs."""

    window_days: int = Field(7, ge=1, description="the current window: the last N days")
    source: Literal["payloads", "snapshots"] = Field(
        "payloads",
        description="payloads: the served requests' log; snapshots: the newest feature "
        "snapshot in the window, scored by the champion",
    )
    min_window_rows: int = Field(100, ge=1, description="fewer rows in the window: an error")
    reference_rows: int = Field(
        50_000, ge=100, description="rows of the training data kept as the drift reference"
    )
    reference_snapshots: int | None = Field(
        1,
        ge=1,
        description="the reference is the newest N snapshots of the training data (the "
        "population the model saw last); none: every training snapshot, pooled",
    )
    numerical_method: str = Field("wasserstein", description="Evidently stat test, numerical")
    categorical_method: str = Field("jensenshannon", description="Evidently stat test, categorical")
    numerical_threshold: float = Field(0.1, gt=0, description="normed Wasserstein: drifted at")
    categorical_threshold: float = Field(0.1, gt=0, description="Jensen-Shannon: drifted at")
    prediction_threshold: float = Field(0.1, gt=0, description="normed Wasserstein of scores")
    categorical_columns: list[str] = Field(
        default_factory=list, description="columns of the window tested as categories"
    )
    calendar_columns: list[str] = Field(
        default_factory=lambda: ["days_to_next_peak", "days_since_last_peak"],
        description="features that are the same for every customer on a date: they move "
        "with the calendar by design and are not drift-tested",
    )
    html_report: bool = Field(True, description="write the Evidently HTML report a person opens")
    policy: DriftPolicySettings = DriftPolicySettings()
    alert_webhook: str | None = Field(None, description="POST alerts here (JSON); none: log only")
    alert_timeout_seconds: float = Field(5.0, gt=0)
    namespace: str = "kubeflow"
    service_account: str = "mlstack-monitoring"
    drift_cronjob: DriftCronJobSettings = DriftCronJobSettings()
    materialize_cronjob: MaterializeCronJobSettings = MaterializeCronJobSettings()
    replay_start: date = Field(
        date(1997, 4, 1), description="replay: the first model is trained with data to here"
    )
    replay_schedule_weeks: int = Field(1, ge=1, description="replay: the fixed schedule's period")
    replay_weeks: int | None = Field(None, ge=1, description="replay: stop after N weeks")
    replay_max_train_rows: int = Field(
        100_000, ge=1000, description="replay: a retrain fits on at most this many rows (sampled)"
    )


SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


class KfpSettings(Section):
    """Cluster-mode pipeline runs: where the KFP API is and how `kfp.Client` authenticates."""

    host: str = Field(
        "http://ml-pipeline.kubeflow.svc.cluster.local:8888",
        description="the KFP API server (in-cluster service, a port-forward or the gateway URL)",
    )
    namespace: str = Field("kubeflow", description="the profile namespace runs go to")
    experiment: str = "mlstack-propensity"
    package_path: Path = Field(Path("dist/training.yaml"), description="compiled pipeline")
    auth: Literal["auto", "token", "service_account", "sdk"] = Field(
        "auto",
        description="token: the env var named by `token_env`; service_account: the pod's token "
        "file; sdk: kfp's own credentials (kube config); auto: the first of these available",
    )
    token_env: str = Field("KFP_TOKEN", description="env var holding a bearer token")
    token_path: Path = Field(SERVICE_ACCOUNT_TOKEN, description="service-account token file")
    ssl_ca_cert: Path | None = None
    run_service_account: str | None = Field(None, description="the runs' Kubernetes SA")
    schedule_cron: str = Field("0 0 3 * * 1", description="6-field cron: Mondays 03:00")
    schedule_name: str = "mlstack-weekly-retrain"
    max_concurrency: int = Field(1, ge=1)

    def bearer_token(self) -> str | None:
        """The bearer token the chosen auth mode yields, or None for the SDK's own credentials."""
        if self.auth in ("auto", "token") and os.environ.get(self.token_env):
            return os.environ[self.token_env]
        if self.auth == "token":
            raise ValueError(f"kfp.auth is `token` but the env var {self.token_env} is empty")
        if self.auth in ("auto", "service_account") and self.token_path.is_file():
            return self.token_path.read_text().strip()
        if self.auth == "service_account":
            raise ValueError(f"kfp.auth is `service_account` but {self.token_path} is missing")
        return None


class RollbackRule(Section):
    """When the canary is rolled back automatically."""

    max_error_rate: float = Field(0.02, ge=0, le=1, description="errors / requests")
    max_p99_seconds: float = Field(0.5, gt=0, description="p99 request latency")
    min_requests: int = Field(100, ge=1, description="judge only with this much traffic")
    error_outcomes: list[str] = Field(
        default_factory=lambda: ["error"],
        description="`outcome` labels of mlstack_requests_total that count as errors "
        "(`invalid` is the caller's mistake, not the canary's)",
    )
    window: str = Field("5m", description="Prometheus range for rates and the p99")


class DeploySettings(Section):
    """Cluster serving operations: the InferenceService and the Kubernetes API they go through."""

    namespace: str = "kubeflow"
    inference_service: str = Field("mlstack-propensity", description="InferenceService name")
    kube_host: str | None = Field(
        None, description="Kubernetes API URL; none: in-cluster config, then kube config"
    )
    kube_token_path: Path = Field(SERVICE_ACCOUNT_TOKEN, description="token when kube_host is set")
    kube_ca_cert: Path | None = None
    metrics_url: str | None = Field(
        None, description="the canary predictor's Prometheus /metrics endpoint"
    )
    prometheus_url: str | None = Field(None, description="a Prometheus query API base URL")
    prometheus_selector: str = Field(
        'namespace="kubeflow", revision_tag="latest"',
        description="PromQL label matchers that pick the canary revision's series",
    )
    rollback: RollbackRule = RollbackRule()
