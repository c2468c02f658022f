"""A training set described without holding it: its figures streamed from its key columns,
and a bounded sample of its rows for the feature report.

The training set is a Parquet file (one shard) or a dataset partitioned by shard (its parts
as the shards wrote them). Both are read a batch at a time. The sample is the rows of
smallest `row_hash` (keyed by `REPORT_SEED`; ties by customer id, then snapshot), at most
`REPORT_ROWS` of them, put in `ORDER`: it depends on the rows only, so a file and its
partitions give the same report.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mlstack.features.definitions import ENTITY, EVENT_TIMESTAMP
from mlstack.features.shards import in_order, part_files, row_hash

REPORT_ROWS = 500_000  # the feature report's rows, at most: ~150 MB of CDNOW's columns
REPORT_SEED = 0
BATCH_ROWS = 1 << 16
RANK = "__rank"


def table_files(path: Path) -> list[Path]:
    """The Parquet files of a table: the file itself, or a partitioned folder's parts."""
    return part_files(path) if path.is_dir() else [path]


def training_figures(path: Path, label: str) -> dict[str, float | int]:
    """The training set's rows, label rate and labelled snapshots, from its key columns."""
    rows = positives = 0
    snapshots: set[int] = set()
    for file in table_files(path):
        for batch in pq.ParquetFile(file).iter_batches(
            batch_size=1 << 20, columns=[EVENT_TIMESTAMP, label]
        ):
            rows += batch.num_rows
            positives += pc.sum(batch.column(1)).as_py() or 0
            when = pc.unique(batch.column(0).cast("int64", safe=False))
            snapshots.update(when.drop_null().to_pylist())
    return {
        "training_rows": rows,
        "label_rate": float(positives / rows) if rows else 0.0,
        "labelled_snapshots": len(snapshots),
    }


def report_sample(path: Path, rows: int | None = None, seed: int = REPORT_SEED) -> pd.DataFrame:
    """At most `rows` (default `REPORT_ROWS`) rows of the table at `path`: those of smallest
    `row_hash`, in ORDER, holding at most about twice `rows` rows at a time."""
    rows = REPORT_ROWS if rows is None else rows
    pieces: list[pd.DataFrame] = []
    held, threshold = 0, None
    for file in table_files(path):
        for batch in pq.ParquetFile(file).iter_batches(batch_size=BATCH_ROWS):
            keys = batch.select([ENTITY, EVENT_TIMESTAMP]).to_pandas()
            ranks = row_hash(keys[ENTITY], keys[EVENT_TIMESTAMP], seed)
            keep = np.ones(len(ranks), dtype=bool) if threshold is None else ranks <= threshold
            if not keep.any():
                continue
            frame = batch.filter(keep).to_pandas() if not keep.all() else batch.to_pandas()
            pieces.append(frame.assign(**{RANK: ranks[keep]}))
            held += len(frame)
            if held > 2 * rows:
                pieces = [_smallest(pd.concat(pieces, ignore_index=True), rows)]
                held, threshold = rows, pieces[0][RANK].max()
    if not pieces:
        schema = pq.ParquetFile(table_files(path)[0]).schema_arrow
        return schema.empty_table().to_pandas()
    return in_order(_smallest(pd.concat(pieces, ignore_index=True), rows).drop(columns=RANK))


def _smallest(frame: pd.DataFrame, rows: int) -> pd.DataFrame:
    """The `rows` rows of smallest rank (ties: customer id, then snapshot)."""
    ordered = frame.sort_values([RANK, ENTITY, EVENT_TIMESTAMP], kind="stable")
    return ordered.head(rows).reset_index(drop=True)
