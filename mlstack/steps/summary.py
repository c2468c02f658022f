"""The run summary: what a training-pipeline run did, from its steps' outputs."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from mlstack.steps.results import Baselines, GateOutcome, Registered, Trained


def _num(value: Any, fmt: str = ".4f") -> str:
    return "n/a" if value is None else format(value, fmt)


@dataclass
class RunSummary:
    """Gathered by the pipeline's last step; printed by `mlstack run`."""

    data: dict[str, Any]
    validation: dict[str, Any]
    features: dict[str, Any]
    dataset: dict[str, Any]
    reports: dict[str, str]
    materialized_until: str
    models: dict[str, Any] = field(default_factory=dict)
    mlflow: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=str)

    @classmethod
    def from_json(cls, text: str) -> RunSummary:
        return cls(**json.loads(text))

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
        dropped_text = _by_rule(self.data.get("dropped", {}))
        kept_text = _by_rule(self.data.get("kept_with_warning", {}))
        v, f, d = self.validation, self.features, self.dataset
        rows = [
            ("data version", self.data.get("data_version")),
            ("source", self.data.get("source_uri")),
            (
                "rows read / kept",
                f"{self.data.get('rows_read', 0):.0f} / {self.data.get('rows_written', 0):.0f}",
            ),
            ("rows dropped, by rule", dropped_text),
            ("rows kept with a warning, by rule", kept_text),
            ("returns (not orders; netted from spend)", f"{self.data.get('returns', 0):.0f}"),
            (
                "validation rules passed / failed / warnings",
                f"{v.get('rules_passed', 0):.0f} / {v.get('rules_failed', 0):.0f} / "
                f"{v.get('warnings', 0):.0f}",
            ),
            ("feature version", f.get("feature_version")),
            (
                "feature rows (customers, snapshots)",
                f"{f.get('feature_rows', 0):.0f} ({f.get('customers', 0):.0f}, "
                f"{f.get('snapshots', 0):.0f})",
            ),
            ("snapshots", f"{f.get('first_snapshot')} .. {f.get('last_snapshot')}"),
            ("training-set rows", f"{d.get('training_rows', 0):.0f}"),
            ("label rate", f"{d.get('label_rate', 0):.3f} ({d.get('label')})"),
            ("feature service", d.get("feature_service")),
            ("online store materialized until", self.materialized_until),
        ]
        return ["## Data", "", "| | |", "|---|---|", *[f"| {k} | {val} |" for k, val in rows], ""]

    def _model_lines(self) -> list[str]:
        if not self.models:
            return []
        m = self.models
        lines = [
            "## Models (test period)",
            "",
            "| model | ROC-AUC | PR-AUC | Brier | lift@top | validation " + m["objective"] + " |",
            "|---|---|---|---|---|---|",
        ]
        for name, row in m["table"].items():
            lines.append(
                f"| {name} | {_num(row.get('roc_auc'))} | {_num(row.get('pr_auc'))} | "
                f"{_num(row.get('brier'))} | {_num(row.get('lift_at_top'), '.2f')} | "
                f"{_num(row.get('validation'))} |"
            )
        decision = m["decision"]
        lines += [
            "",
            f"Tuning: {m.get('tuning')}",
            f"L1 logistic regression drops: {', '.join(m.get('l1_dropped') or []) or 'none'}",
            "",
            f"**Gate: {_verdict(decision)}** "
            f"({decision.get('confidence', 0.95):.0%} paired bootstrap intervals over customers, "
            f"{decision.get('replicates', '?')} redraws of the test period)",
            *[f"- {reason}" for reason in decision["reasons"]],
            "",
            f"Registered **{m['model']} version {m['version']}**, aliases: "
            f"{', '.join(m['aliases']) or 'none'}",
            "",
        ]
        return lines

    def _where(self) -> list[str]:
        lines = ["## Reports", "", *[f"- {k}: `{p}`" for k, p in self.reports.items()]]
        if self.mlflow:
            lines += [
                "",
                f"MLflow run `{self.mlflow['run_id']}` in experiment "
                f"`{self.mlflow['experiment']}`. Open the UI with:",
                "",
                f"    mlflow ui --backend-store-uri {self.mlflow['tracking_uri']} "
                "--host 127.0.0.1 --port 5000",
            ]
        return [*lines, ""]


def _by_rule(rows: dict[str, float]) -> str:
    """Row counts by rule, the largest first: '2938 missing_customer_id, 18 exact_duplicate'."""
    ordered = sorted(rows.items(), key=lambda item: -item[1])
    return ", ".join(f"{n:.0f} {rule}" for rule, n in ordered) or "none"


def _verdict(decision: dict[str, Any]) -> str:
    if not decision["promote"]:
        return "keep the champion"
    candidate = decision.get("candidate") or "challenger"
    return "promote the challenger" if candidate == "challenger" else f"promote {candidate}"


def model_section(
    objective: str,
    baselines: Baselines,
    tuning: dict[str, Any],
    trained: Trained,
    gate: GateOutcome,
    test_metrics: dict[str, float],
    registration: Registered,
) -> dict[str, Any]:
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
    return {
        "objective": objective,
        "table": table,
        "tuning": tuning,
        "l1_dropped": baselines.l1_dropped,
        "decision": gate.decision.model_dump(mode="json"),
        **registration.facts(),
    }
