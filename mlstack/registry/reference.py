"""The training reference a drift check compares with, built and kept at registration.

At registration the register step keeps a sample of the rows the model was fit on (its
feature columns) with the model's own scores on them, and the model's test metrics, as
artifacts of the model's MLflow run (`reference/`). The monitoring checks load the current
champion's (`mlstack.monitoring.reference`), so a new champion brings its own reference.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mlstack.config import MonitoringSettings, Settings
from mlstack.features.definitions import EVENT_TIMESTAMP, attribute_names, feature_names

log = logging.getLogger(__name__)

ARTIFACT_DIR = "reference"
FRAME_FILE = "reference.parquet"
META_FILE = "reference.json"
SAMPLE_SEED = 0
PREDICTION = "probability"  # the column of the model's scores (as in the drift checks)


@dataclass
class Reference:
    """Feature columns and `probability` of the training rows, and facts about the model."""

    frame: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def test_pr_auc(self) -> float | None:
        value = self.meta.get("test_metrics", {}).get("pr_auc")
        return None if value is None else float(value)


def newest_snapshots(rows: pd.DataFrame, count: int | None) -> pd.DataFrame:
    """The rows of the newest `count` snapshot dates (all rows when `count` is None or the
    rows carry no snapshot date)."""
    if count is None or EVENT_TIMESTAMP not in rows.columns:
        return rows
    when = pd.to_datetime(rows[EVENT_TIMESTAMP], utc=True)
    newest = sorted(when.unique())[-count:]
    return rows[when.isin(newest)]


def sample_reference(
    model: Any,
    training_rows: pd.DataFrame,
    features: list[str],
    attributes: list[str],
    monitoring: MonitoringSettings,
    test_metrics: dict[str, float] | None = None,
    trained_until: str | None = None,
) -> Reference:
    """A sample of at most `monitoring.reference_rows` training rows of the newest
    `monitoring.reference_snapshots` snapshots: `features`, the categorical `attributes`
    the rows carry, and the model's scores on them."""
    missing = [c for c in features if c not in training_rows.columns]
    if missing:
        raise ValueError(f"the training rows lack features: {', '.join(missing)}")
    rows = newest_snapshots(training_rows, monitoring.reference_snapshots)
    limit = monitoring.reference_rows
    if len(rows) > limit:
        rows = rows.sample(n=limit, random_state=SAMPLE_SEED)
    present = [a for a in attributes if a in rows.columns]
    frame = rows[[*features, *present]].reset_index(drop=True).copy()
    frame[PREDICTION] = model.predict_proba(rows[features])[:, 1]
    meta = {
        "rows": len(frame),
        "training_rows": len(training_rows),
        "features": features,
        "test_metrics": dict(test_metrics or {}),
        "trained_until": trained_until,
    }
    return Reference(frame, meta)


def build_reference(
    model: Any,
    training_rows: pd.DataFrame,
    settings: Settings,
    test_metrics: dict[str, float] | None = None,
    trained_until: str | None = None,
) -> Reference:
    """`sample_reference` with the features, attributes and limits of `settings`."""
    return sample_reference(
        model,
        training_rows,
        feature_names(settings),
        attribute_names(settings.source),
        settings.monitoring,
        test_metrics,
        trained_until,
    )


def log_reference(reference: Reference) -> None:
    """Attach the reference to the active MLflow run, under `reference/`."""
    import mlflow  # lazy on purpose: importing this module does not import MLflow

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        reference.frame.to_parquet(folder / FRAME_FILE, index=False)
        (folder / META_FILE).write_text(json.dumps(reference.meta, default=str, indent=2))
        mlflow.log_artifacts(str(folder), ARTIFACT_DIR)
    log.info("kept a drift reference of %d training rows", len(reference.frame))
