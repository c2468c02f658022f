"""Payload logging: every scored instance, with its inputs and output, for the drift checks.

The contract (the drift checks read it; change it only together with them):

- Folder: `<state store>/payloads/` by default (`serving.payload_dir` to change it): a local
  folder, or an object store prefix (`s3://...`) on a cluster, where the predictor and the
  drift CronJob run in different pods.
- Files: `date=YYYY-MM-DD/part-<uuid>.parquet`, the date of `logged_at` (UTC). Rows are
  buffered and written in batches (when `serving.payload_flush_rows` rows wait, at least every
  `serving.payload_flush_seconds`, and on shutdown), never one file per request. A local file
  is written under a temporary name and renamed, an object in one PUT, so readers never see
  half a file.
- A failed write (the sink down, full or slow) keeps its rows for the next flush; the buffer
  holds at most `serving.payload_buffer_rows` rows, and rows that find it full are dropped
  and counted (`mlstack_payload_rows_dropped_total`). Requests never wait for the sink.
- One row per scored instance, columns in this order:
  `request_id` (string), `logged_at` (timestamp, microseconds, UTC), `model_name` (string),
  `model_version` (string), `customer_id` (string, null for a full feature row),
  `features_found` (bool, null for a full feature row), every feature column in the order of
  `feature_names(settings)` (float64, NaN where missing), `probability` (float64).
- An instance that got an error instead of a probability (an unknown customer under
  `unknown_customer: error`) is not logged.

`read_payloads(folder, start=None, end=None, fs=None)` reads them back as one DataFrame.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

from mlstack.serving import metrics

log = logging.getLogger(__name__)

FIXED_HEAD = ("request_id", "logged_at", "model_name", "model_version", "customer_id")
FOUND = "features_found"
PROBABILITY = "probability"
PARTITION_PREFIX = "date="


@dataclass
class _Chunk:
    request_id: str
    logged_at: datetime
    model_name: str
    model_version: str
    customer_ids: Sequence[str | None]
    found: Sequence[bool | None]
    matrix: np.ndarray
    probability: np.ndarray


def payload_schema(features: Sequence[str]) -> pa.Schema:
    """The Arrow schema of a payload file for these feature columns."""
    return pa.schema(
        [
            pa.field("request_id", pa.string()),
            pa.field("logged_at", pa.timestamp("us", tz="UTC")),
            pa.field("model_name", pa.string()),
            pa.field("model_version", pa.string()),
            pa.field("customer_id", pa.string()),
            pa.field(FOUND, pa.bool_()),
            *(pa.field(name, pa.float64()) for name in features),
            pa.field(PROBABILITY, pa.float64()),
        ]
    )


class PayloadLogger:
    """Buffers scored instances and writes them as Parquet parts from a background thread."""

    def __init__(
        self,
        folder: Path | str,
        features: Sequence[str],
        flush_rows: int = 5000,
        flush_seconds: float = 10.0,
        fs: AbstractFileSystem | None = None,
        max_buffer_rows: int = 100_000,
    ) -> None:
        """`folder` is a path in `fs` (default: the local filesystem)."""
        self.fs = fs or LocalFileSystem()
        self.folder = str(folder).rstrip("/")
        self.features = tuple(features)
        self.schema = payload_schema(self.features)
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.max_buffer_rows = max_buffer_rows
        self._chunks: list[_Chunk] = []
        self._rows = 0
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.files_written = 0
        self.rows_written = 0
        self.rows_dropped = 0

    def log(
        self,
        request_id: str,
        model_name: str,
        model_version: str,
        customer_ids: Sequence[str | None],
        found: Sequence[bool | None],
        matrix: np.ndarray,
        probability: np.ndarray,
    ) -> None:
        """Queue the scored rows of one request (cheap: no I/O on the caller's thread)."""
        chunk = _Chunk(
            request_id,
            datetime.now(UTC),
            model_name,
            model_version,
            customer_ids,
            found,
            matrix,
            probability,
        )
        rows = len(probability)
        with self._lock:
            if self._rows + rows > self.max_buffer_rows:
                self.rows_dropped += rows
                metrics.PAYLOAD_ROWS_DROPPED.inc(rows)
                return
            self._chunks.append(chunk)
            self._rows += rows
            full = self._rows >= self.flush_rows
        if full:
            self._wake.set()

    def start(self) -> PayloadLogger:
        """Flush in a daemon thread until `close`; `mlstack_payload_buffered_rows` reads this
        logger's buffer when scraped (no cost per request)."""
        metrics.PAYLOAD_BUFFERED_ROWS.set_function(lambda: self._rows)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="payload-logger", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop the thread and write what is still buffered."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        try:
            self.flush()
        except Exception as err:  # the last chance: count and report what is lost
            with self._lock:
                lost, self._chunks, self._rows = self._rows, [], 0
            self.rows_dropped += lost
            metrics.PAYLOAD_ROWS_DROPPED.inc(lost)
            log.error("payload log: %d rows could not be written at shutdown: %s", lost, err)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            try:
                self.flush()
            except Exception as err:  # the rows wait in the buffer for the next flush
                log.warning("could not write payloads to %s (retried): %s", self.folder, err)

    def flush(self) -> list[str]:
        """Write the buffered rows, one part file per UTC date; returns the files written.

        A day that fails to write goes back to the buffer (within its bound) and the error is
        raised after the other days are written."""
        with self._lock:
            chunks, self._chunks, self._rows = self._chunks, [], 0
        if not chunks:
            return []
        by_day: dict[date, list[_Chunk]] = {}
        for chunk in chunks:
            by_day.setdefault(chunk.logged_at.date(), []).append(chunk)
        written, failed, error = [], [], None
        with self._write_lock:
            for day, part in sorted(by_day.items()):
                try:
                    written.append(self._write(day, part))
                except Exception as err:
                    metrics.PAYLOAD_WRITE_ERRORS.inc()
                    failed.extend(part)
                    error = err
        if failed:
            self._requeue(failed)
        if error is not None:
            raise error
        return written

    def _requeue(self, chunks: list[_Chunk]) -> None:
        """Put unwritten rows back ahead of newer ones; what does not fit is dropped."""
        with self._lock:
            kept, rows = [], self._rows
            for chunk in chunks:
                size = len(chunk.probability)
                if rows + size > self.max_buffer_rows:
                    self.rows_dropped += size
                    metrics.PAYLOAD_ROWS_DROPPED.inc(size)
                    continue
                kept.append(chunk)
                rows += size
            self._chunks[:0] = kept
            self._rows = rows

    def _table(self, chunks: list[_Chunk]) -> pa.Table:
        sizes = [len(c.probability) for c in chunks]
        repeat = np.repeat
        columns: dict[str, pa.Array] = {
            "request_id": pa.array(repeat([c.request_id for c in chunks], sizes), pa.string()),
            "logged_at": pa.array(
                repeat(
                    np.array([c.logged_at.replace(tzinfo=None) for c in chunks], "M8[us]"), sizes
                ),
                pa.timestamp("us"),
            ).cast(pa.timestamp("us", tz="UTC")),
            "model_name": pa.array(repeat([c.model_name for c in chunks], sizes), pa.string()),
            "model_version": pa.array(
                repeat([c.model_version for c in chunks], sizes), pa.string()
            ),
            "customer_id": pa.array([cid for c in chunks for cid in c.customer_ids], pa.string()),
            FOUND: pa.array([f for c in chunks for f in c.found], pa.bool_()),
        }
        matrix = np.vstack([c.matrix for c in chunks])
        for j, name in enumerate(self.features):
            columns[name] = pa.array(matrix[:, j], pa.float64())
        columns[PROBABILITY] = pa.array(np.concatenate([c.probability for c in chunks]))
        return pa.Table.from_pydict(columns, schema=self.schema)

    def _write(self, day: date, chunks: list[_Chunk]) -> str:
        folder = f"{self.folder}/{PARTITION_PREFIX}{day.isoformat()}"
        name = f"part-{uuid.uuid4().hex}.parquet"
        target = f"{folder}/{name}"
        table = self._table(chunks)
        if isinstance(self.fs, LocalFileSystem):
            Path(folder).mkdir(parents=True, exist_ok=True)
            tmp = f"{folder}/.{name}.tmp"
            pq.write_table(table, tmp)
            os.replace(tmp, target)
        else:  # an object appears whole when its one PUT completes
            buffer = io.BytesIO()
            pq.write_table(table, buffer)
            self.fs.pipe_file(target, buffer.getvalue())
        self.files_written += 1
        self.rows_written += table.num_rows
        log.debug("wrote %d payload rows to %s", table.num_rows, target)
        return target


def _as_date(value: date | datetime | str | None) -> date | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = pd.Timestamp(value).to_pydatetime()
    return value.date() if isinstance(value, datetime) else value


def _as_utc(value: date | datetime | str) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def payload_files(
    folder: Path | str,
    start: date | datetime | str | None = None,
    end: date | datetime | str | None = None,
    fs: AbstractFileSystem | None = None,
) -> list[str]:
    """The payload parts in `folder` of the days from `start` to `end` (both included),
    oldest day first."""
    fs = fs or LocalFileSystem()
    folder = str(folder).rstrip("/")
    first, last = _as_date(start), _as_date(end)
    files = []
    parts = fs.ls(folder, detail=False) if fs.isdir(folder) else []
    for part in sorted(p.rstrip("/") for p in parts):
        try:
            day = date.fromisoformat(part.rsplit("/", 1)[-1].removeprefix(PARTITION_PREFIX))
        except ValueError:
            continue
        if (first is None or day >= first) and (last is None or day <= last):
            names = fs.ls(part, detail=False)
            files.extend(sorted(n for n in names if n.rsplit("/", 1)[-1].startswith("part-")))
    return files


def read_payloads(
    folder: Path | str,
    start: date | datetime | str | None = None,
    end: date | datetime | str | None = None,
    fs: AbstractFileSystem | None = None,
    select: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """Every payload row in `folder` logged in [start, end], oldest first.

    A date bound covers the whole day (`end=date(2026, 1, 31)` includes all of that day); a
    datetime bound (naive = UTC) is exact. No files: an empty frame with the fixed columns.
    `select` keeps a part of each file's rows as it is read (one drift shard's), so only
    that part is ever held.
    """
    fs = fs or LocalFileSystem()
    files = payload_files(folder, start, end, fs)
    if not files:
        empty = {name: pd.Series(dtype=object) for name in FIXED_HEAD}
        empty["logged_at"] = pd.Series(dtype="datetime64[us, UTC]")
        empty[FOUND] = pd.Series(dtype="boolean")
        empty[PROBABILITY] = pd.Series(dtype="float64")
        return pd.DataFrame(empty)
    keep = select or (lambda frame: frame)
    # ParquetFile reads the file alone: no hive `date` column is inferred from the folder.
    frame = pd.concat(
        [keep(pq.ParquetFile(fs.open(path, "rb")).read().to_pandas()) for path in files],
        ignore_index=True,
    )
    if isinstance(start, datetime):
        frame = frame[frame["logged_at"] >= _as_utc(start)]
    if isinstance(end, datetime):
        frame = frame[frame["logged_at"] <= _as_utc(end)]
    return frame.sort_values("logged_at", kind="stable").reset_index(drop=True)
