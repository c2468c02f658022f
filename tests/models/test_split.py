"""The time split: horizon gaps between parts, leakage detection, stride, too little data."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest

from mlstack.config import Settings, SplitSettings
from mlstack.features.definitions import ENTITY, EVENT_TIMESTAMP
from mlstack.models.split import LeakageError, Split, check_no_overlap, time_split

pytestmark = pytest.mark.unit

WEEK = pd.Timedelta(days=7)
START = pd.Timestamp("2021-01-01", tz="UTC")


def weekly_table(n_snapshots: int, customers: int = 3) -> pd.DataFrame:
    """A labelled customer x weekly-snapshot table."""
    dates = [START + i * WEEK for i in range(n_snapshots)]
    return pd.DataFrame(
        {
            ENTITY: [f"c{c}" for _ in dates for c in range(customers)],
            EVENT_TIMESTAMP: [d for d in dates for _ in range(customers)],
            "purchase_within_30d": [
                (i + c) % 2 for i in range(n_snapshots) for c in range(customers)
            ],
            "recency_days": range(n_snapshots * customers),
        }
    )


def split_settings(
    test: int = 3, validation: int = 2, stride: int = 1, horizon: int = 30
) -> tuple[SplitSettings, int]:
    """The split section and the label horizon, as `time_split` takes them."""
    settings = Settings(
        split={
            "test_snapshots": test,
            "validation_snapshots": validation,
            "train_snapshot_stride": stride,
        },
        features={"horizon_days": horizon},
    )
    return settings.split, settings.features.horizon_days


def dates_of(frame: pd.DataFrame) -> list[pd.Timestamp]:
    return sorted(frame[EVENT_TIMESTAMP].unique())


def test_parts_are_separated_by_a_horizon() -> None:
    split = time_split(weekly_table(30), *split_settings())
    horizon = pd.Timedelta(days=30)
    train, val, test = dates_of(split.train), dates_of(split.validation), dates_of(split.test)

    assert len(test) == 3 and test[-1] == START + 29 * WEEK
    assert len(val) == 2
    assert val[-1] + horizon <= test[0] < val[-1] + horizon + WEEK  # the latest that fits
    assert train[-1] + horizon <= val[0] < train[-1] + horizon + WEEK
    assert split.boundaries == {
        "train_start": "2021-01-01",
        "train_end": train[-1].date().isoformat(),
        "validation_start": val[0].date().isoformat(),
        "validation_end": val[-1].date().isoformat(),
        "test_start": test[0].date().isoformat(),
        "test_end": "2021-07-23",
    }
    # every row lands in exactly one part or in a gap, with all its columns
    assert len(split.train) == 3 * len(train)
    assert list(split.test.columns) == list(weekly_table(1).columns)


def test_gap_scales_with_the_horizon() -> None:
    split = time_split(weekly_table(30), *split_settings(horizon=7))
    val, test = dates_of(split.validation), dates_of(split.test)
    assert val[-1] + WEEK == test[0]


def test_overlapping_label_windows_are_leakage() -> None:
    table = weekly_table(10)
    when = table[EVENT_TIMESTAMP]
    split = Split(
        train=table[when == START],
        validation=table[(when >= START + 5 * WEEK) & (when <= START + 6 * WEEK)],
        test=table[when >= START + 8 * WEEK],
    )
    with pytest.raises(LeakageError) as err:
        check_no_overlap(split, horizon_days=30)
    message = str(err.value)
    assert "validation and test overlap" in message
    assert "2021-02-05, 2021-02-12" in message  # both validation snapshots run past
    assert "first test snapshot 2021-02-26" in message
    assert isinstance(err.value, ValueError)
    check_no_overlap(split, horizon_days=14)  # a shorter horizon fits the same gaps


def test_overlap_is_checked_between_train_and_validation_too() -> None:
    table = weekly_table(12)
    when = table[EVENT_TIMESTAMP]
    split = Split(
        train=table[when <= START + 4 * WEEK],
        validation=table[(when >= START + 6 * WEEK) & (when <= START + 7 * WEEK)],
        test=table[when >= START + 11 * WEEK],
    )
    with pytest.raises(LeakageError, match=r"train and validation overlap.*2021-01-29"):
        check_no_overlap(split, horizon_days=30)


@pytest.mark.parametrize("stride", [2, 3, 5])
def test_stride_keeps_the_newest_train_snapshot(stride: int) -> None:
    full = time_split(weekly_table(40), *split_settings(stride=1))
    strided = time_split(weekly_table(40), *split_settings(stride=stride))
    all_train, kept = dates_of(full.train), dates_of(strided.train)

    assert kept[-1] == all_train[-1]
    assert kept == all_train[::-1][::stride][::-1]
    assert all(b - a == stride * WEEK for a, b in itertools.pairwise(kept))
    assert dates_of(strided.validation) == dates_of(full.validation)
    assert dates_of(strided.test) == dates_of(full.test)


@pytest.mark.parametrize("n_snapshots", [0, 3, 5, 10, 13])
def test_too_few_snapshots_is_a_clear_error(n_snapshots: int) -> None:
    # 3 test + 2 validation + 1 train and two 30-day gaps (5 weeks each): 14 is the minimum
    with pytest.raises(
        ValueError, match=r"too few snapshots .* test_snapshots=3, validation_snapshots=2"
    ):
        time_split(weekly_table(n_snapshots), *split_settings())


def test_minimum_snapshots_suffice() -> None:
    split = time_split(weekly_table(14), *split_settings())
    assert len(dates_of(split.train)) == 1


def test_missing_snapshot_column_is_an_error() -> None:
    with pytest.raises(ValueError, match=EVENT_TIMESTAMP):
        time_split(weekly_table(30).drop(columns=[EVENT_TIMESTAMP]), *split_settings())
