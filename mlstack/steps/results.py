"""What each step returns: one typed result per step.

Every result carries `metrics` (numbers for the KFP Metrics panel) and the facts its
callers read, as fields. `facts()` is what a component puts into its output artifact's
metadata (the fields but the metrics); `from_facts` reads it back on the other side of the
pipeline boundary, so no caller reads a step's output through string keys.
"""

from __future__ import annotations

import json
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field


def plain(value: Any) -> Any:
    """`value` with everything JSON cannot hold (numpy numbers, paths) made plain."""
    return json.loads(json.dumps(value, default=str))


class Result(BaseModel):
    """The base of every step's result: its metrics, then its own fields."""

    model_config = ConfigDict(extra="ignore")

    metrics: dict[str, int | float] = Field(default_factory=dict)

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str) -> Self:
        return cls.model_validate_json(text)

    def facts(self) -> dict[str, Any]:
        """The fields but the metrics, JSON-ready: an output artifact's metadata."""
        return self.model_dump(mode="json", exclude={"metrics"})

    @classmethod
    def from_facts(cls, facts: dict[str, Any]) -> Self:
        """The result back from an artifact's metadata (its metrics are not there)."""
        return cls.model_validate(dict(facts))


# -- data steps ----------------------------------------------------------------------------


class Ingested(Result):
    data_version: str
    path: str
    rows: int
    source_uri: str = ""


class Validated(Result):
    data_version: str
    source_uri: str = ""
    rows_read: int
    rows_written: int
    dropped: dict[str, int]
    returns: int
    kept_with_warning: dict[str, int]


class FeatureTable(Result):
    feature_version: str
    data_version: str
    first_snapshot: str
    last_snapshot: str


class TrainingSet(Result):
    label: str
    feature_service: str
    training_rows: int


class Materialized(Result):
    materialized_until: str


# -- model steps ---------------------------------------------------------------------------


class Lineage(BaseModel):
    """Which data, features and training set a model comes from (the MLflow run's params)."""

    data_version: str
    feature_version: str
    feature_service: str
    training_rows: int


class RunStarted(Result):
    run_id: str
    run_name: str


class Scores(BaseModel):
    """One fitted model's metrics on the validation and test periods."""

    validation: dict[str, float]
    test: dict[str, float]


class BaselineScores(Scores):
    info: dict[str, Any] = Field(default_factory=dict)

    @property
    def dropped_features(self) -> list[str] | None:
        """The features the L1 penalty drops (None for a baseline without a penalty)."""
        return self.info.get("dropped_features")


class Baselines(Result):
    """Each baseline's scores, by name; the artifact metadata is that mapping itself."""

    baselines: dict[str, BaselineScores]

    def facts(self) -> dict[str, Any]:
        return {name: found.model_dump(mode="json") for name, found in self.baselines.items()}

    @classmethod
    def from_facts(cls, facts: dict[str, Any]) -> Self:
        return cls(baselines=dict(facts))

    @property
    def l1_dropped(self) -> list[str] | None:
        found = self.baselines.get("l1_logistic")
        return None if found is None else found.dropped_features


class TrainingRows(BaseModel):
    """What the row budget (`split.train_rows`) kept: the train part's rows and the final
    fit's (train + validation), before and after sampling."""

    budget: int | None
    train_before: int
    train_after: int
    final_before: int
    final_after: int

    def params(self) -> dict[str, int | str]:
        """The MLflow run's parameters."""
        return {
            "train_rows_budget": "none" if self.budget is None else self.budget,
            "train_rows_before": self.train_before,
            "train_rows_after": self.train_after,
            "final_fit_rows_before": self.final_before,
            "final_fit_rows_after": self.final_after,
        }


class Tuned(Result):
    best_params: dict[str, Any]
    backend: str
    algorithm: str | None = None
    rows: TrainingRows | None = None  # None when the trials ran elsewhere (Katib)


class CandidateScores(Scores):
    params: dict[str, Any]
    fit_reused: bool = False


class Trained(Result):
    challenger: str
    kind: str
    params: dict[str, Any]
    candidates: dict[str, CandidateScores]
    rows: TrainingRows | None = None


class Verdict(BaseModel):
    """The gate's decision as the register step and the summary read it (every other
    figure of `GateDecision` rides along unchanged)."""

    model_config = ConfigDict(extra="allow")

    promote: bool
    candidate: str | None = None
    reasons: list[str] = Field(default_factory=list)
    confidence: float = 0.95
    replicates: int | None = None
    comparisons: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    # every candidate's test metrics, by model: register records the chosen one's
    test_metrics: dict[str, dict[str, float]] = Field(default_factory=dict)


class GateOutcome(BaseModel):
    """What evaluation hands to registration and the summary (the evaluate component's
    output parameter)."""

    decision: Verdict
    champion_version: str | None = None
    champion_metrics: dict[str, float] | None = None
    report_dir: str


class Roc(BaseModel):
    """The challenger's ROC curve on the test period, every threshold finite."""

    fpr: list[float]
    tpr: list[float]
    thresholds: list[float]


class Confusion(BaseModel):
    categories: list[str]
    matrix: list[list[int]]


class Evaluated(Result):
    evaluation: dict[str, Any]  # the evaluation's JSON summary (`Evaluation.to_dict`)
    roc: Roc
    confusion: Confusion
    gate: GateOutcome


class Registered(Result):
    model: str
    version: str
    model_kind: str
    aliases: list[str]
    promoted: bool


# -- monitoring steps ----------------------------------------------------------------------


class DriftChecked(Result):
    """The drift check's decision (metrics: drifted share, prediction drift, realised
    PR-AUC); the retrain is the monitoring pipeline's conditional step, not the check's."""

    action: Literal["none", "alert", "retrain"]
    reasons: list[str]
    window_id: str
