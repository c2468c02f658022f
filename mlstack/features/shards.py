"""Customer shards: which shard a customer's rows belong to, and the partitioned layout.

A customer's shard is ``blake2b(id) mod shards``: the BLAKE2b digest (8 bytes, no key, no
salt) of the customer id's UTF-8 text, read as a little-endian unsigned integer. It
depends on nothing but the id's text and the shard count, so it is the same in every
process, on every machine and in every Python or pandas version (unlike Python's `hash`,
salted per process by PYTHONHASHSEED). Every row of a customer, in the log, the feature
table and the training set, is in the customer's shard, so per-customer work runs shard by
shard with no shard reading another's rows.

What is computed over the whole population is computed once, from the whole log, and
handed to every shard (`LogFacts`): the snapshot grid (`snapshot_dates`) and the log's last
timestamp, which decides which labels are known. Everything else in the features and the
labels is a function of one customer's own rows.

A sharded table is a Parquet dataset partitioned by shard, ``<root>/shard=K/part-0.parquet``
(hive layout: DuckDB, pyarrow and Feast read the folder as one table, with a `shard`
column). Each partition, and the whole table, is ordered by `ORDER` (customer id, then
snapshot date) — the order of the one-shard table — so the one-shard table is the
partitions concatenated and sorted by `ORDER`.

Where rows are drawn from a table (the row budget's sample, the feature report's rows), they
are drawn by `row_hash`, a keyed hash of (customer id, snapshot date), so the rows drawn do
not depend on the order the table's rows are read in: one file or its shards' partitions
give the same rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlstack.config import FeatureSettings
from mlstack.features.build import snapshot_dates
from mlstack.features.definitions import ENTITY, EVENT_TIMESTAMP
from mlstack.features.history import naive_utc

SHARD_COLUMN = "shard"
PART_FILE = "part-0.parquet"
ORDER = [ENTITY, EVENT_TIMESTAMP]  # the documented row order of every feature table


def shard_of(customer_ids: Iterable[object] | pd.Series, shards: int) -> np.ndarray:
    """The shard (0 .. shards - 1) of each customer id, as int64; ids are taken as text."""
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    ids = pd.Series(customer_ids, copy=False).astype("string")
    if ids.isna().any():
        raise ValueError(f"{ENTITY} has missing values: no shard for them")
    codes, uniques = pd.factorize(ids)
    if shards == 1:
        return np.zeros(len(codes), dtype=np.int64)
    digests = np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(str(u).encode(), digest_size=8).digest(), "little")
            % shards
            for u in uniques
        ),
        dtype=np.int64,
        count=len(uniques),
    )
    return digests[codes]


def split_by_shard(transactions: pd.DataFrame, shards: int) -> list[pd.DataFrame]:
    """The log's lines of each shard (index `shard`), each in the log's order, fresh index."""
    shard = shard_of(transactions[ENTITY], shards)
    return [transactions.loc[shard == k].reset_index(drop=True) for k in range(shards)]


def part_name(shard: int) -> str:
    """The file of `shard` relative to a partitioned dataset's root."""
    return f"{SHARD_COLUMN}={shard}/{PART_FILE}"


def partition(root: Path, shard: int) -> Path:
    """The file of `shard` in the partitioned dataset at `root`."""
    return Path(root) / part_name(shard)


def row_hash(customer_ids: object, snapshots: object, seed: int) -> np.ndarray:
    """A uint64 per row, a function of its (customer id as text, snapshot instant) and
    `seed` only: the same row hashes the same in any table, process or row order."""
    key = hashlib.blake2b(str(seed).encode(), digest_size=8).hexdigest()  # 16 characters
    stamps = pd.DatetimeIndex(snapshots)
    if stamps.tz is not None:
        stamps = stamps.tz_convert("UTC").tz_localize(None)
    keys = pd.DataFrame(
        {
            ENTITY: pd.Series(customer_ids, copy=False).astype(str).to_numpy(dtype=object),
            EVENT_TIMESTAMP: stamps.as_unit("ns").asi8,
        }
    )
    return pd.util.hash_pandas_object(keys, index=False, hash_key=key).to_numpy()


def part_files(root: Path) -> list[Path]:
    """The part files of the dataset partitioned by shard at `root`, in shard order."""
    prefix = f"{SHARD_COLUMN}="
    shards = sorted(int(p.name[len(prefix) :]) for p in root.glob(f"{prefix}*") if p.is_dir())
    return [partition(root, shard) for shard in shards]


def table_files(path: Path) -> list[Path]:
    """The Parquet files of a table: the file itself, or a partitioned folder's parts in
    shard order (a folder with none is an error that names it)."""
    if not path.is_dir():
        return [path]
    files = part_files(path)
    if not files:
        raise FileNotFoundError(f"no {SHARD_COLUMN}=K partitions in the table folder {path}")
    return files


def batches(
    files: list[pq.ParquetFile], rows: int, columns: list[str] | None = None
) -> Iterator[pa.RecordBatch]:
    """The batches of at most `rows` rows of `columns` (default: all) of the files, one
    after the other, as of one table. A column the first file lacks is an error that names
    it, raised here, before anything is read."""
    require_columns(files, columns or [])
    return (b for f in files for b in f.iter_batches(batch_size=rows, columns=columns))


def require_columns(files: list[pq.ParquetFile], columns: list[str]) -> None:
    """An error naming the `columns` the training set's first file lacks, if any."""
    missing = [c for c in columns if files and c not in files[0].schema_arrow.names]
    if missing:
        raise ValueError(f"the training set has no {', '.join(map(repr, missing))} column")


def in_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by `ORDER` (stable), with a fresh index: the one-shard table's order."""
    return frame.sort_values(ORDER, kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class LogFacts:
    """What every shard takes from the whole log: the snapshot grid and the last timestamp
    (which labels are known)."""

    snapshots: pd.DatetimeIndex
    last_timestamp: pd.Timestamp

    @classmethod
    def of(cls, transactions: pd.DataFrame, features: FeatureSettings) -> LogFacts:
        stamps = naive_utc(transactions["timestamp"])
        return cls(snapshot_dates(transactions, features), stamps.max())

    def to_json(self) -> dict[str, object]:
        return {
            "snapshots": [t.isoformat() for t in self.snapshots],
            "last_timestamp": self.last_timestamp.isoformat(),
        }

    @classmethod
    def from_json(cls, data: dict) -> LogFacts:
        index = pd.DatetimeIndex(pd.to_datetime(data["snapshots"]), name=EVENT_TIMESTAMP)
        return cls(index, pd.Timestamp(data["last_timestamp"]))
