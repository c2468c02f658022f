"""A training set described without holding it, in one pass a batch at a time: its figures
(rows, label rate, labelled snapshots) exact, and a bounded sample of its rows for the
feature report.

The training set is a Parquet file (one shard) or a dataset partitioned by shard (its parts
as the shards wrote them). The sample is the rows of smallest `row_hash` (keyed by
`REPORT_SEED`; ties by customer id, then snapshot), at most `REPORT_ROWS` of them, put in
`ORDER`: it depends on the rows only, so a file and its partitions give the same report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mlstack.features.definitions import ENTITY, EVENT_TIMESTAMP
from mlstack.features.shards import batches, in_order, require_columns, row_hash, table_files

REPORT_ROWS = 500_000  # the feature report's rows, at most: ~150 MB of CDNOW's columns
REPORT_SEED = 0
BATCH_ROWS = 1 << 16
RANK = "__rank"


@dataclass
class Description:
    """What `describe` found: the figures (when a label was named) and the sample."""

    figures: dict[str, float | int]
    sample: pd.DataFrame


def describe(
    path: Path, label: str | None, rows: int | None = None, seed: int = REPORT_SEED
) -> Description:
    """The training set at `path` read once: its figures of `label` (none if None) and at
    most `rows` (default `REPORT_ROWS`) rows of smallest `row_hash`, in ORDER, holding at
    most about twice `rows` rows at a time."""
    files = [pq.ParquetFile(f) for f in table_files(path)]
    keys = [ENTITY, EVENT_TIMESTAMP] + ([label] if label else [])
    figures = _Figures()
    sample = _Sample(REPORT_ROWS if rows is None else rows, seed)
    require_columns(files, keys)
    for batch in batches(files, BATCH_ROWS):
        if label:
            figures.add(batch.column(EVENT_TIMESTAMP), batch.column(label))
        sample.add(batch)
    return Description(
        figures=figures.result() if label else {},
        sample=sample.result(files[0].schema_arrow),
    )


def report_sample(path: Path, rows: int | None = None, seed: int = REPORT_SEED) -> pd.DataFrame:
    """The feature report's rows of the table at `path` (see `describe`)."""
    return describe(path, None, rows, seed).sample


@dataclass
class _Figures:
    rows: int = 0
    positives: int = 0
    snapshots: set[int] = field(default_factory=set)

    def add(self, when: pa.Array, labelled: pa.Array) -> None:
        self.rows += len(when)
        self.positives += pc.sum(labelled).as_py() or 0
        self.snapshots.update(pc.unique(when.cast("int64", safe=False)).drop_null().to_pylist())

    def result(self) -> dict[str, float | int]:
        return {
            "training_rows": self.rows,
            "label_rate": float(self.positives / self.rows) if self.rows else 0.0,
            "labelled_snapshots": len(self.snapshots),
        }


@dataclass
class _Sample:
    """The rows of smallest rank seen so far: every row until twice `rows` are held, then
    cut to `rows`, and from then on only rows ranked at most the cut's largest rank."""

    rows: int
    seed: int
    pieces: list[pd.DataFrame] = field(default_factory=list)
    held: int = 0
    threshold: int | None = None

    def add(self, batch: pa.RecordBatch) -> None:
        keys = batch.select([ENTITY, EVENT_TIMESTAMP]).to_pandas()
        ranks = row_hash(keys[ENTITY], keys[EVENT_TIMESTAMP], self.seed)
        keep = (
            np.ones(len(ranks), dtype=bool) if self.threshold is None else ranks <= self.threshold
        )
        if not keep.any():
            return
        frame = batch.to_pandas() if keep.all() else batch.filter(keep).to_pandas()
        self.pieces.append(frame.assign(**{RANK: ranks[keep]}))
        self.held += len(frame)
        if self.held > 2 * self.rows:
            self.pieces = [_smallest(pd.concat(self.pieces, ignore_index=True), self.rows)]
            self.held, self.threshold = self.rows, self.pieces[0][RANK].max()

    def result(self, schema: pa.Schema) -> pd.DataFrame:
        if not self.pieces:
            return schema.empty_table().to_pandas()
        whole = pd.concat(self.pieces, ignore_index=True)
        return in_order(_smallest(whole, self.rows).drop(columns=RANK))


def _smallest(frame: pd.DataFrame, rows: int) -> pd.DataFrame:
    """The `rows` rows of smallest rank (ties: customer id, then snapshot)."""
    ordered = frame.sort_values([RANK, ENTITY, EVENT_TIMESTAMP], kind="stable")
    return ordered.head(rows).reset_index(drop=True)
