"""One drift check: a window against the champion's reference, the policy's decision, and
what follows from it (the decisions log, an alert, a retrain).

`assess_statistics` is the pure core the CLI, the monitoring pipeline and the replay share
(`assess` for frames held whole); `run_check` gathers its inputs and acts on the decision:
`plan_window` decides once what the window is, `mlstack.monitoring.window` reads it shard by
shard (`features.shards`) into statistics and merges them exactly.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
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
from mlstack.features.history import naive_utc
from mlstack.features.shards import partition, split_by_shard
from mlstack.models.metrics import classification_metrics
from mlstack.monitoring import MonitoringError, alerts, decisions
from mlstack.monitoring.drift import (
    PREDICTION,
    ColumnDrift,
    drift_table_of,
    evidently_values,
    prediction_drift,
)
from mlstack.monitoring.policy import Decision, decide, drifted_share
from mlstack.monitoring.reference import load_reference
from mlstack.monitoring.statistics import WindowStats, window_stats
from mlstack.monitoring.trigger import LocalTraining, trigger_retrain
from mlstack.monitoring.window import (
    WindowPlan,
    check_partitions,
    feature_kinds,
    newest_snapshot,
    window_statistics,
)
from mlstack.serving.payloads import payload_files
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


def statistics_of(frame: pd.DataFrame, settings: Settings, name: str) -> WindowStats:
    """The statistics of a frame's monitored columns and its scores (a reference, or a
    window held whole)."""
    kinds = feature_kinds(settings, list(frame.columns))
    if PREDICTION in frame.columns:
        kinds[PREDICTION] = "numerical"
    return window_stats(frame, kinds, name, 0)


def assess(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    settings: Settings,
    *,
    performance: dict[str, float] | None = None,
    model_test_pr_auc: float | None = None,
    days_since_training: float | None = None,
) -> Assessment:
    """Test the window against the reference and apply the policy (`assess_statistics`
    of two frames)."""
    return assess_statistics(
        statistics_of(reference, settings, "reference"),
        statistics_of(current, settings, "window"),
        settings,
        performance=performance,
        model_test_pr_auc=model_test_pr_auc,
        days_since_training=days_since_training,
    )


def assess_statistics(
    reference: WindowStats,
    current: WindowStats,
    settings: Settings,
    *,
    performance: dict[str, float] | None = None,
    model_test_pr_auc: float | None = None,
    days_since_training: float | None = None,
) -> Assessment:
    """Test the window against the reference, from their statistics, and apply the policy."""
    cfg = settings.monitoring
    if current.rows < cfg.min_window_rows:
        raise MonitoringError(
            f"empty window: {current.rows} rows, fewer than monitoring.min_window_rows="
            f"{cfg.min_window_rows}; nothing was decided"
        )
    if reference.rows == 0:
        raise MonitoringError("missing reference: the reference has no rows")
    # categoricals are tested where the window has them: the payload log carries only the
    # model's features, while the reference also keeps the log's attributes (country, ...)
    kinds = feature_kinds(settings, list(current.columns))
    features = drift_table_of(reference.columns, current.columns, kinds, cfg)
    prediction = None
    if PREDICTION in reference.columns and PREDICTION in current.columns:
        prediction = prediction_drift(
            reference.columns[PREDICTION], current.columns[PREDICTION], cfg
        )
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


def plan_window(
    settings: Settings, start: pd.Timestamp, end: pd.Timestamp, champion: dict, workdir: Path
) -> tuple[WindowPlan, pd.DataFrame | None]:
    """Decide once what every shard reads: the window, the snapshots, the champion to
    score with (brought to `workdir`), and the log's lines for the matured labels (split by
    shard into `workdir`, or returned whole with one shard)."""
    cfg = settings.monitoring
    horizon = pd.Timedelta(days=settings.features.horizon_days)
    # the requests (or snapshot) one horizon before the window: their labels have matured
    matured_start, matured_end = start - horizon, end - horizon
    fields: dict[str, Any] = {}
    if cfg.source == "snapshots":
        import mlflow  # lazy on purpose: MLflow is slow to import

        try:
            table = store.sync_offline_source(settings)
        except store.FeatureStoreUnavailable as err:
            raise MonitoringError(f"empty window: {err}") from None
        if not table.exists():
            raise MonitoringError(
                f"empty window: no feature table at {table}: run `make run` first"
            )
        check_partitions(table, settings.features.shards)
        uri = f"models:/{settings.mlflow.registered_model}/{champion['model_version']}"
        fields = {
            "table": str(table),
            "snapshot": newest_snapshot(table, start, end),
            "matured_snapshot": newest_snapshot(table, matured_start, matured_end),
            "model": mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(workdir)),
        }
        matured = fields["matured_snapshot"] is not None
    else:
        fs, folder = storage.filesystem(settings.payload_uri(), settings.object_store)
        matured = bool(payload_files(folder, matured_start, matured_end, fs))
    lines = None
    if matured:
        lines = read_clean(settings)
        fields["last_timestamp"] = naive_utc(lines["timestamp"]).max().isoformat()
        shards = settings.features.shards
        if shards > 1:  # each shard reads its own lines; the whole log is not kept here
            for shard, part in enumerate(split_by_shard(lines, shards)):
                path = partition(workdir / "log", shard)
                path.parent.mkdir(parents=True, exist_ok=True)
                part.to_parquet(path, index=False)
            fields["log_dir"], lines = str(workdir / "log"), None
    plan = WindowPlan(
        source=cfg.source,
        start=start.isoformat(),
        end=end.isoformat(),
        matured_start=matured_start.isoformat(),
        matured_end=matured_end.isoformat(),
        sample_rows=cfg.reference_rows,
        **fields,
    )
    return plan, lines


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
    cfg = settings.monitoring
    end = pd.Timestamp(now or datetime.now(UTC))
    end = end.tz_localize("UTC") if end.tzinfo is None else end.tz_convert("UTC")
    start = end - pd.Timedelta(days=cfg.window_days)
    reference, champion = load_reference(settings.mlflow)
    with tempfile.TemporaryDirectory() as tmp:
        plan, lines = plan_window(settings, start, end, champion, Path(tmp))
        window = window_statistics(settings, plan, lines)
    del lines
    if window.rows == 0:
        raise MonitoringError(
            f"empty window: no {cfg.source} rows from {start:%Y-%m-%d %H:%M} to "
            f"{end:%Y-%m-%d %H:%M} UTC; nothing was decided"
        )
    performance = None
    if len(window.labels):
        performance = realised_performance(window.scores, window.labels, settings.evaluation)
    trained = champion["registered_at"]
    days = (end - trained).total_seconds() / 86400
    result = assess_statistics(
        statistics_of(reference.frame, settings, "reference"),
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
        "rows": window.rows,
        "source": cfg.source,
        "shards": settings.features.shards,
    }
    result.model = {k: str(v) for k, v in champion.items()}
    out = monitoring_dir(settings) / wid
    out.mkdir(parents=True, exist_ok=True)
    if cfg.html_report:
        _write_report(reference.frame, window, settings, out)
        result.window["report"] = str(out / "report.html")
        result.window["report_rows"] = len(window.sample)
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


def _write_report(
    reference: pd.DataFrame, window: WindowStats, settings: Settings, out: Path
) -> None:
    """Evidently's report of the window's sample against the reference; the page says when
    the sample is not the whole window."""
    note = None
    if len(window.sample) < window.rows:
        note = (
            f"This report compares the reference with a sample of {len(window.sample):,} of "
            f"the window's {window.rows:,} rows (the rows with the smallest fixed hash of "
            "their values, at most monitoring.reference_rows), so its figures can differ from "
            "the drift check's. The numbers the policy reads (summary.json) are computed from "
            "every row of the window."
        )
    evidently_values(
        reference,
        window.sample,
        {**feature_kinds(settings, list(window.columns)), PREDICTION: "numerical"},
        settings.monitoring,
        out / "report.html",
        out / "evidently.json",
        note=note,
    )


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
