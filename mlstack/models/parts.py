"""Parts of the split too large to hold: validation and test are scored on every row, so
past `CHUNK_ROWS` rows their rows go to a file of their own while the split is read, and
are read back a chunk at a time each time a model scores them; only their labels are held.

A part of at most `CHUNK_ROWS` rows (CDNOW's are 188,560) is an ordinary DataFrame, and a
streamed part's chunks hold `CHUNK_ROWS` rows each, so a part that fits is scored in one
piece exactly as before. Scores are per row, so chunking does not change them.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mlstack.features.shards import table_files

log = logging.getLogger(__name__)

CHUNK_ROWS = 1 << 20  # ~200 MB of 22 float64 features: held while a chunk is scored
SPILL_BATCH_ROWS = 1 << 16  # read from a streamed part's own file at a time


def open_parquet(source: str | Path | bytes) -> pq.ParquetFile:
    """A Parquet file at a path, or in bytes (each call its own reader, so threads can read
    the same bytes side by side)."""
    return pq.ParquetFile(pa.BufferReader(source) if isinstance(source, bytes) else source)


Source = str | Path | bytes | list[bytes]  # a file, a partitioned folder, bytes of either


def open_parts(source: Source) -> list[pq.ParquetFile]:
    """The Parquet files of a training set: a file (path or bytes), or a dataset partitioned
    by shard (a folder, or its parts' bytes in shard order), its parts in shard order."""
    if isinstance(source, list):
        files = [open_parquet(part) for part in source]
    elif isinstance(source, bytes):
        files = [open_parquet(source)]
    else:
        files = [open_parquet(path) for path in table_files(Path(source))]
    if not files:
        raise ValueError(f"the training set at {source} has no parts")
    first = files[0].schema_arrow
    for file in files[1:]:
        if not file.schema_arrow.equals(first, check_metadata=False):
            raise ValueError("the training set's parts have different columns or types")
    return files


def projected(file: pq.ParquetFile, columns: list[str] | None) -> pa.Schema:
    """The file's schema, of `columns` only, with its pandas metadata (so frames get the
    dtypes `pd.read_parquet` gives)."""
    schema = file.schema_arrow
    if columns is None:
        return schema
    missing = [c for c in columns if c not in schema.names]
    if missing:
        raise ValueError(f"the training set lacks columns: {', '.join(missing)}")
    return pa.schema([schema.field(c) for c in columns], metadata=schema.metadata)


def flagged_batches(
    file: pq.ParquetFile,
    flags: np.ndarray,
    bits: dict[str, int],
    columns: list[str] | None,
    batch_rows: int,
) -> Iterator[tuple[str, pa.RecordBatch]]:
    """(name, rows) for each batch of the file and each name whose bit the batch's rows
    carry in `flags` (one entry a row of the file), in file order."""
    offset = 0
    for batch in file.iter_batches(batch_size=batch_rows, columns=columns):
        here = flags[offset : offset + batch.num_rows]
        offset += batch.num_rows
        if not here.any():
            continue
        for name, bit in bits.items():
            mask = (here & bit) != 0
            if mask.all():
                yield name, batch
            elif mask.any():
                yield name, batch.filter(pa.array(mask))


@dataclass
class StreamedPart:
    """A validation or test part too large to hold: its labels, and its rows in a file of
    their own (`path`, written once while the split is read, so each scoring reads only
    this part's rows), read in chunks of `chunk_rows` by `chunks()`. The file is removed
    with the object."""

    path: Path
    columns: list[str]
    labels: np.ndarray
    chunk_rows: int = CHUNK_ROWS

    def __post_init__(self) -> None:
        weakref.finalize(self, shutil.rmtree, self.path.parent, ignore_errors=True)

    def __len__(self) -> int:
        return len(self.labels)

    def chunks(self) -> Iterator[pd.DataFrame]:
        """The part's rows in file order, `chunk_rows` at a time (the last one fewer)."""
        file = pq.ParquetFile(self.path)
        schema = file.schema_arrow
        pending: list[pa.RecordBatch] = []
        held = 0
        for rows in file.iter_batches(batch_size=min(self.chunk_rows, SPILL_BATCH_ROWS)):
            pending.append(rows)
            held += rows.num_rows
            while held >= self.chunk_rows:
                whole = pa.Table.from_batches(pending, schema=schema)
                yield whole.slice(0, self.chunk_rows).to_pandas()
                rest = whole.slice(self.chunk_rows)
                pending, held = rest.to_batches(), rest.num_rows
        if held:
            yield pa.Table.from_batches(pending, schema=schema).to_pandas()


def release_read_buffers() -> None:
    """Give Arrow's freed buffers back to the system. Its allocator keeps the memory of
    batches already read and dropped: after the split of a 100x training set is read, 1.4 GB
    of a 2.4 GB process."""
    pa.default_memory_pool().release_unused()


def spill_file(name: str) -> Path:
    """A new file for a streamed part's rows, in a folder of its own under the temp dir."""
    return Path(tempfile.mkdtemp(prefix=f"mlstack-{name}-")) / f"{name}.parquet"


Part = pd.DataFrame | StreamedPart


def labels_of(part: Part, label: str) -> np.ndarray:
    """A part's labels."""
    return part.labels if isinstance(part, StreamedPart) else part[label].to_numpy()


def scores_of(model: Any, part: Part) -> np.ndarray:
    """Positive-class probabilities of a fitted classifier on a part's rows."""
    return scores_of_each({"": model}, part)[""]


def scores_of_each(models: Mapping[str, Any], part: Part) -> dict[str, np.ndarray]:
    """Positive-class probabilities of each fitted classifier on a part's rows (a streamed
    part's rows are read once, each chunk scored by every model)."""
    if not isinstance(part, StreamedPart):
        return {name: np.asarray(m.predict_proba(part))[:, 1] for name, m in models.items()}
    started = time.perf_counter()
    scores, done = {name: np.empty(len(part)) for name in models}, 0
    for chunk in part.chunks():
        for name, model in models.items():
            scores[name][done : done + len(chunk)] = np.asarray(model.predict_proba(chunk))[:, 1]
        done += len(chunk)
    release_read_buffers()
    log.info(
        "scored %s streamed %s rows with %s in %.0f s",
        f"{done:,}",
        part.path.stem,
        ", ".join(models) if len(models) > 1 else "a model",
        time.perf_counter() - started,
    )
    return scores


def columns_of(part: Part, columns: list[str]) -> pd.DataFrame:
    """`columns` of every row of a part (of a streamed part, only they are read)."""
    if isinstance(part, StreamedPart):
        return pq.ParquetFile(part.path).read(columns=columns).to_pandas().reset_index(drop=True)
    return part[columns].reset_index(drop=True)


def codes_of(part: Part, column: str) -> np.ndarray:
    """A code a row for the values of `column`, numbered in the values' sorted order (as
    `np.unique` numbers them), without a Python object a row: a streamed part's strings are
    dictionary-encoded as they are read (18.9M customer ids as objects took 1.1 GB)."""
    if not isinstance(part, StreamedPart):
        return pd.factorize(part[column], sort=True)[0]
    values = pq.ParquetFile(part.path).read(columns=[column]).column(column)
    encoded = values.combine_chunks().dictionary_encode()
    rank = np.empty(len(encoded.dictionary), dtype=np.int64)
    rank[pc.sort_indices(encoded.dictionary).to_numpy()] = np.arange(len(rank))
    return rank[encoded.indices.to_numpy()]


def rows_at(part: Part, positions: np.ndarray, columns: list[str]) -> pd.DataFrame:
    """`columns` of the rows at `positions` (ascending, no repeats) of a part, indexed by
    their positions (a streamed part is read a batch at a time, keeping only those rows)."""
    positions = np.asarray(positions, dtype=np.int64)
    if np.any(np.diff(positions) <= 0):
        raise ValueError("row positions must be ascending, without repeats")
    if not isinstance(part, StreamedPart):
        return part[columns].iloc[positions].set_axis(positions)
    file = pq.ParquetFile(part.path)
    kept, offset = [], 0
    for batch in file.iter_batches(batch_size=SPILL_BATCH_ROWS, columns=columns):
        low, high = np.searchsorted(positions, [offset, offset + batch.num_rows])
        if high > low:
            kept.append(batch.take(pa.array(positions[low:high] - offset)))
        offset += batch.num_rows
    rows = pa.Table.from_batches(kept, schema=projected(file, columns)).to_pandas()
    release_read_buffers()
    return rows.set_axis(positions)


def as_frame(part: Part) -> pd.DataFrame:
    """A part whole, in memory (what needs every column of every row at once)."""
    if isinstance(part, StreamedPart):
        return pd.concat(list(part.chunks()), ignore_index=True)
    return part
