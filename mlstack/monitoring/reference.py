"""The training reference a drift check compares with: the champion's training rows.

At registration the training step keeps a sample of the rows the model was fit on (its
feature columns) with the model's own scores on them, and the model's test metrics, as
artifacts of the model's MLflow run (`reference/`). A check loads the reference of the
current champion, so a new champion brings its own reference.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mlstack.config import Settings
from mlstack.features.definitions import EVENT_TIMESTAMP, attribute_names, feature_names
from mlstack.monitoring import MonitoringError
from mlstack.monitoring.drift import PREDICTION

log = logging.getLogger(__name__)

ARTIFACT_DIR = "reference"
FRAME_FILE = "reference.parquet"
META_FILE = "reference.json"
SAMPLE_SEED = 0


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


def build_reference(
    model: Any,
    training_rows: pd.DataFrame,
    settings: Settings,
    test_metrics: dict[str, float] | None = None,
    trained_until: str | None = None,
) -> Reference:
    """A sample of at most `monitoring.reference_rows` training rows of the newest
    `monitoring.reference_snapshots` snapshots: features, categorical attributes and the
    model's scores on them."""
    features = feature_names(settings)
    missing = [c for c in features if c not in training_rows.columns]
    if missing:
        raise ValueError(f"the training rows lack features: {', '.join(missing)}")
    rows = newest_snapshots(training_rows, settings.monitoring.reference_snapshots)
    limit = settings.monitoring.reference_rows
    if len(rows) > limit:
        rows = rows.sample(n=limit, random_state=SAMPLE_SEED)
    attributes = [a for a in attribute_names(settings) if a in rows.columns]
    frame = rows[[*features, *attributes]].reset_index(drop=True).copy()
    frame[PREDICTION] = model.predict_proba(rows[features])[:, 1]
    meta = {
        "rows": len(frame),
        "training_rows": len(training_rows),
        "features": features,
        "test_metrics": dict(test_metrics or {}),
        "trained_until": trained_until,
    }
    return Reference(frame, meta)


def log_reference(reference: Reference) -> None:
    """Attach the reference to the active MLflow run, under `reference/`."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        reference.frame.to_parquet(folder / FRAME_FILE, index=False)
        (folder / META_FILE).write_text(json.dumps(reference.meta, default=str, indent=2))
        mlflow.log_artifacts(str(folder), ARTIFACT_DIR)
    log.info("kept a drift reference of %d training rows", len(reference.frame))


def load_reference(settings: Settings) -> tuple[Reference, dict[str, Any]]:
    """The current champion's reference and the champion's facts (version, run id,
    registered at); a `MonitoringError` naming the problem when there is none."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from mlstack.registry import models, tracking

    client = tracking.configure(settings)
    name = settings.mlflow.registered_model
    try:
        champion = models.champion(client, name)
    except MlflowException as err:
        raise MonitoringError(f"missing reference: cannot read model {name!r}: {err}") from err
    if champion is None:
        raise MonitoringError(
            f"missing reference: {name!r} has no champion yet; train one first (`make run`)"
        )
    facts = {
        "model_version": str(champion.version),
        "run_id": champion.run_id,
        "registered_at": pd.Timestamp(champion.creation_timestamp, unit="ms", tz="UTC"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        try:
            folder = mlflow.artifacts.download_artifacts(
                run_id=champion.run_id, artifact_path=ARTIFACT_DIR, dst_path=tmp
            )
            frame = pd.read_parquet(Path(folder) / FRAME_FILE)
            meta = json.loads((Path(folder) / META_FILE).read_text())
        except (MlflowException, OSError) as err:
            raise MonitoringError(
                f"missing reference: champion version {champion.version} (run "
                f"{champion.run_id}) has no {ARTIFACT_DIR}/{FRAME_FILE}; it was registered "
                "before drift references were kept: retrain to make one"
            ) from err
    return Reference(frame, meta), facts
