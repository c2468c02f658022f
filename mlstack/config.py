"""Typed settings: the one place that reads config files and the environment.

Precedence, highest first: explicit overrides (CLI ``--set key=value``), environment variables
(``MLSTACK_FEATURES__HORIZON_DAYS=14``), the YAML config file, the defaults below.
Relative paths are resolved against the project root (the current directory unless the
config sets ``root``), so the settings handed to a pipeline step are self-contained.
"""

from __future__ import annotations

import json
import re
from contextvars import ContextVar
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

DEFAULT_CONFIG = Path("configs/cdnow.yaml")
ENV_PREFIX = "MLSTACK_"

_yaml_file: ContextVar[Path | None] = ContextVar("mlstack_yaml_file", default=None)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ColumnMapping(_Section):
    """Source column names for each canonical column; optional ones may be left out.

    Mapping `invoice_id` makes an order an invoice rather than a (customer, day);
    `product_id` adds product-variety features; `country` and the `categoricals` are
    customer attributes (their value on the customer's latest purchase) that the evaluation
    slices by and the drift checks test as categories.
    """

    customer_id: str
    timestamp: str
    amount: str | None = None
    quantity: str | None = None
    unit_price: str | None = None
    invoice_id: str | None = None
    product_id: str | None = None
    country: str | None = None
    categoricals: dict[str, str] = Field(
        default_factory=dict, description="more categorical attributes: canonical name: column"
    )

    @model_validator(mode="after")
    def _amount_is_derivable(self) -> ColumnMapping:
        if self.amount is None and not (self.quantity and self.unit_price):
            raise ValueError("map `amount`, or both `quantity` and `unit_price` to compute it")
        taken = set(type(self).model_fields) - {"categoricals"}
        clash = sorted(taken & set(self.categoricals))
        if clash:
            raise ValueError(f"categoricals {clash} reuse canonical column names; rename them")
        return self

    def attributes(self) -> dict[str, str]:
        """Canonical name → source column of every categorical attribute (country first)."""
        named = {"country": self.country} if self.country else {}
        return {**named, **self.categoricals}


class SourceSettings(_Section):
    """Where the raw transaction log is and how to parse it."""

    uri: str = "data/cdnow_master.txt.gz"
    format: Literal["csv", "parquet"] = "csv"
    delimiter: str = Field(",", description="CSV delimiter; a regex such as '\\s+' is allowed")
    timestamp_format: str | None = Field(None, description="strftime format, e.g. %Y%m%d")
    columns: ColumnMapping = ColumnMapping(
        customer_id="customer_id", timestamp="date", amount="dollar_value", quantity="number_of_cds"
    )
    return_invoice_pattern: str | None = Field(
        None,
        description="a regex matched at the start of invoice_id that marks a return (e.g. "
        "'C' for cancellations); negative quantities and amounts mark returns anyway",
    )
    storage_options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("return_invoice_pattern")
    @classmethod
    def _pattern_compiles(cls, value: str | None) -> str | None:
        return _compiles(value, "source.return_invoice_pattern")


def _compiles(pattern: str | None, key: str) -> str | None:
    """``pattern`` unchanged, or a ValueError naming ``key`` when it is not a regex."""
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"{key} is not a regular expression: {exc}") from None
    return pattern


class Policy(StrEnum):
    """What a cleaning rule does with the rows that break it."""

    stop = "stop"  # fail validation: nothing downstream runs
    drop = "drop"  # remove them, counted by reason in the report and the run summary
    keep = "keep"  # keep them and report a warning


# rule -> the policies it accepts; rows that cannot be attributed or read cannot be kept
RULE_POLICIES: dict[str, tuple[Policy, ...]] = {
    "missing_customer_id": (Policy.stop, Policy.drop),
    "unparseable_timestamp": (Policy.stop, Policy.drop),
    "unparseable_amount": (Policy.stop, Policy.drop),
    "excluded_customer": (Policy.stop, Policy.drop, Policy.keep),
    "exact_duplicate": (Policy.stop, Policy.drop, Policy.keep),
    "timestamp_out_of_range": (Policy.stop, Policy.drop, Policy.keep),
    "zero_amount": (Policy.stop, Policy.drop, Policy.keep),
}


class ValidationSettings(_Section):
    """The cleaning rules, each with a policy, and the limits that stop a run."""

    min_rows: int = Field(1000, ge=0, description="rows left after cleaning, at least")
    max_dropped_share: float = Field(
        0.5, ge=0, le=1, description="stop when cleaning drops more than this share of rows"
    )
    earliest_timestamp: date = date(1990, 1, 1)
    latest_timestamp: date | None = Field(None, description="defaults to today")
    excluded_customers: str | None = Field(
        None, description="a regex; customer ids it matches in full are internal or test accounts"
    )
    policies: dict[str, Policy] = Field(
        default_factory=lambda: {
            "missing_customer_id": Policy.drop,
            "unparseable_timestamp": Policy.stop,
            "unparseable_amount": Policy.stop,
            "excluded_customer": Policy.drop,
            "exact_duplicate": Policy.drop,
            "timestamp_out_of_range": Policy.stop,
            "zero_amount": Policy.keep,
        }
    )

    @model_validator(mode="before")
    @classmethod
    def _no_severities(cls, data: Any) -> Any:
        if isinstance(data, dict) and "severities" in data:
            raise ValueError(
                "validation.severities was replaced by validation.policies (stop, drop or keep "
                f"per rule; rules: {', '.join(RULE_POLICIES)})"
            )
        return data

    @field_validator("policies", mode="after")
    @classmethod
    def _policies_fit_rules(cls, value: dict[str, Policy]) -> dict[str, Policy]:
        defaults = cls.model_fields["policies"].default_factory()  # type: ignore[misc]
        merged = {**defaults, **value}
        for rule, policy in merged.items():
            if rule not in RULE_POLICIES:
                raise ValueError(
                    f"validation.policies.{rule}: no such rule; rules: {', '.join(RULE_POLICIES)}"
                )
            if policy not in RULE_POLICIES[rule]:
                allowed = " or ".join(RULE_POLICIES[rule])
                raise ValueError(f"validation.policies.{rule}={policy}: must be {allowed}")
        return merged

    @field_validator("excluded_customers")
    @classmethod
    def _excluded_compiles(cls, value: str | None) -> str | None:
        return _compiles(value, "validation.excluded_customers")


class Peak(_Section):
    name: str
    month: int = Field(ge=1, le=12)
    day: int = Field(ge=1, le=31)


class FeatureSettings(_Section):
    """Snapshot grid, windows and label definition."""

    snapshot_frequency_days: int = Field(7, ge=1)
    first_snapshot: date | None = Field(None, description="defaults to first purchase + 1 window")
    windows_days: list[int] = Field(default_factory=lambda: [30, 90, 180, 365])
    trend_window_days: int = 90
    horizon_days: int = Field(30, ge=1)
    return_features: bool = Field(
        False, description="add returns_total and return_value_share (logs with returns)"
    )
    peaks: list[Peak] = Field(
        default_factory=lambda: [
            Peak(name="valentines", month=2, day=14),
            Peak(name="mothers_day", month=5, day=10),
            Peak(name="back_to_school", month=9, day=1),
            Peak(name="black_friday", month=11, day=27),
            Peak(name="christmas", month=12, day=25),
        ]
    )


class FeastSettings(_Section):
    """The Feast repo and the names that training and serving share."""

    repo_path: Path = Path("feature_repo")
    config_file: str = "feature_store.yaml"
    feature_service: str = "customer_propensity_v1"
    entity_key: str = "customer_id"
    data_dir: Path | None = Field(
        None,
        description="the folder DuckDB reads the offline source from (default: <repo>/data); "
        "with a remote `state_uri` a pod-local copy of the state store's offline data",
    )
    registry: str | None = Field(
        None, description="the registry (a path or s3:// URI); none: the Feast config file's"
    )
    redis: str | None = Field(
        None,
        description="Feast's Redis connection string (host:port[,password=...]); none: the "
        "Feast config file's",
    )


class SplitSettings(_Section):
    """Time-based split on snapshot dates; the gap between splits is one label horizon."""

    test_snapshots: int = Field(8, ge=1, description="the last N labelled snapshots")
    validation_snapshots: int = Field(8, ge=1, description="the N before the test gap")
    train_snapshot_stride: int = Field(
        2, ge=1, description="train on every k-th snapshot: neighbours are near-duplicates"
    )


class ParamSpec(_Section):
    """One hyperparameter of the search space."""

    name: str
    type: Literal["int", "float", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(None, description="grid step for int/float (grid search)")
    choices: list[str | int | float] | None = None

    @model_validator(mode="after")
    def _bounds(self) -> ParamSpec:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError(f"parameter {self.name}: categorical needs `choices`")
        elif self.low is None or self.high is None or self.low >= self.high:
            raise ValueError(f"parameter {self.name}: needs low < high")
        return self


def _default_space() -> list[ParamSpec]:
    return [
        ParamSpec(name="learning_rate", type="float", low=0.02, high=0.3, log=True),
        ParamSpec(name="max_iter", type="int", low=50, high=300, step=50),
        ParamSpec(name="max_leaf_nodes", type="int", low=8, high=32, step=8),
        ParamSpec(name="min_samples_leaf", type="int", low=100, high=2000, log=True),
        ParamSpec(name="l2_regularization", type="float", low=1e-4, high=1.0, log=True),
    ]


class TuningSettings(_Section):
    """The one search space: Optuna runs it locally, Katib on a cluster."""

    model: Literal["gradient_boosting", "logistic_regression"] = "gradient_boosting"
    algorithm: Literal["tpe", "random", "grid"] = "tpe"
    objective: str = "pr_auc"
    direction: Literal["maximize", "minimize"] = "maximize"
    max_trials: int = Field(12, ge=1)
    parallel_trials: int = Field(1, ge=1)
    max_failed_trials: int = Field(3, ge=0)
    early_stopping: Literal["median", "none"] = "median"
    early_stopping_min_trials: int = Field(3, ge=1, description="trials before pruning starts")
    seed: int = 0
    start_from_defaults: bool = Field(
        True,
        description="the first trial tries the model's default parameters (local tuning "
        "with tpe or random; Katib has no way to enqueue a trial)",
    )
    space: list[ParamSpec] = Field(default_factory=_default_space)


class KatibSettings(_Section):
    """Cluster-mode tuning: the Katib Experiment and how long to wait for it."""

    namespace: str = "kubeflow"
    experiment_name: str = "mlstack-tuning"
    timeout_seconds: int = 3 * 3600
    poll_seconds: int = 30
    service_account: str = "mlstack-tuning"
    dataset_uri: str = Field(
        "s3://mlpipeline/mlstack/training_set.parquet",
        description="the training set trials read when the rendered Experiment is applied by "
        "hand; the pipeline's tune step passes its own artifact's URI instead",
    )


class EvaluationSettings(_Section):
    """What the evaluation reports and when a slice counts as a bias finding."""

    top_fraction: float = Field(0.1, gt=0, lt=1)
    calibration_bins: int = Field(10, ge=2)
    slice_margin: float = Field(0.05, ge=0, description="PR-AUC below overall by more: flagged")
    min_slice_rows: int = 200
    slice_columns: list[str] = Field(
        default_factory=list, description="categorical columns of the data to slice by"
    )


class GateSettings(_Section):
    """Which model may become champion (`mlstack.models.gate`): paired bootstrap intervals
    over customers on the test period."""

    metric: Literal["pr_auc", "roc_auc", "brier"] = "pr_auc"
    heuristic: str = Field(
        "recency_heuristic", description="the baseline every candidate must beat by the margin"
    )
    margin: float = Field(
        0.005, description="the interval's lower bound against the heuristic must reach this"
    )
    champion_tolerance: float = Field(
        0.0, ge=0, description="the interval against the champion may end this far below zero"
    )
    baselines_compete: bool = Field(
        True, description="learned baselines (not the heuristic) may become champion too"
    )
    confidence: float = Field(0.95, gt=0.5, lt=1, description="of every interval")
    bootstrap_replicates: int = Field(1000, ge=100, description="redraws of the customers")
    seed: int = 0


class MlflowSettings(_Section):
    """Tracking and registry: SQLite and a local folder by default, any URI by config."""

    tracking_uri: str = "sqlite:///artifacts/mlflow.db"
    artifact_location: str = "artifacts/mlflow"
    experiment: str = "mlstack-propensity"
    registered_model: str = "mlstack-propensity"


class ObjectStoreSettings(_Section):
    """The S3-compatible object store (Kubeflow's MinIO by default) behind `s3://` URIs.

    Credentials are not settings: the usual AWS variables (`AWS_ACCESS_KEY_ID`,
    `AWS_SECRET_ACCESS_KEY`) carry them, set from a Secret on a cluster."""

    endpoint_url: str | None = Field(
        None, description="e.g. http://minio-service.kubeflow:9000; none: AWS S3"
    )


class ResourceSettings(_Section):
    """CPU and memory of one serving container (Kubernetes quantities)."""

    cpu_request: str = "500m"
    cpu_limit: str = "1"
    memory_request: str = "512Mi"
    memory_limit: str = "1Gi"

    @field_validator("*", mode="before")
    @classmethod
    def _quantity(cls, value: Any) -> Any:
        """`cpu_limit: 2` in YAML is a number; Kubernetes wants the quantity as a string."""
        return (
            str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
        )


class BatcherSettings(_Section):
    """KServe's request batcher in front of the predictor (off by default)."""

    enabled: bool = False
    max_batch_size: int = Field(32, ge=1)
    max_latency_ms: int = Field(5, ge=1)


class InferenceServiceSettings(_Section):
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


class ServingSettings(_Section):
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


class StepResources(_Section):
    """CPU and memory of one pipeline step; a field left out keeps `pipeline.resources`."""

    cpu_request: str | None = None
    cpu_limit: str | None = None
    memory_request: str | None = None
    memory_limit: str | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _quantity(cls, value: Any) -> Any:
        return ResourceSettings._quantity(value)


class PipelineSettings(_Section):
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


class DriftPolicySettings(_Section):
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


class CronJobSettings(_Section):
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


class MonitoringSettings(_Section):
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


class KfpSettings(_Section):
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
        import os

        if self.auth in ("auto", "token") and os.environ.get(self.token_env):
            return os.environ[self.token_env]
        if self.auth == "token":
            raise ValueError(f"kfp.auth is `token` but the env var {self.token_env} is empty")
        if self.auth in ("auto", "service_account") and self.token_path.is_file():
            return self.token_path.read_text().strip()
        if self.auth == "service_account":
            raise ValueError(f"kfp.auth is `service_account` but {self.token_path} is missing")
        return None


class RollbackRule(_Section):
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


class DeploySettings(_Section):
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


class Settings(BaseSettings):
    """Everything mlstack reads, in one typed tree."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    root: Path = Field(default_factory=Path.cwd)
    artifacts_dir: Path = Path("artifacts")
    mode: Literal["local", "cluster"] = Field(
        "local", description="local: Optuna, KFP local runner; cluster: Katib, kfp.Client"
    )
    cache: bool = Field(True, description="reuse a step's outputs when nothing it reads changed")
    state_uri: str | None = Field(
        None,
        description="where state that outlives a step is kept (the Feast offline data, the "
        "payload log, drift decisions): a folder or an object store prefix "
        "(s3://bucket/prefix); none: artifacts_dir",
    )
    object_store: ObjectStoreSettings = ObjectStoreSettings()
    source: SourceSettings = SourceSettings()
    validation: ValidationSettings = ValidationSettings()
    features: FeatureSettings = FeatureSettings()
    feast: FeastSettings = FeastSettings()
    split: SplitSettings = SplitSettings()
    tuning: TuningSettings = TuningSettings()
    katib: KatibSettings = KatibSettings()
    evaluation: EvaluationSettings = EvaluationSettings()
    gate: GateSettings = GateSettings()
    mlflow: MlflowSettings = MlflowSettings()
    serving: ServingSettings = ServingSettings()
    pipeline: PipelineSettings = PipelineSettings()
    kfp: KfpSettings = KfpSettings()
    deploy: DeploySettings = DeploySettings()
    monitoring: MonitoringSettings = MonitoringSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        yaml_file = _yaml_file.get()
        if yaml_file is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=yaml_file))
        return tuple(sources)

    @model_validator(mode="after")
    def _object_store_endpoint(self) -> Settings:
        """An `s3://` source is read from the configured object store unless its own
        storage options name an endpoint."""
        endpoint = self.object_store.endpoint_url
        options = self.source.storage_options
        if endpoint and self.source.uri.startswith(("s3://", "s3a://")):
            client = options.setdefault("client_kwargs", {})
            client.setdefault("endpoint_url", endpoint)
        return self

    @model_validator(mode="after")
    def _absolute_paths(self) -> Settings:
        self.root = self.root.resolve()
        self.artifacts_dir = self.root / self.artifacts_dir
        self.feast.repo_path = self.root / self.feast.repo_path
        if self.feast.data_dir is not None:
            self.feast.data_dir = self.root / self.feast.data_dir
        if self.state_uri is not None and "://" not in self.state_uri:
            self.state_uri = str(self.root / self.state_uri)
        if self.serving.batch_output_dir is not None:
            self.serving.batch_output_dir = self.root / self.serving.batch_output_dir
        payloads = self.serving.payload_dir
        if payloads is not None and "://" not in payloads:
            self.serving.payload_dir = str(self.root / payloads)
        self.kfp.package_path = self.root / self.kfp.package_path
        if "://" not in self.source.uri and not Path(self.source.uri).is_absolute():
            self.source.uri = str(self.root / self.source.uri)
        self.mlflow.tracking_uri = _sqlite_under(self.root, self.mlflow.tracking_uri)
        if not urlparse(self.mlflow.artifact_location).scheme:
            self.mlflow.artifact_location = (self.root / self.mlflow.artifact_location).as_uri()
        return self

    # -- derived locations -------------------------------------------------------------
    def state(self, *parts: str) -> str:
        """A location in the state store (`state_uri`, else `artifacts_dir`)."""
        root = (self.state_uri or str(self.artifacts_dir)).rstrip("/")
        return "/".join([root, *(p.strip("/") for p in parts)])

    def data_dir(self, data_version: str) -> Path:
        return self.artifacts_dir / "data" / data_version

    def features_dir(self, feature_version: str) -> Path:
        return self.artifacts_dir / "features" / feature_version

    def payload_uri(self) -> str:
        """Where the predictor logs served requests and the drift check reads them."""
        return self.serving.payload_dir or self.state("payloads")

    @property
    def reports_dir(self) -> Path:
        return self.artifacts_dir / "reports"

    def to_json(self) -> str:
        """Serialise for a pipeline parameter; `from_json` restores it exactly."""
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str) -> Settings:
        return cls.model_validate(json.loads(text))


def _sqlite_under(root: Path, uri: str) -> str:
    """Anchor a relative `sqlite:///file.db` URI at the project root."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
        return prefix + str(root / uri[len(prefix) :])
    return uri


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """Turn ``["features.horizon_days=14", ...]`` into a nested dict; values are YAML scalars."""
    tree: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"override {pair!r} is not of the form section.key=value")
        node = tree
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(raw)
    return tree


def load_settings(
    config: Path | str | None = None, overrides: list[str] | dict[str, Any] | None = None
) -> Settings:
    """Load settings from a YAML file (the bundled default if none), env vars and overrides."""
    path = Path(config) if config is not None else DEFAULT_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    init = parse_overrides(overrides) if isinstance(overrides, list) else (overrides or {})
    token = _yaml_file.set(path)
    try:
        return Settings(**init)
    finally:
        _yaml_file.reset(token)
