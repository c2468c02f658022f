"""Batch scoring for downstream systems: every active customer as of a snapshot date.

The features come through the same Feast feature service as the server's (a point-in-time
lookup as of the date), and the probabilities from the same `LoadedModel.predict`, so a
customer scored here and by the server on the same features gets the same number.
A customer is active at a date when the feature table has a row for them within one feature
TTL (one snapshot interval) before it, i.e. they had bought by then.

Output: `<serving.batch_output_dir>/snapshot_date=YYYY-MM-DD/scores.{parquet,csv}` with
`customer_id`, `probability`, `model_version`, `snapshot_date`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from mlstack.config import Settings
from mlstack.features import store as feature_store
from mlstack.features.definitions import ENTITY, EVENT_TIMESTAMP, feature_names
from mlstack.serving import model as served

log = logging.getLogger(__name__)

SCORE_COLUMNS = ("customer_id", "probability", "model_version", "snapshot_date")
CHUNK_ROWS = 50_000


@dataclass(frozen=True)
class ScoreResult:
    parquet: Path
    csv: Path
    rows: int
    model_version: str
    snapshot_date: pd.Timestamp

    @property
    def message(self) -> str:
        return (
            f"scored {self.rows} customers at {self.snapshot_date.date()} with model version "
            f"{self.model_version}: {self.parquet} and {self.csv}"
        )


def active_customers(
    settings: Settings, at: str | pd.Timestamp | None
) -> tuple[list[str], pd.Timestamp]:
    """The customers with a feature row within one snapshot interval up to `at`, and `at`
    (default: the latest snapshot in the feature table)."""
    try:  # on a cluster: the state store's feature table, copied where the registry says
        path = feature_store.sync_offline_source(settings, feature_store.open_store(settings))
    except feature_store.FeatureStoreUnavailable as err:
        raise ValueError(str(err)) from None
    if not path.exists():
        raise ValueError(f"no feature table at {path}: run the pipeline (`make run`) first")
    table = pd.read_parquet(path, columns=[ENTITY, EVENT_TIMESTAMP])
    snapshots = table[EVENT_TIMESTAMP]
    if at is None:
        when = snapshots.max()
    else:
        try:
            when = pd.Timestamp(at)
        except ValueError as err:
            raise ValueError(f"--at {at!r} is not a date (YYYY-MM-DD)") from err
        when = when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")
    window = timedelta(days=settings.features.snapshot_frequency_days)
    rows = table[(snapshots <= when) & (snapshots > when - window)]
    if rows.empty:
        raise ValueError(
            f"no customer has features within {window.days} days up to {when.date()}; the "
            f"feature table covers {snapshots.min().date()} to {snapshots.max().date()}"
        )
    return sorted(rows[ENTITY].unique().tolist()), when


def customer_features(settings: Settings, customers: list[str], at: pd.Timestamp) -> np.ndarray:
    """Their features as of `at` through the feature service, float64 in feature order."""
    keys = pd.DataFrame({ENTITY: customers, EVENT_TIMESTAMP: at})
    store = feature_store.open_store(settings, offline=True)
    frame = feature_store.historical_features(store, keys, settings)
    return frame.to_numpy(dtype=np.float64)


def score_customers(
    settings: Settings, at: str | pd.Timestamp | None = None, out_dir: Path | None = None
) -> ScoreResult:
    """Score every active customer at `at` with the served model; write Parquet and CSV."""
    model = served.load(served.resolve(settings), settings.mlflow.tracking_uri)
    customers, when = active_customers(settings, at)

    if tuple(feature_names(settings)) != model.features:
        raise ValueError(
            f"model version {model.version} takes {list(model.features)}, the feature service "
            f"gives {feature_names(settings)}"
        )
    matrix = customer_features(settings, customers, when)
    probability = np.concatenate(
        [model.predict(matrix[i : i + CHUNK_ROWS]) for i in range(0, len(matrix), CHUNK_ROWS)]
    )
    scores = pd.DataFrame(
        {
            "customer_id": customers,
            "probability": probability,
            "model_version": model.version,
            "snapshot_date": pd.Timestamp(when.date()),
        }
    )
    folder = (out_dir or settings.serving.scores_folder(settings.artifacts_dir)) / (
        f"snapshot_date={when.date().isoformat()}"
    )
    folder.mkdir(parents=True, exist_ok=True)
    parquet, csv = folder / "scores.parquet", folder / "scores.csv"
    scores.to_parquet(parquet, index=False)
    scores.to_csv(csv, index=False, date_format="%Y-%m-%d")
    log.info("scored %d customers at %s", len(scores), when.date())
    return ScoreResult(parquet, csv, len(scores), model.version, when)
