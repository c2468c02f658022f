"""The time split read from a training set, under the row budget.

The training set is one Parquet file, or (sharded) a dataset partitioned by shard whose
parts are read in shard order as if they were one file. It is read in batches: first only
the snapshot date and the label of every row, enough to place each row in a part
(`mlstack.models.split`) and to count the budget's strata (`mlstack.models.sampling`);
when the budget samples, then the customer id and snapshot date of the sampled periods'
rows, hashed a batch at a time into each row's rank (`mlstack.features.shards.row_hash`),
keeping only the candidates of smallest rank (about twice the budget); then the rows of the
parts a step asks for, each batch filtered before it is kept. So the training period's rows
beyond the budget, the snapshots the stride skips, the gaps, and the parts a step does not
use never become a table: the memory of the train part is the budget's, however many
customers there are, and beside it one date code and one label a row.

The rows sampled depend on the rows and the seed, not on their order, and the parts held in
memory (train, final, and validation and test when not streamed) of a partitioned training
set are put in the one-file order (`ORDER`), so its split is the one-file split, frame for
frame. A streamed validation or test part stays in the order read (shard by shard): it is
only scored, and scores are per row.

With no budget, or one of at least the rows, every part is row for row and in the same
order what `time_split` gives on the whole file.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mlstack.config import SplitSettings
from mlstack.features.definitions import ENTITY, EVENT_TIMESTAMP
from mlstack.features.shards import batches, in_order, row_hash
from mlstack.models.parts import (
    CHUNK_ROWS,
    Source,
    StreamedPart,
    flagged_batches,
    open_parts,
    projected,
    release_read_buffers,
    spill_file,
)
from mlstack.models.sampling import RowCounts, SmallestByStratum, allocate, budget_line
from mlstack.models.split import PARTS, Split, boundaries, check_dates, select_dates

log = logging.getLogger(__name__)

FINAL = "final"  # the final fit's rows: train + validation, sampled to the budget
KEY_BATCH_ROWS = 1 << 20  # keys are two narrow columns: large batches
HASH_BATCH_ROWS = 1 << 18  # customer ids are hashed as Python strings: ~20 MB a batch
ROW_BATCH_ROWS = 1 << 16  # whole rows: a batch is a few MB before it is filtered
COUNT_ROWS = 1 << 22  # key codes counted at a time (bincount makes them 8-byte integers)

# a row's membership, as bits: the sampled train rows, validation, test, and the final
# fit's sampled rows of the train and the validation period (kept apart to keep their order)
TRAIN, VALIDATION, TEST, FINAL_TRAIN, FINAL_VALIDATION = 1, 2, 4, 8, 16
PART_BITS = {"train": TRAIN, "validation": VALIDATION, "test": TEST}
# dates are coded in 16 bits, date x label too (two labels a date): 313 years of weekly
# snapshots, and the strata sort as 16-bit integers (a radix sort)
MAX_DATES = np.iinfo(np.int16).max // 2


def read_split(
    source: Source,
    cfg: SplitSettings,
    horizon_days: int,
    label: str,
    parts: Iterable[str] = (*PARTS, FINAL),
    columns: Iterable[str] | None = None,
    batch_rows: int | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> Split:
    """The time split of the training set at `source` (a file or a partitioned folder, or
    the bytes of the file or of the parts in shard order: `open_parts`), with
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
    files = open_parts(source)
    file = files[0]  # the schema
    codes, labels, dates = _keys(files, label, batch_rows or KEY_BATCH_ROWS)
    train_dates, val_dates, test_dates = select_dates(dates, cfg, horizon_days)
    check_dates(
        [("train", train_dates), ("validation", val_dates), ("test", test_dates)], horizon_days
    )
    period = np.zeros(len(dates), dtype=np.uint8)
    position = {d: i for i, d in enumerate(dates)}
    for bit, chosen in ((TRAIN, train_dates), (VALIDATION, val_dates), (TEST, test_dates)):
        period[[position[d] for d in chosen]] = bit
    row_period = np.empty(len(codes), dtype=np.uint8)  # period[codes], a chunk at a time:
    for start in range(0, len(codes), COUNT_ROWS):  # an index is made 8 bytes a row first
        row_period[start : start + COUNT_ROWS] = period[codes[start : start + COUNT_ROWS]]

    flags = np.zeros(len(codes), dtype=np.uint8)
    # counted, not listed: 8-byte positions of the train and final rows were 1 GB at 100x
    in_period = _counts(row_period.__getitem__, len(codes), TEST + 1)  # 0: in no period
    in_train = int(in_period[TRAIN])
    in_final = in_train + int(in_period[VALIDATION])
    budget = cfg.train_rows
    train_after = in_train if budget is None else min(budget, in_train)
    final_after = in_final if budget is None else min(budget, in_final)
    final_sampled = final_after < in_final
    draws = {}  # the periods sampled, and the periods' rows they are drawn from
    if "train" in wanted and train_after < in_train:
        draws["train"] = (TRAIN,)
    if FINAL in wanted and final_sampled:
        draws[FINAL] = (TRAIN, VALIDATION)
    kept = _draw(files, codes, labels, row_period, draws, cfg, batch_rows or HASH_BATCH_ROWS)
    if "train" in kept:
        flags[kept["train"]] |= TRAIN
    elif "train" in wanted:
        flags[row_period == TRAIN] |= TRAIN
    scored: dict[str, np.ndarray] = {}  # validation / test: their labels
    for name in ("validation", "test"):
        if name in wanted:
            rows_of_part = row_period == PART_BITS[name]
            flags[rows_of_part] |= PART_BITS[name]
            scored[name] = labels[rows_of_part]  # int8: a byte a row
    if FINAL in kept:
        from_train = row_period[kept[FINAL]] == TRAIN
        flags[kept[FINAL]] |= np.where(from_train, FINAL_TRAIN, FINAL_VALIDATION).astype(np.uint8)
    rows = RowCounts(
        budget=cfg.train_rows,
        train_before=in_train,
        train_after=train_after,
        final_before=in_final,
        final_after=final_after,
    )
    val_rows, test_rows = int(in_period[VALIDATION]), int(in_period[TEST])
    # one key per row of the whole file: gone before the rows are read
    del codes, labels, row_period, kept

    names = None if columns is None else list(dict.fromkeys([EVENT_TIMESTAMP, label, *columns]))
    # the held parts of several files are put in ORDER: by the customer id, read if not asked
    ordered = len(files) > 1
    read = names if not ordered or names is None else list(dict.fromkeys([*names, ENTITY]))
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
    frames = _read_rows(files, flags, bits, read, batch_rows or ROW_BATCH_ROWS, spills, names)
    del flags
    if ordered:  # stable: rows of one (customer, snapshot) keep their order
        frames = {n: in_order(f)[names or list(f.columns)] for n, f in frames.items()}
    final = None
    if "final_train" in frames:
        final = pd.concat([frames["final_train"], frames["final_validation"]], ignore_index=True)
    empty = projected(file, names).empty_table().to_pandas()
    del files, file  # the readers, and what the reading freed in Arrow's pool: 1.4 GB at 100x
    release_read_buffers()
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


def _draw(
    files: list[pq.ParquetFile],
    codes: np.ndarray,
    labels: np.ndarray,
    row_period: np.ndarray,
    draws: dict[str, tuple[int, ...]],
    cfg: SplitSettings,
    batch_rows: int,
) -> dict[str, np.ndarray]:
    """For each name in `draws`, the positions (ascending) of `cfg.train_rows` rows of the
    periods named, stratified by date and label, the rows of smallest `row_hash` (seed
    `cfg.seed`) in each stratum. One more pass over the customer ids and dates, hashed a
    batch at a time; only the candidate rows are held (about twice the budget)."""
    if not draws:
        return {}
    assert cfg.train_rows is not None  # a draw is asked for only under a budget
    strata_count = 2 * (int(codes.max()) + 1)
    pickers = {}
    for name, periods in draws.items():

        def strata(part: slice, periods: tuple[int, ...] = periods) -> np.ndarray:
            rows = np.isin(row_period[part], periods)
            return codes[part][rows] * 2 + labels[part][rows]

        counts = _counts(strata, len(codes), strata_count)
        pickers[name] = (periods, SmallestByStratum(allocate(counts, cfg.train_rows)))
    wanted = np.unique([p for periods in draws.values() for p in periods])
    offset = 0
    for batch in batches(files, batch_rows, [ENTITY, EVENT_TIMESTAMP]):
        start, offset = offset, offset + batch.num_rows
        period = row_period[start:offset]
        needed = np.isin(period, wanted)
        if not needed.any():
            continue
        at = np.flatnonzero(needed)
        keys = batch.filter(pa.array(needed))
        if keys.column(0).null_count:
            raise ValueError(f"the training set has rows without a {ENTITY!r}")
        ranks = row_hash(keys.column(0).to_pandas(), keys.column(1).to_pandas(), cfg.seed)
        strata = codes[start:offset][at] * 2 + labels[start:offset][at]
        for periods, picker in pickers.values():
            mine = np.isin(period[at], periods)
            picker.add(strata[mine], ranks[mine], start + at[mine])
    return {name: picker.positions() for name, (_, picker) in pickers.items()}


def _counts(values: Callable[[slice], np.ndarray], rows: int, size: int) -> np.ndarray:
    """The `size` counts of `values(part)` over the parts of `COUNT_ROWS` rows of `rows`:
    bincount copies its input to 64-bit integers, 8 bytes a row, so a part at a time."""
    counts = np.zeros(size, dtype=np.int64)
    for start in range(0, rows, COUNT_ROWS):
        counts += np.bincount(values(slice(start, start + COUNT_ROWS)), minlength=size)
    return counts


def _keys(
    files: list[pq.ParquetFile], label: str, batch_rows: int
) -> tuple[np.ndarray, np.ndarray, list[pd.Timestamp]]:
    """Each row's snapshot date (an index into the sorted dates), its 0/1 label, and the
    sorted dates. Dates are coded per batch first, since they are known only at the end."""
    total = sum(f.metadata.num_rows for f in files)
    codes = np.empty(total, dtype=np.int16)
    labels = np.empty(total, dtype=np.int8)
    coded: list[tuple[int, int, np.ndarray]] = []  # offset, rows, the batch's dates
    offset = 0
    for batch in batches(files, batch_rows, [EVENT_TIMESTAMP, label]):
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
        coded.append((offset, rows, uniques))
        offset += rows
    stamps = np.unique(np.concatenate([u for _, _, u in coded])) if coded else np.array([])
    if len(stamps) > MAX_DATES:
        raise ValueError(f"over {MAX_DATES:,} snapshot dates: more than are supported")
    for start, rows, uniques in coded:
        codes[start : start + rows] = np.searchsorted(stamps, uniques)[codes[start : start + rows]]
    return codes, labels, [pd.Timestamp(int(s)) for s in stamps]


def _read_rows(
    files: list[pq.ParquetFile],
    flags: np.ndarray,
    bits: dict[str, int],
    columns: list[str] | None,
    batch_rows: int,
    spills: dict[str, Path],
    spill_columns: list[str] | None,
) -> dict[str, pd.DataFrame]:
    """The rows flagged with each bit, in the files' order, as frames like
    `pd.read_parquet`'s; those of the names in `spills` are written to that file instead
    (of `spill_columns` only), in the same order."""
    schema = projected(files[0], columns)
    spill_schema = projected(files[0], spill_columns)
    pieces: dict[str, list[pa.RecordBatch]] = {name: [] for name in bits if name not in spills}
    with contextlib.ExitStack() as stack:
        writers = {
            name: stack.enter_context(pq.ParquetWriter(path, spill_schema))
            for name, path in spills.items()
        }
        offset = 0
        for file in files:
            rows_here = file.metadata.num_rows
            here = flags[offset : offset + rows_here]
            offset += rows_here
            for name, rows in flagged_batches(file, here, bits, columns, batch_rows):
                if name in writers:
                    writers[name].write_batch(rows.select(spill_schema.names))
                else:
                    pieces[name].append(rows)
    return {
        name: pa.Table.from_batches(found, schema=schema).to_pandas()
        for name, found in pieces.items()
    }
