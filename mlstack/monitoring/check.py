"""One drift check: a window against the champion's reference, the policy's decision, and
what follows from it (the decisions log, an alert, a retrain).

`assess` is the pure core the CLI, the monitoring pipeline and the replay share; `run_check`
gathers its inputs (reference, window, matured labels) and acts on the decision.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlstack import storage
from mlstack.config import Settings
from mlstack.config.modelling import EvaluationSettings
from mlstack.data.clean import read_clean
from mlstack.features import store
from mlstack.features.build import build_labels
from mlstack.features.definitions import (
    ENTITY,
    EVENT_TIMESTAMP,
    attribute_names,
    feature_list,
    feature_names,
    label_name,
)
from mlstack.models.metrics import classification_metrics
from mlstack.monitoring import MonitoringError, alerts, decisions
from mlstack.monitoring.drift import (
    PREDICTION,
    ColumnDrift,
    Kind,
    drift_table,
    evidently_values,
    prediction_drift,
)
from mlstack.monitoring.policy import Decision, decide, drifted_share
from mlstack.monitoring.reference import load_reference
from mlstack.monitoring.trigger import LocalTraining, trigger_retrain
from mlstack.registry.models import CHAMPION
from mlstack.serving.payloads import read_payloads
from mlstack.steps import configure_logging
from mlstack.steps.results import DriftChecked

log = logging.getLogger(__name__)


@dataclass
class Assessment:
    """A window's drift per feature, its prediction drift, realised performance and the
    policy's decision."""

    features: list[ColumnDrift]
    prediction: ColumnDrift | None
    performance: dict[str, float] | None
    decision: Decision
    window: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)

    @property
    def drifted_share(self) -> float:
        return drifted_share(self.features)

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision.to_dict(),
            "drifted_share": self.drifted_share,
            "drifted_features": [c.column for c in self.features if c.drifted],
            "features": [c.to_dict() for c in self.features],
            "prediction": self.prediction.to_dict() if self.prediction else None,
            "performance": self.performance,
            "window": self.window,
            "model": self.model,
        }


def feature_kinds(settings: Settings, columns: list[str] | None = None) -> dict[str, Kind]:
    """Each monitored column's kind: the model's features are numerical (calendar features
    are left out), the columns in `monitoring.categorical_columns` and the log's mapped
    categorical attributes (when present in `columns`) categorical."""
    calendar = set(settings.monitoring.calendar_columns)
    kinds: dict[str, Kind] = {
        f.name: "numerical" for f in feature_list(settings) if f.name not in calendar
    }
    categorical = [*settings.monitoring.categorical_columns, *attribute_names(settings.source)]
    for name in dict.fromkeys(categorical):
        if columns is None or name in columns:
            kinds[name] = "categorical"
    return kinds


def assess(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    settings: Settings,
    *,
    performance: dict[str, float] | None = None,
    model_test_pr_auc: float | None = None,
    days_since_training: float | None = None,
) -> Assessment:
    """Test the window against the reference and apply the policy."""
    cfg = settings.monitoring
    if len(current) < cfg.min_window_rows:
        raise MonitoringError(
            f"empty window: {len(current)} rows, fewer than monitoring.min_window_rows="
            f"{cfg.min_window_rows}; nothing was decided"
        )
    if reference.empty:
        raise MonitoringError("missing reference: the reference has no rows")
    # categoricals are tested where the window has them: the payload log carries only the
    # model's features, while the reference also keeps the log's attributes (country, ...)
    kinds = feature_kinds(settings, list(current.columns))
    features = drift_table(reference, current, kinds, cfg)
    prediction = None
    if PREDICTION in reference.columns and PREDICTION in current.columns:
        prediction = prediction_drift(reference[PREDICTION], current[PREDICTION], cfg)
    decision = decide(
        features, prediction, performance, model_test_pr_auc, days_since_training, cfg.policy
    )
    return Assessment(features, prediction, performance, decision)


def realised_performance(
    scores: np.ndarray, labels: np.ndarray, evaluation: EvaluationSettings
) -> dict[str, float] | None:
    """PR-AUC, ROC-AUC and calibration of matured predictions; None when a class is absent."""
    if len(labels) == 0 or len(np.unique(labels)) < 2:
        return None
    return classification_metrics(
        labels, scores, evaluation.top_fraction, evaluation.calibration_bins
    )


# -- the check as a command ---------------------------------------------------------------


def monitoring_dir(settings: Settings) -> Path:
    return settings.artifacts_dir / "monitoring"


def window_id(end: pd.Timestamp, days: int) -> str:
    """A deterministic name for the window ending at `end` (the trigger's idempotency key)."""
    start = end - pd.Timedelta(days=days)
    return f"{start:%Y%m%d}-{end:%Y%m%d}"


def _payload_window(settings: Settings, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """The served requests logged in the window (the serving payload log)."""
    fs, folder = storage.filesystem(settings.payload_uri(), settings.object_store)
    return read_payloads(folder, start=start.to_pydatetime(), end=end.to_pydatetime(), fs=fs)


def _snapshot_window(
    settings: Settings, start: pd.Timestamp, end: pd.Timestamp, model: Any
) -> pd.DataFrame:
    """The newest feature snapshot in [start, end) of the offline store, scored."""
    try:
        path = store.sync_offline_source(settings)
    except store.FeatureStoreUnavailable as err:
        raise MonitoringError(f"empty window: {err}") from None
    if not path.exists():
        raise MonitoringError(f"empty window: no feature table at {path}: run `make run` first")
    table = pd.read_parquet(path)
    when = pd.to_datetime(table[EVENT_TIMESTAMP], utc=True)
    inside = table[(when >= start) & (when < end)]
    if inside.empty:
        return inside
    newest = inside[pd.to_datetime(inside[EVENT_TIMESTAMP], utc=True) == when[when < end].max()]
    newest = newest.reset_index(drop=True)
    newest[PREDICTION] = model.predict_proba(newest[feature_names(settings)])[:, 1]
    return newest


def _matured(settings: Settings, window: pd.DataFrame, end: pd.Timestamp) -> pd.DataFrame:
    """Rows of the window whose label horizon has passed by `end`, labelled from the log."""
    horizon = pd.Timedelta(days=settings.features.horizon_days)
    if "logged_at" in window.columns:
        stamp = pd.to_datetime(window["logged_at"], utc=True).dt.floor("D")
    else:
        stamp = pd.to_datetime(window[EVENT_TIMESTAMP], utc=True)
    rows = window.assign(**{EVENT_TIMESTAMP: stamp})
    rows = rows[rows[ENTITY].notna() & (stamp + horizon <= end)]
    if rows.empty:
        return rows
    return build_labels(read_clean(settings), rows.reset_index(drop=True), settings)


def run_check(
    settings: Settings,
    now: datetime | None = None,
    trigger: bool = True,
    local_training: LocalTraining | None = None,
) -> Assessment:
    """One drift check of the window ending `now` (default: the current time): compare,
    decide, record the decision, alert and, on `retrain`, trigger the training pipeline (in
    local mode with `local_training`).

    Raises `MonitoringError` (missing reference, empty window, a failed trigger) before
    anything is started."""
    import mlflow.sklearn

    cfg = settings.monitoring
    end = pd.Timestamp(now or datetime.now(UTC))
    end = end.tz_localize("UTC") if end.tzinfo is None else end.tz_convert("UTC")
    start = end - pd.Timedelta(days=cfg.window_days)
    reference, champion = load_reference(settings.mlflow)
    model = None
    if cfg.source == "payloads":
        window = _payload_window(settings, start, end)
    else:
        uri = f"models:/{settings.mlflow.registered_model}@{CHAMPION}"
        model = mlflow.sklearn.load_model(uri)
        window = _snapshot_window(settings, start, end, model)
    if window.empty:
        raise MonitoringError(
            f"empty window: no {cfg.source} rows from {start:%Y-%m-%d %H:%M} to "
            f"{end:%Y-%m-%d %H:%M} UTC; nothing was decided"
        )
    horizon = pd.Timedelta(days=settings.features.horizon_days)
    performance = None
    # the requests (or snapshot) one horizon before the window: their labels have matured
    if cfg.source == "payloads":
        matured_source = _payload_window(settings, start - horizon, end - horizon)
    else:
        matured_source = _snapshot_window(settings, start - horizon, end - horizon, model)
    if not matured_source.empty and ENTITY in matured_source.columns:
        labelled = _matured(settings, matured_source, end)
        if not labelled.empty:
            performance = realised_performance(
                labelled[PREDICTION].to_numpy(),
                labelled[label_name(settings.features)].to_numpy(),
                settings.evaluation,
            )
    trained = champion["registered_at"]
    days = (end - trained).total_seconds() / 86400
    result = assess(
        reference.frame,
        window,
        settings,
        performance=performance,
        model_test_pr_auc=reference.test_pr_auc,
        days_since_training=max(days, 0.0),
    )
    wid = window_id(end, cfg.window_days)
    result.window = {
        "id": wid,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "rows": len(window),
        "source": cfg.source,
    }
    result.model = {k: str(v) for k, v in champion.items()}
    out = monitoring_dir(settings) / wid
    out.mkdir(parents=True, exist_ok=True)
    if cfg.html_report:
        kinds = feature_kinds(settings, list(window.columns))
        if PREDICTION in window.columns:
            kinds[PREDICTION] = "numerical"
        evidently_values(
            reference.frame, window, kinds, cfg, out / "report.html", out / "evidently.json"
        )
        result.window["report"] = str(out / "report.html")
    (out / "summary.json").write_text(json.dumps(result.to_dict(), indent=2, default=str))
    _keep_in_state_store(settings, out, wid, result)
    if result.decision.action == "retrain" and trigger:
        result.window["run"] = trigger_retrain(
            settings, wid, result.decision.reasons, local_training
        )
    decisions.record(settings, result)
    if result.decision.action != "none":
        alerts.send(settings.monitoring, result)
    return result


def _keep_in_state_store(settings: Settings, out: Path, wid: str, result: Assessment) -> None:
    """With a remote state store (a CronJob's pod), the window's report and summary go
    there too, where a person finds them after the pod is gone."""
    if not settings.state_uri or not storage.is_remote(settings.state_uri):
        return
    for path in sorted(out.iterdir()):
        storage.upload(path, settings.state("monitoring", wid, path.name), settings.object_store)
    result.window["stored_at"] = settings.state("monitoring", wid)


def check_step(settings: Settings, report_html: Path) -> DriftChecked:
    """The monitoring pipeline's drift check: decide and record, but leave the retrain to
    the pipeline's conditional step."""
    configure_logging()
    result = run_check(settings, trigger=False)
    report = result.window.get("report")
    report_html.parent.mkdir(parents=True, exist_ok=True)
    if report:
        shutil.copyfile(report, report_html)
    else:
        report_html.write_text("<p>HTML report disabled (monitoring.html_report)</p>")
    metrics = {"drifted_share": result.drifted_share}
    if result.prediction is not None and np.isfinite(result.prediction.statistic):
        metrics["prediction_drift"] = result.prediction.statistic
    if result.performance:
        metrics["realised_pr_auc"] = result.performance["pr_auc"]
    return DriftChecked(
        metrics=metrics,
        action=result.decision.action,
        reasons=list(result.decision.reasons),
        window_id=result.window["id"],
    )
