"""Time-based train / validation / test split on snapshot dates, with a label-horizon gap.

A row at snapshot t is labelled from purchases in (t, t + horizon]. A split is leak-free
when every label window of an earlier part closes at or before the first snapshot of any
later part: nothing a later part could know is used to label an earlier one, and the
model never trains on outcomes that happen inside the period it is evaluated on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pandas as pd

from mlstack.config import SplitSettings
from mlstack.features.definitions import EVENT_TIMESTAMP
from mlstack.models.parts import Part
from mlstack.models.sampling import RowCounts

log = logging.getLogger(__name__)

PARTS = ("train", "validation", "test")


class LeakageError(ValueError):
    """A label window of an earlier split runs past the start of a later one."""


@dataclass
class Split:
    """The three parts of a training set and the snapshot dates that bound them.

    `final` holds the final fit's rows when a row budget sampled them from train +
    validation (None: the final fit takes both parts whole); `rows` says what the budget
    kept, when the split was read under one."""

    train: pd.DataFrame
    validation: Part  # a `StreamedPart` when read from a file and too large to hold
    test: Part
    boundaries: dict[str, str] = field(default_factory=dict)
    final: pd.DataFrame | None = None
    rows: RowCounts | None = None

    def parts(self) -> dict[str, Part]:
        """The parts by name, in time order."""
        return {"train": self.train, "validation": self.validation, "test": self.test}


def snapshot_dates(frame: pd.DataFrame) -> list[pd.Timestamp]:
    """The distinct snapshot dates of a frame, oldest first."""
    if EVENT_TIMESTAMP not in frame.columns:
        raise ValueError(f"the training set has no {EVENT_TIMESTAMP!r} column")
    return sorted(pd.Timestamp(d) for d in pd.to_datetime(frame[EVENT_TIMESTAMP]).unique())


def _iso(ts: pd.Timestamp) -> str:
    return pd.Timestamp(ts).date().isoformat()


def select_dates(
    dates: list[pd.Timestamp], cfg: SplitSettings, horizon_days: int
) -> tuple[list[pd.Timestamp], list[pd.Timestamp], list[pd.Timestamp]]:
    """Snapshot dates of train, validation and test for these split settings."""
    horizon = pd.Timedelta(days=horizon_days)
    span = f"{_iso(dates[0])}..{_iso(dates[-1])}" if dates else "none"
    problem = (
        f"too few snapshots ({len(dates)}, {span}) for test_snapshots={cfg.test_snapshots}, "
        f"validation_snapshots={cfg.validation_snapshots} and a "
        f"{horizon_days}-day horizon gap before each split"
    )
    if len(dates) < cfg.test_snapshots + cfg.validation_snapshots + 1:
        raise ValueError(problem)
    test = dates[-cfg.test_snapshots :]
    validation = [d for d in dates if d + horizon <= test[0]][-cfg.validation_snapshots :]
    if len(validation) < cfg.validation_snapshots:
        raise ValueError(f"{problem}: no room for validation")
    train = [d for d in dates if d + horizon <= validation[0]]
    if not train:
        raise ValueError(f"{problem}: no room for train")
    # every k-th snapshot counted back from the newest, so the newest is always kept
    train = train[::-1][:: cfg.train_snapshot_stride][::-1]
    return train, validation, test


def time_split(training: pd.DataFrame, cfg: SplitSettings, horizon_days: int) -> Split:
    """Split a labelled customer x snapshot table by snapshot date (see the module doc); a
    label window is `horizon_days` long (`features.horizon_days`)."""
    dates = snapshot_dates(training)
    train_dates, val_dates, test_dates = select_dates(dates, cfg, horizon_days)
    when = pd.to_datetime(training[EVENT_TIMESTAMP])

    def rows(dates: list[pd.Timestamp]) -> pd.DataFrame:
        return training[when.isin(dates)].reset_index(drop=True)

    split = Split(
        train=rows(train_dates),
        validation=rows(val_dates),
        test=rows(test_dates),
        boundaries=boundaries(train_dates, val_dates, test_dates),
    )
    check_no_overlap(split, horizon_days)
    log.info(
        "split: train %d rows (%d snapshots), validation %d (%d), test %d (%d); %s",
        len(split.train),
        len(train_dates),
        len(split.validation),
        len(val_dates),
        len(split.test),
        len(test_dates),
        split.boundaries,
    )
    return split


def boundaries(*part_dates: list[pd.Timestamp]) -> dict[str, str]:
    """The first and last snapshot date of each part (train, validation, test)."""
    found = {}
    for name, dates in zip(PARTS, part_dates, strict=True):
        found[f"{name}_start"] = _iso(dates[0])
        found[f"{name}_end"] = _iso(dates[-1])
    return found


def check_no_overlap(split: Split, horizon_days: int) -> None:
    """Raise `LeakageError` when a label window of an earlier part runs past a later part's
    first snapshot; empty parts are skipped."""
    dated = [(name, snapshot_dates(frame)) for name, frame in split.parts().items() if len(frame)]
    check_dates(dated, horizon_days)


def check_dates(dated: list[tuple[str, list[pd.Timestamp]]], horizon_days: int) -> None:
    """`check_no_overlap` on the parts' snapshot dates, (name, dates) in time order."""
    horizon = pd.Timedelta(days=horizon_days)
    for i, (earlier, earlier_dates) in enumerate(dated):
        for later, later_dates in dated[i + 1 :]:
            start = later_dates[0]
            overlapping = [d for d in earlier_dates if d + horizon > start]
            if overlapping:
                shown = ", ".join(_iso(d) for d in overlapping)
                raise LeakageError(
                    f"{earlier} and {later} overlap: the {horizon_days}-day label windows of "
                    f"{earlier} snapshots {shown} run past the first {later} snapshot "
                    f"{_iso(start)}"
                )
