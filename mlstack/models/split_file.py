"""The time split read from a training set's Parquet file, under the row budget.

The file is read twice, in batches. First only the snapshot date and the label of every row:
enough to place each row in a part (`mlstack.models.split`) and to draw the budget's
stratified sample (`mlstack.models.sampling`). Then the rows of the parts a step asks for,
each batch filtered before it is kept. So the training period's rows beyond the budget,
the snapshots the stride skips, the gaps, and the parts a step does not use never become a
table: the memory of the train part is the budget's, however many customers there are.

With no budget, or one of at least the rows, every part is row for row and in the same
order what `time_split` gives on the whole file.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mlstack.config import SplitSettings
from mlstack.features.definitions import EVENT_TIMESTAMP
from mlstack.models.parts import (
    CHUNK_ROWS,
    StreamedPart,
    flagged_batches,
    open_parquet,
    projected,
    spill_file,
)
from mlstack.models.sampling import RowCounts, budget_line, choose
from mlstack.models.split import PARTS, Split, boundaries, check_dates, select_dates

log = logging.getLogger(__name__)

FINAL = "final"  # the final fit's rows: train + validation, sampled to the budget
KEY_BATCH_ROWS = 1 << 20  # keys are two narrow columns: large batches
ROW_BATCH_ROWS = 1 << 16  # whole rows: a batch is a few MB before it is filtered

# a row's membership, as bits: the sampled train rows, validation, test, and the final
# fit's sampled rows of the train and the validation period (kept apart to keep their order)
TRAIN, VALIDATION, TEST, FINAL_TRAIN, FINAL_VALIDATION = 1, 2, 4, 8, 16
PART_BITS = {"train": TRAIN, "validation": VALIDATION, "test": TEST}
# dates are coded in 16 bits, date x label too (two labels a date): 313 years of weekly
# snapshots, and the strata sort as 16-bit integers (a radix sort)
MAX_DATES = np.iinfo(np.int16).max // 2


def read_split(
    source: str | bytes,
    cfg: SplitSettings,
    horizon_days: int,
    label: str,
    parts: Iterable[str] = (*PARTS, FINAL),
    columns: Iterable[str] | None = None,
    batch_rows: int | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> Split:
    """The time split of the training set at `source` (a path, or the file's bytes), with
    the train part sampled to `cfg.train_rows` by snapshot date and label (seed `cfg.seed`)
    and, when `final` is asked for and train + validation exceed the budget, `Split.final`
    sampled the same way. Parts not in `parts` are empty frames; a validation or test part
    of more than `chunk_rows` rows is a `StreamedPart` (`mlstack.models.parts`). Only
    `columns` are read (default: all; the snapshot date and the label always).
    `batch_rows` sets the rows read at a time (default: by pass, see the constants)."""
    wanted = set(parts)
    unknown = wanted - {*PARTS, FINAL}
    if unknown:
        raise ValueError(f"no such split part: {', '.join(sorted(unknown))}")
    file = open_parquet(source)
    codes, labels, dates = _keys(file, label, batch_rows or KEY_BATCH_ROWS)
    train_dates, val_dates, test_dates = select_dates(dates, cfg, horizon_days)
    check_dates(
        [("train", train_dates), ("validation", val_dates), ("test", test_dates)], horizon_days
    )
    period = np.zeros(len(dates), dtype=np.uint8)
    position = {d: i for i, d in enumerate(dates)}
    for bit, chosen in ((TRAIN, train_dates), (VALIDATION, val_dates), (TEST, test_dates)):
        period[[position[d] for d in chosen]] = bit
    row_period = period[codes]

    flags = np.zeros(len(codes), dtype=np.uint8)
    in_train = np.flatnonzero(row_period == TRAIN)
    kept_train = _sample(in_train, codes, labels, cfg)
    if "train" in wanted:
        flags[kept_train] |= TRAIN
    scored: dict[str, np.ndarray] = {}  # validation / test: their labels
    for name in ("validation", "test"):
        if name in wanted:
            rows_of_part = row_period == PART_BITS[name]
            flags[rows_of_part] |= PART_BITS[name]
            scored[name] = labels[rows_of_part].astype(np.int64)
    in_final = np.flatnonzero((row_period == TRAIN) | (row_period == VALIDATION))
    final_after = len(in_final) if cfg.train_rows is None else min(cfg.train_rows, len(in_final))
    final_sampled = final_after < len(in_final)
    if FINAL in wanted and final_sampled:
        kept_final = _sample(in_final, codes, labels, cfg)
        from_train = row_period[kept_final] == TRAIN
        flags[kept_final] |= np.where(from_train, FINAL_TRAIN, FINAL_VALIDATION).astype(np.uint8)
    rows = RowCounts(
        budget=cfg.train_rows,
        train_before=len(in_train),
        train_after=len(kept_train),
        final_before=len(in_final),
        final_after=final_after,
    )
    val_rows = int(np.count_nonzero(row_period == VALIDATION))
    test_rows = int(np.count_nonzero(row_period == TEST))
    # one key per row of the whole file: gone before the rows are read
    del codes, labels, row_period, in_train, in_final, kept_train

    names = None if columns is None else list(dict.fromkeys([EVENT_TIMESTAMP, label, *columns]))
    streamed = {
        name: StreamedPart(
            path=spill_file(name),
            columns=names or file.schema_arrow.names,
            labels=found,
            chunk_rows=chunk_rows,
        )
        for name, found in scored.items()
        if len(found) > chunk_rows
    }
    bits = {n: bit for n, bit in PART_BITS.items() if n in wanted}
    if FINAL in wanted and final_sampled:
        bits |= {"final_train": FINAL_TRAIN, "final_validation": FINAL_VALIDATION}
    spills = {name: part.path for name, part in streamed.items()}
    frames = _read_rows(file, flags, bits, names, batch_rows or ROW_BATCH_ROWS, spills)
    del flags
    final = None
    if "final_train" in frames:
        final = pd.concat([frames["final_train"], frames["final_validation"]], ignore_index=True)
    empty = projected(file, names).empty_table().to_pandas()
    split = Split(
        train=frames.get("train", empty),
        validation=streamed.get("validation", frames.get("validation", empty)),
        test=streamed.get("test", frames.get("test", empty)),
        boundaries=boundaries(train_dates, val_dates, test_dates),
        final=final,
        rows=rows,
    )
    log.info("%s", budget_line(rows))
    log.info(
        "split: train %d rows (%d snapshots), validation %d (%d), test %d (%d)%s; %s",
        rows.train_after,
        len(train_dates),
        val_rows,
        len(val_dates),
        test_rows,
        len(test_dates),
        f", {' and '.join(streamed)} scored in chunks of {chunk_rows:,} rows" if streamed else "",
        split.boundaries,
    )
    return split


def _sample(
    positions: np.ndarray, codes: np.ndarray, labels: np.ndarray, cfg: SplitSettings
) -> np.ndarray:
    """The positions kept of `positions` under the budget, stratified by date and label."""
    if cfg.train_rows is None or cfg.train_rows >= len(positions):
        return positions
    strata = codes[positions] * 2 + labels[positions]  # int16: see MAX_DATES
    return positions[choose(strata, cfg.train_rows, cfg.seed)]


def _keys(
    file: pq.ParquetFile, label: str, batch_rows: int
) -> tuple[np.ndarray, np.ndarray, list[pd.Timestamp]]:
    """Each row's snapshot date (an index into the sorted dates), its 0/1 label, and the
    sorted dates. Dates are coded per batch first, since they are known only at the end."""
    names = file.schema_arrow.names
    missing = [c for c in (EVENT_TIMESTAMP, label) if c not in names]
    if missing:
        raise ValueError(f"the training set has no {', '.join(map(repr, missing))} column")
    total = file.metadata.num_rows
    codes = np.empty(total, dtype=np.int16)
    labels = np.empty(total, dtype=np.int8)
    batches: list[tuple[int, int, np.ndarray]] = []  # offset, rows, the batch's dates
    offset = 0
    for batch in file.iter_batches(batch_size=batch_rows, columns=[EVENT_TIMESTAMP, label]):
        when, labelled = batch.column(0), batch.column(1)
        if when.null_count:
            raise ValueError(f"the training set has rows without a {EVENT_TIMESTAMP!r}")
        local, uniques = pd.factorize(pc.cast(when, pa.int64()).to_numpy())
        if len(uniques) > MAX_DATES:
            raise ValueError(f"over {MAX_DATES:,} snapshot dates: more than are supported")
        values = labelled.to_numpy(zero_copy_only=False)
        if labelled.null_count or not np.isin(values, (0, 1)).all():
            raise ValueError(f"the label {label!r} must be 0 or 1 on every training row")
        rows = batch.num_rows
        codes[offset : offset + rows] = local
        labels[offset : offset + rows] = values
        batches.append((offset, rows, uniques))
        offset += rows
    stamps = np.unique(np.concatenate([u for _, _, u in batches])) if batches else np.array([])
    if len(stamps) > MAX_DATES:
        raise ValueError(f"over {MAX_DATES:,} snapshot dates: more than are supported")
    for start, rows, uniques in batches:
        codes[start : start + rows] = np.searchsorted(stamps, uniques)[codes[start : start + rows]]
    return codes, labels, [pd.Timestamp(int(s)) for s in stamps]


def _read_rows(
    file: pq.ParquetFile,
    flags: np.ndarray,
    bits: dict[str, int],
    columns: list[str] | None,
    batch_rows: int,
    spills: dict[str, Path],
) -> dict[str, pd.DataFrame]:
    """The rows flagged with each bit, in file order, as frames like `pd.read_parquet`'s;
    those of the names in `spills` are written to that file instead, in the same order."""
    schema = projected(file, columns)
    pieces: dict[str, list[pa.RecordBatch]] = {name: [] for name in bits if name not in spills}
    with contextlib.ExitStack() as stack:
        writers = {
            name: stack.enter_context(pq.ParquetWriter(path, schema))
            for name, path in spills.items()
        }
        for name, rows in flagged_batches(file, flags, bits, columns, batch_rows):
            if name in writers:
                writers[name].write_batch(rows)
            else:
                pieces[name].append(rows)
    return {
        name: pa.Table.from_batches(found, schema=schema).to_pandas()
        for name, found in pieces.items()
    }
