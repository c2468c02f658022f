"""Settings of the model: the split, tuning (Optuna or Katib), evaluation, the promotion gate
and MLflow."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from mlstack.config.base import Section


class SplitSettings(Section):
    """Time-based split on snapshot dates; the gap between splits is one label horizon."""

    test_snapshots: int = Field(8, ge=1, description="the last N labelled snapshots")
    validation_snapshots: int = Field(8, ge=1, description="the N before the test gap")
    train_snapshot_stride: int = Field(
        2, ge=1, description="train on every k-th snapshot: neighbours are near-duplicates"
    )
    train_rows: int | None = Field(
        1_000_000,
        ge=1,
        description="the most rows any model is fit on: train is sampled down to it by snapshot "
        "and label, and so is train + validation for the final refit; validation and test "
        "are scored on every row; null: no budget",
    )
    seed: int = Field(0, description="of the training rows' sample")


class ParamSpec(Section):
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


class TuningSettings(Section):
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


class KatibSettings(Section):
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


class EvaluationSettings(Section):
    """What the evaluation reports and when a slice counts as a bias finding."""

    top_fraction: float = Field(0.1, gt=0, lt=1)
    calibration_bins: int = Field(10, ge=2)
    slice_margin: float = Field(0.05, ge=0, description="PR-AUC below overall by more: flagged")
    min_slice_rows: int = 200
    slice_columns: list[str] = Field(
        default_factory=list, description="categorical columns of the data to slice by"
    )


class GateSettings(Section):
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


class MlflowSettings(Section):
    """Tracking and registry: SQLite and a local folder by default, any URI by config."""

    tracking_uri: str = "sqlite:///artifacts/mlflow.db"
    artifact_location: str = "artifacts/mlflow"
    experiment: str = "mlstack-propensity"
    registered_model: str = "mlstack-propensity"
