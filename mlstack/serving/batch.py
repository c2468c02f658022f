"""Batch scoring for downstream systems: every active customer as of a snapshot date.

The features come through the same Feast feature service as the server's (a point-in-time
lookup as of the date), and the probabilities from the same `LoadedModel.predict`, so a
customer scored here and by the server on the same features gets the same number.
A customer is active at a date when the feature table has a row for them within one feature
TTL (one snapshot interval) before it, i.e. they had bought by then.

Output: `<serving.batch_output_dir>/snapshot_date=YYYY-MM-DD/scores.{parquet,csv}` with
`customer_id`, `probability`, `model_version`, `snapshot_date`, in customer id order.

With `features.shards` > 1 each shard scores its own customers (`batch_shards`) and the
parts are put together into these same files; this module holds what both ways share.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from feast import FeatureStore

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


def snapshot_at(at: str | pd.Timestamp | None) -> pd.Timestamp | None:
    """`at` as a UTC timestamp (a naive date is taken as UTC); None stays None (the latest)."""
    if at is None:
        return None
    try:
        when = pd.Timestamp(at)
    except ValueError as err:
        raise ValueError(f"--at {at!r} is not a date (YYYY-MM-DD)") from err
    return when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")


def snapshot_range(table: Path) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """The first and last snapshot in the feature table at `table` (a file, or a folder of
    Parquet files), read batch by batch from its timestamp column; None when it has no rows."""
    low = high = None
    for batch in ds.dataset(table, format="parquet").to_batches(columns=[EVENT_TIMESTAMP]):
        if batch.num_rows:
            span = pc.min_max(batch.column(0))
            first, last = span["min"].as_py(), span["max"].as_py()
            if first is not None:  # None: every timestamp in the batch is missing
                low = first if low is None else min(low, first)
                high = last if high is None else max(high, last)
    if low is None or high is None:
        return None
    return _utc(pd.Timestamp(low)), _utc(pd.Timestamp(high))


def active_in(table: Path, when: pd.Timestamp, window: timedelta) -> list[str]:
    """The customers of the feature table at `table` with a row in (when - window, when],
    sorted; only the id and timestamp columns are read, filtered as they are read."""
    dataset = ds.dataset(table, format="parquet")
    kind = dataset.schema.field(EVENT_TIMESTAMP).type

    def stamp(t: pd.Timestamp) -> pa.Scalar:
        value = t if getattr(kind, "tz", None) else t.tz_convert("UTC").tz_localize(None)
        return pa.scalar(value.to_pydatetime(), type=kind)

    column = ds.field(EVENT_TIMESTAMP)
    rows = (column <= stamp(when)) & (column > stamp(when - window))
    ids = dataset.to_table(columns=[ENTITY], filter=rows)[ENTITY]
    return sorted(pc.unique(ids).to_pylist())


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
    span = snapshot_range(path)
    if span is None:
        raise ValueError(f"the feature table at {path} has no rows: run the pipeline first")
    when = snapshot_at(at)
    when = span[1] if when is None else when
    window = timedelta(days=settings.features.snapshot_frequency_days)
    customers = active_in(path, when, window)
    if not customers:
        raise ValueError(nobody_active(window, when, span))
    return customers, when


def nobody_active(
    window: timedelta, when: pd.Timestamp, span: tuple[pd.Timestamp, pd.Timestamp]
) -> str:
    """The message for a date at which no customer has features."""
    return (
        f"no customer has features within {window.days} days up to {when.date()}; the "
        f"feature table covers {span[0].date()} to {span[1].date()}"
    )


def customer_features(
    settings: Settings, customers: list[str], at: pd.Timestamp, store: FeatureStore | None = None
) -> np.ndarray:
    """Their features as of `at` through the feature service, float64 in feature order;
    `store`: a Feast store (default: the project's, its offline source brought first)."""
    keys = pd.DataFrame({ENTITY: customers, EVENT_TIMESTAMP: at})
    store = store or feature_store.open_store(settings, offline=True)
    frame = feature_store.historical_features(store, keys, settings)
    return frame.to_numpy(dtype=np.float64)


def check_features(settings: Settings, model: served.LoadedModel) -> None:
    """The model takes the feature service's features, in its order."""
    if tuple(feature_names(settings)) != model.features:
        raise ValueError(
            f"model version {model.version} takes {list(model.features)}, the feature service "
            f"gives {feature_names(settings)}"
        )


def score_table(
    model: served.LoadedModel, customers: list[str], matrix: np.ndarray, when: pd.Timestamp
) -> pd.DataFrame:
    """The customers' scores (`SCORE_COLUMNS`), predicted `CHUNK_ROWS` rows at a time."""
    probability = np.concatenate(
        [model.predict(matrix[i : i + CHUNK_ROWS]) for i in range(0, len(matrix), CHUNK_ROWS)]
    )
    return pd.DataFrame(
        {
            "customer_id": customers,
            "probability": probability,
            "model_version": model.version,
            "snapshot_date": pd.Timestamp(when.date()),
        }
    )


def write_scores(scores: pd.DataFrame, root: Path, when: pd.Timestamp) -> tuple[Path, Path]:
    """Write `scores` as `<root>/snapshot_date=YYYY-MM-DD/scores.{parquet,csv}`."""
    folder = root / f"snapshot_date={when.date().isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    parquet, csv = folder / "scores.parquet", folder / "scores.csv"
    scores.to_parquet(parquet, index=False)
    scores.to_csv(csv, index=False, date_format="%Y-%m-%d")
    log.info("scored %d customers at %s", len(scores), when.date())
    return parquet, csv


def score_customers(
    settings: Settings, at: str | pd.Timestamp | None = None, out_dir: Path | None = None
) -> ScoreResult:
    """Score every active customer at `at` with the served model; write Parquet and CSV."""
    model = served.load(served.resolve(settings), settings.mlflow.tracking_uri)
    customers, when = active_customers(settings, at)
    check_features(settings, model)
    scores = score_table(model, customers, customer_features(settings, customers, when), when)
    root = out_dir or settings.serving.scores_folder(settings.artifacts_dir)
    parquet, csv = write_scores(scores, root, when)
    return ScoreResult(parquet, csv, len(scores), model.version, when)


def _utc(stamp: pd.Timestamp) -> pd.Timestamp:
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
