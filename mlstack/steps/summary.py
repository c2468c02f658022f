"""The run summary: what a training-pipeline run did, from its steps' results."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from mlstack.models.sampling import RowCounts, budget_line
from mlstack.steps.results import (
    Baselines,
    FeatureTable,
    GateOutcome,
    Registered,
    Trained,
    TrainingSet,
    Validated,
    Verdict,
)
from mlstack.tuning import format_params


def _num(value: Any, fmt: str = ".4f") -> str:
    return "n/a" if value is None else format(value, fmt)


class ModelSection(BaseModel):
    """The models part of the summary: one table row per baseline, candidate and the
    champion before the run; the tuning, the gate's decision and what was registered."""

    objective: str
    table: dict[str, dict[str, Any]]
    tuning: dict[str, Any]
    l1_dropped: list[str] | None = None
    decision: Verdict
    registered: Registered
    training_rows: str | None = None  # what the row budget kept, in words


class MlflowRun(BaseModel):
    run_id: str
    experiment: str
    tracking_uri: str


class RunSummary(BaseModel):
    """Gathered by the pipeline's last step; printed by `mlstack run`. `data` holds the
    validation's result with its metrics (the rules passed and failed)."""

    data: Validated
    features: FeatureTable
    dataset: TrainingSet
    reports: dict[str, str]
    materialized_until: str
    models: ModelSection | None = None
    mlflow: MlflowRun | None = None

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str) -> RunSummary:
        return cls.model_validate_json(text)

    def markdown(self) -> str:
        return "\n".join(
            [
                "# mlstack training run",
                "",
                *self._data_lines(),
                *self._model_lines(),
                *self._where(),
            ]
        )

    def _data_lines(self) -> list[str]:
        data, f, d = self.data, self.features, self.dataset
        v, fm, dm = data.metrics, f.metrics, d.metrics
        rows = [
            ("data version", data.data_version),
            ("source", data.source_uri),
            ("rows read / kept", f"{data.rows_read:.0f} / {data.rows_written:.0f}"),
            ("rows dropped, by rule", _by_rule(data.dropped)),
            ("rows kept with a warning, by rule", _by_rule(data.kept_with_warning)),
            ("returns (not orders; netted from spend)", f"{data.returns:.0f}"),
            (
                "validation rules passed / failed / warnings",
                f"{v.get('rules_passed', 0):.0f} / {v.get('rules_failed', 0):.0f} / "
                f"{v.get('warnings', 0):.0f}",
            ),
            ("feature version", f.feature_version),
            (
                "feature rows (customers, snapshots)",
                f"{fm.get('feature_rows', 0):.0f} ({fm.get('customers', 0):.0f}, "
                f"{fm.get('snapshots', 0):.0f})",
            ),
            ("snapshots", f"{f.first_snapshot} .. {f.last_snapshot}"),
            ("training-set rows", f"{d.training_rows:.0f}"),
            ("label rate", f"{dm.get('label_rate', 0):.3f} ({d.label})"),
            ("feature service", d.feature_service),
            ("online store materialized until", self.materialized_until),
        ]
        return ["## Data", "", "| | |", "|---|---|", *[f"| {k} | {val} |" for k, val in rows], ""]

    def _model_lines(self) -> list[str]:
        if self.models is None:
            return []
        m = self.models
        lines = [
            "## Models (test period)",
            "",
            "| model | ROC-AUC | PR-AUC | Brier | lift@top | validation " + m.objective + " |",
            "|---|---|---|---|---|---|",
        ]
        for name, row in m.table.items():
            lines.append(
                f"| {name} | {_num(row.get('roc_auc'))} | {_num(row.get('pr_auc'))} | "
                f"{_num(row.get('brier'))} | {_num(row.get('lift_at_top'), '.2f')} | "
                f"{_num(row.get('validation'))} |"
            )
        decision, registered = m.decision, m.registered
        replicates = "?" if decision.replicates is None else decision.replicates
        lines += [
            "",
            tuning_line(m.objective, m.tuning),
            *([f"Rows: {m.training_rows}"] if m.training_rows else []),
            f"L1 logistic regression drops: {', '.join(m.l1_dropped or []) or 'none'}",
            "",
            f"**Gate: {_verdict(decision)}** "
            f"({decision.confidence:.0%} paired bootstrap intervals over customers, "
            f"{replicates} redraws of the test period)",
            *[f"- {reason}" for reason in decision.reasons],
            "",
            f"Registered **{registered.model} version {registered.version}**, aliases: "
            f"{', '.join(registered.aliases) or 'none'}",
            "",
        ]
        return lines

    def _where(self) -> list[str]:
        lines = ["## Reports", "", *[f"- {k}: `{p}`" for k, p in self.reports.items()]]
        if self.mlflow is not None:
            lines += [
                "",
                f"MLflow run `{self.mlflow.run_id}` in experiment "
                f"`{self.mlflow.experiment}`. Open the UI with:",
                "",
                f"    mlflow ui --backend-store-uri {self.mlflow.tracking_uri} "
                "--host 127.0.0.1 --port 5000",
            ]
        return [*lines, ""]


def _by_rule(rows: dict[str, int]) -> str:
    """Row counts by rule, the largest first: '2938 missing_customer_id, 18 exact_duplicate'."""
    ordered = sorted(rows.items(), key=lambda item: -item[1])
    return ", ".join(f"{n:.0f} {rule}" for rule, n in ordered) or "none"


def _verdict(decision: Verdict) -> str:
    if not decision.promote:
        return "keep the champion"
    candidate = decision.candidate or "challenger"
    return "promote the challenger" if candidate == "challenger" else f"promote {candidate}"


def tuning_line(objective: str, tuning: dict[str, Any]) -> str:
    """The tuning in words: its best value, its trials and the best parameters."""
    best = tuning.get("best_value")
    words = [f"best validation {objective} {best:.4f}" if best is not None else "best parameters"]
    if tuning.get("trials") is not None:
        counts = [f"{tuning[k]:.0f} {k}" for k in ("pruned", "failed") if tuning.get(k) is not None]
        words.append(
            f"in {tuning['trials']:.0f} trials" + (f" ({', '.join(counts)})" if counts else "")
        )
    params = format_params(tuning.get("best_params") or {}) or "the defaults"
    return f"Tuning: {' '.join(words)}: {params}"


def model_section(
    objective: str,
    baselines: Baselines,
    tuning: dict[str, Any],
    trained: Trained,
    gate: GateOutcome,
    test_metrics: dict[str, float],
    registration: Registered,
) -> ModelSection:
    """The models part of the summary: one row per baseline, candidate and champion."""
    table: dict[str, dict[str, Any]] = {}
    for name, found in baselines.baselines.items():
        table[f"baseline: {name}"] = {**found.test, "validation": found.validation[objective]}
    for name, found in trained.candidates.items():
        mark = " (challenger)" if name == trained.challenger else ""
        row = test_metrics if mark else found.test
        table[f"candidate: {name}{mark}"] = {**row, "validation": found.validation[objective]}
    if gate.champion_metrics:
        previous = f"champion before this run (v{gate.champion_version})"
        table[previous] = {**gate.champion_metrics, "validation": None}
    return ModelSection(
        objective=objective,
        table=table,
        tuning=tuning,
        l1_dropped=baselines.l1_dropped,
        decision=gate.decision,
        registered=registration,
        training_rows=None
        if trained.rows is None
        else budget_line(RowCounts(**trained.rows.model_dump())),
    )
