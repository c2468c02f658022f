"""A drift check's window, read and summarised shard by shard (`features.shards`).

The check decides once what the window is (`WindowPlan`: its bounds, the snapshot it
reads, the champion to score with, where each shard's log lines are), then every shard
reads only its own rows of it and reduces them to statistics (`shard_window`,
`mlstack.monitoring.statistics`), which are merged exactly (`window_statistics`). With one
shard this runs in the check's own process and reads what the check always read; with more,
each shard is a process (`in_processes`, ``min(shards, cores)`` at a time), so the window
is never held whole.

Which rows are a shard's:

- `source: snapshots`: the shard's partition of the feature table (the one file with one
  shard), at the newest snapshot date in the window (found once, from the timestamp column
  alone);
- `source: payloads`: the payload log is partitioned by day, not by shard, so every shard
  lists the window's parts and keeps, file by file, the rows of its customers
  (`shard_of(customer_id)`; a full feature row, sent without a customer id, goes by its
  request id);
- the matured rows' labels come from the shard's own lines of the log, split once by the
  check, with the whole log's last timestamp (which labels are known).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from mlstack import storage
from mlstack.config import Settings
from mlstack.features.build import build_labels
from mlstack.features.definitions import (
    ENTITY,
    EVENT_TIMESTAMP,
    attribute_names,
    feature_list,
    feature_names,
    label_name,
)
from mlstack.features.shards import PART_FILE, SHARD_COLUMN, partition, shard_of
from mlstack.monitoring import MonitoringError
from mlstack.monitoring.statistics import (
    Kind,
    WindowStats,
    canonical_pairs,
    merge_windows,
    window_stats,
)
from mlstack.registry.reference import PREDICTION
from mlstack.serving.payloads import read_payloads
from mlstack.steps import configure_logging
from mlstack.steps.sharded import in_processes

log = logging.getLogger(__name__)

READ_BATCH_ROWS = 65_536  # rows of the feature table decoded at a time


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


@dataclass(frozen=True)
class WindowPlan:
    """What every shard is told about the window (ISO times, UTC)."""

    source: str  # payloads | snapshots
    start: str
    end: str
    matured_start: str
    matured_end: str
    snapshot: str | None = None  # snapshots: the newest snapshot date in the window
    matured_snapshot: str | None = None  # ... and in the matured window
    table: str | None = None  # snapshots: the feature table (a file, or the shards' folder)
    model: str | None = None  # snapshots: the champion, a local MLflow model folder
    log_dir: str | None = None  # the log's lines split by shard, when rows have matured
    last_timestamp: str | None = None  # the whole log's last timestamp
    sample_rows: int = 0  # the report's sample, at most

    @property
    def name(self) -> str:
        """What the window's rows are, the same in every shard."""
        if self.source == "snapshots":
            return f"snapshot {self.snapshot}"
        return f"payloads {self.start} .. {self.end}"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> WindowPlan:
        return cls(**json.loads(text))


def newest_snapshot(table: Path, start: pd.Timestamp, end: pd.Timestamp) -> str | None:
    """The newest snapshot date in [start, end) of the feature table (a file or a folder
    partitioned by shard), read from the timestamp column alone; None when there is none."""
    dataset = ds.dataset(table, format="parquet", partitioning="hive")
    when = ds.field(EVENT_TIMESTAMP)
    inside = (when >= start.to_pydatetime()) & (when < end.to_pydatetime())
    stamps = dataset.to_table(columns=[EVENT_TIMESTAMP], filter=inside)[EVENT_TIMESTAMP]
    if len(stamps) == 0:
        return None
    return pd.Timestamp(pc.max(stamps).as_py()).tz_convert("UTC").isoformat()


def check_partitions(table: Path, shards: int) -> None:
    """A table of `shards` shards holds exactly partitions 0 .. shards - 1; else a
    `MonitoringError` naming the missing and unexpected ones."""
    if shards == 1:
        return
    found = {p.parent.name for p in Path(table).glob(f"{SHARD_COLUMN}=*/{PART_FILE}")}
    expected = {partition(table, k).parent.name for k in range(shards)}
    if found != expected:
        raise MonitoringError(
            f"the feature table {table} is not of features.shards={shards}: missing "
            f"{sorted(expected - found) or 'none'}, unexpected {sorted(found - expected) or 'none'}"
            "; rerun the features step with this shard count"
        )


def payload_shard(frame: pd.DataFrame, shards: int) -> np.ndarray:
    """Each payload row's shard: its customer's, or its request's for a full feature row."""
    ids = frame[ENTITY].astype("string").fillna(frame["request_id"].astype("string"))
    return shard_of(ids, shards)


def _payloads(settings: Settings, start: str, end: str, shard: int) -> pd.DataFrame:
    """The shard's served requests logged in [start, end]."""
    shards = settings.features.shards
    fs, folder = storage.filesystem(settings.payload_uri(), settings.object_store)

    def own(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[payload_shard(frame, shards) == shard]

    return read_payloads(
        folder,
        start=pd.Timestamp(start).to_pydatetime(),
        end=pd.Timestamp(end).to_pydatetime(),
        fs=fs,
        select=own if shards > 1 else None,
    )


def rows_at(path: Path, snapshot: str) -> pd.DataFrame:
    """The rows of the Parquet file at `path` whose snapshot date is `snapshot`, read batch
    by batch, so only one batch of the file's other snapshots is held at a time."""
    file = pq.ParquetFile(path)
    schema = file.schema_arrow
    when = pa.scalar(pd.Timestamp(snapshot), type=schema.field(EVENT_TIMESTAMP).type)
    batches = [
        batch.filter(pc.equal(batch.column(EVENT_TIMESTAMP), when))
        for batch in file.iter_batches(batch_size=READ_BATCH_ROWS)
    ]
    return pa.Table.from_batches(batches, schema=schema).to_pandas()


def _snapshot(
    settings: Settings, plan: WindowPlan, snapshot: str | None, shard: int, model: Any
) -> pd.DataFrame:
    """The shard's rows of the feature table at `snapshot`, scored by the champion."""
    if snapshot is None or plan.table is None:
        return pd.DataFrame()
    table = Path(plan.table)
    path = partition(table, shard) if settings.features.shards > 1 else table
    rows = rows_at(path, snapshot)
    rows[PREDICTION] = model.predict_proba(rows[feature_names(settings)])[:, 1] if len(rows) else []
    return rows


def _labelled(
    settings: Settings, rows: pd.DataFrame, plan: WindowPlan, shard: int, lines: pd.DataFrame
) -> pd.DataFrame:
    """Rows whose label horizon has passed by the window's end, labelled from the log."""
    end = pd.Timestamp(plan.end)
    horizon = pd.Timedelta(days=settings.features.horizon_days)
    if "logged_at" in rows.columns:
        stamp = pd.to_datetime(rows["logged_at"], utc=True).dt.floor("D")
    else:
        stamp = pd.to_datetime(rows[EVENT_TIMESTAMP], utc=True)
    rows = rows.assign(**{EVENT_TIMESTAMP: stamp})
    rows = rows[rows[ENTITY].notna() & (stamp + horizon <= end)]
    if rows.empty:
        return rows
    last = pd.Timestamp(plan.last_timestamp) if plan.last_timestamp else None
    return build_labels(lines, rows.reset_index(drop=True), settings, last)


def shard_window(
    settings: Settings, plan: WindowPlan, shard: int, lines: pd.DataFrame | None = None
) -> WindowStats:
    """The statistics of `shard`'s rows of the window, with its matured rows' scores and
    labels; `lines`: the shard's lines of the log (default: read from `plan.log_dir`)."""
    model = None
    if plan.source == "snapshots":
        import mlflow.sklearn  # lazy on purpose: MLflow is slow to import

        model = mlflow.sklearn.load_model(plan.model)
        window = _snapshot(settings, plan, plan.snapshot, shard, model)
        matured = _snapshot(settings, plan, plan.matured_snapshot, shard, model)
    else:
        window = _payloads(settings, plan.start, plan.end, shard)
        matured = _payloads(settings, plan.matured_start, plan.matured_end, shard)
    kinds = feature_kinds(settings, list(window.columns))
    if PREDICTION in window.columns:
        kinds[PREDICTION] = "numerical"
    shards = settings.features.shards
    stats = window_stats(window, kinds, plan.name, plan.sample_rows, shard, shards)
    if not matured.empty and ENTITY in matured.columns and plan.last_timestamp:
        if lines is None:
            lines = pd.read_parquet(partition(Path(plan.log_dir or ""), shard))
        labelled = _labelled(settings, matured, plan, shard, lines)
        if not labelled.empty:
            stats.scores = labelled[PREDICTION].to_numpy(dtype=float)
            stats.labels = labelled[label_name(settings.features)].to_numpy(dtype=np.int64)
    return stats


def window_worker(shard: int, settings_json: str, plan_json: str) -> WindowStats:
    configure_logging()
    return shard_window(Settings.from_json(settings_json), WindowPlan.from_json(plan_json), shard)


def window_statistics(
    settings: Settings, plan: WindowPlan, lines: pd.DataFrame | None = None
) -> WindowStats:
    """The whole window's statistics, its shards merged exactly; one shard runs here (with
    `lines`, the log), more as processes (each reading its lines from `plan.log_dir`)."""
    shards = settings.features.shards
    if shards == 1:
        parts = [shard_window(settings, plan, 0, lines)]
    else:
        parts = in_processes(window_worker, shards, settings.to_json(), plan.to_json())
    merged = merge_windows(parts, shards)
    merged.scores, merged.labels = canonical_pairs(merged.scores, merged.labels)
    log.info(
        "drift window %s: %d rows in %d shard(s), %d matured labelled rows",
        plan.name,
        merged.rows,
        shards,
        len(merged.labels),
    )
    return merged
