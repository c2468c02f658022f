"""Training on a row budget: the stratified sample's arithmetic, and the split read from a
Parquet training set under `split.train_rows` (train sampled, validation and test whole)."""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from mlstack.config import Settings
from mlstack.features.definitions import ENTITY, EVENT_TIMESTAMP
from mlstack.features.shards import in_order, partition, row_hash, split_by_shard
from mlstack.models import split_file
from mlstack.models.parts import StreamedPart, as_frame
from mlstack.models.sampling import SmallestByStratum, allocate, budget_line, choose
from mlstack.models.split import time_split
from mlstack.models.split_file import read_split
from mlstack.models.train import evaluate_on, final_fit_frame, fit_staged, training_frame

pytestmark = pytest.mark.unit

LABEL = "purchase_within_30d"
KEYS = [ENTITY, EVENT_TIMESTAMP]
WEEK = pd.Timedelta(days=7)
START = pd.Timestamp("2021-01-01", tz="UTC")
SNAPSHOTS, CUSTOMERS = 40, 300
HORIZON = 30


def training_set(path: Path, seed: int = 0) -> Path:
    """A labelled customer x weekly-snapshot training set in the one-shard order (customer,
    then snapshot), customers joining over time and the label rate moving with the date,
    written in several row groups."""
    rng = np.random.default_rng(seed)
    joins = rng.integers(0, SNAPSHOTS // 2, CUSTOMERS)
    rows = [
        (f"{c:05d}", START + i * WEEK, i)
        for c in range(CUSTOMERS)
        for i in range(SNAPSHOTS)
        if i >= joins[c]
    ]
    frame = pd.DataFrame(rows, columns=[ENTITY, EVENT_TIMESTAMP, "week"])
    rate = 0.05 + 0.3 * frame["week"] / SNAPSHOTS
    frame[LABEL] = (rng.random(len(frame)) < rate).astype("int64")
    frame["recency_days"] = rng.exponential(30, len(frame))
    frame["spend_total"] = rng.gamma(2.0, 20.0, len(frame))
    frame = frame.drop(columns="week")
    frame.to_parquet(path, index=False, row_group_size=2_000)
    return path


def split_settings(train_rows: int | None, seed: int = 0, stride: int = 2):
    settings = Settings(
        split={
            "test_snapshots": 4,
            "validation_snapshots": 4,
            "train_snapshot_stride": stride,
            "train_rows": train_rows,
            "seed": seed,
        },
        features={"horizon_days": HORIZON},
    )
    return settings.split


def read(path: Path, train_rows: int | None, seed: int = 0, **kwargs):
    return read_split(
        str(path), split_settings(train_rows, seed), HORIZON, LABEL, batch_rows=997, **kwargs
    )


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return training_set(tmp_path / "training_set.parquet")


@pytest.fixture
def today(dataset: Path):
    """The split as it is made without a budget: the whole file in memory."""
    return time_split(pd.read_parquet(dataset), split_settings(None), HORIZON)


def strata_counts(frame: pd.DataFrame) -> pd.Series:
    return frame.groupby([EVENT_TIMESTAMP, LABEL]).size()


def assert_ordered_subset(sample: pd.DataFrame, whole: pd.DataFrame) -> None:
    """`sample` is rows of `whole`, every column as it was, in `whole`'s order."""
    at = pd.MultiIndex.from_frame(whole[KEYS]).get_indexer(pd.MultiIndex.from_frame(sample[KEYS]))
    assert (at >= 0).all() and (np.diff(at) > 0).all()
    pd.testing.assert_frame_equal(sample, whole.iloc[at].reset_index(drop=True))


# -- the allocation ------------------------------------------------------------------------


def test_allocation_is_exact_and_within_one_row_of_proportional() -> None:
    rng = np.random.default_rng(1)
    for _ in range(200):
        counts = rng.integers(0, 5_000, rng.integers(1, 60))
        if counts.sum() < 2:
            continue
        budget = int(rng.integers(1, counts.sum()))
        quotas = allocate(counts, budget)
        share = counts * budget / counts.sum()
        assert quotas.sum() == budget
        assert (np.abs(quotas - share) < 1).all()
        assert (quotas <= counts).all() and (quotas[counts == 0] == 0).all()


def test_allocation_ties_go_to_the_earlier_stratum_and_a_large_budget_keeps_all() -> None:
    assert allocate(np.array([1, 1, 1]), 2).tolist() == [1, 1, 0]
    assert allocate(np.array([10, 30]), 4).tolist() == [1, 3]
    assert allocate(np.array([5, 7]), 12).tolist() == [5, 7]
    assert allocate(np.array([5, 7]), 1_000).tolist() == [5, 7]
    with pytest.raises(ValueError, match="at least 1"):
        allocate(np.array([5, 7]), 0)


def test_choose_takes_each_stratum_its_share_of_smallest_ranks() -> None:
    rng = np.random.default_rng(2)
    strata = rng.integers(0, 7, 10_000).astype(np.int16)
    ranks = rng.integers(0, 2**63, 10_000).astype(np.uint64)
    picked = choose(strata, 1_234, ranks)
    assert len(picked) == 1_234 and (np.diff(picked) > 0).all()
    counts = np.bincount(strata[picked], minlength=7)
    assert counts.tolist() == allocate(np.bincount(strata), 1_234).tolist()  # quotas exact
    for stratum in range(7):  # in each stratum, the rows of smallest rank
        mine = strata == stratum
        kept = np.isin(np.flatnonzero(mine), picked)
        assert ranks[mine][kept].max(initial=0) < ranks[mine][~kept].min()
    assert choose(strata, 10_000, ranks).tolist() == list(range(10_000))
    with pytest.raises(ValueError, match="non-negative integers"):
        choose(np.array([0.5, 1.0]), 1, ranks[:2])


def test_the_sample_is_the_same_whatever_the_row_order() -> None:
    rng = np.random.default_rng(3)
    n = 20_000
    keys = pd.DataFrame(
        {
            ENTITY: [f"{c:05d}" for c in rng.integers(0, 10**5, n)],
            EVENT_TIMESTAMP: START + WEEK * rng.integers(0, 20, n),
        }
    ).drop_duplicates(ignore_index=True)
    strata = (keys[EVENT_TIMESTAMP].dt.dayofyear % 5).to_numpy().astype(np.int16)

    def sample(rows: pd.DataFrame, codes: np.ndarray, seed: int) -> set:
        ranks = row_hash(rows[ENTITY], rows[EVENT_TIMESTAMP], seed)
        picked = choose(codes, 3_000, ranks)
        assert np.bincount(codes[picked]).tolist() == allocate(np.bincount(codes), 3_000).tolist()
        return set(map(tuple, rows.iloc[picked].to_numpy()))

    first = sample(keys, strata, seed=0)
    shuffled = rng.permutation(len(keys))
    assert sample(keys.iloc[shuffled], strata[shuffled], seed=0) == first
    assert len(first) == 3_000 and sample(keys, strata, seed=1) != first


def test_the_draw_fed_in_batches_holds_the_candidates_only() -> None:
    rng = np.random.default_rng(4)
    strata = rng.integers(0, 9, 50_000).astype(np.int16)
    ranks = rng.integers(0, 2**64, 50_000, dtype=np.uint64)
    quotas = allocate(np.bincount(strata), 2_000)
    picker = SmallestByStratum(quotas)
    order = rng.permutation(50_000)  # the rows in any order, 1,000 at a time
    for batch in np.array_split(order, 50):
        picker.add(strata[batch], ranks[batch], batch)
        assert picker.rows <= 2 * 2_000 + 1 + 1_000
    assert picker.positions().tolist() == choose(strata, 2_000, ranks).tolist()


# -- the split read under a budget ---------------------------------------------------------


@pytest.mark.parametrize("train_rows", [None, "all", "all+1"])
def test_a_budget_of_at_least_the_rows_gives_todays_split(dataset, today, train_rows) -> None:
    every = len(today.train) + len(today.validation)  # the final fit's rows, the larger
    budget = {None: None, "all": every, "all+1": every + 1}[train_rows]
    split = read(dataset, budget)
    for name, part in today.parts().items():
        pd.testing.assert_frame_equal(split.parts()[name], part)  # same rows, same order
    assert split.boundaries == today.boundaries
    assert split.final is None
    pd.testing.assert_frame_equal(final_fit_frame(split), final_fit_frame(today))
    assert split.rows.train_after == split.rows.train_before == len(today.train)


def test_the_budget_samples_train_by_snapshot_and_label(dataset, today) -> None:
    budget = len(today.train) // 3 + 7
    split = read(dataset, budget)
    assert len(split.train) == budget
    # every (snapshot, label) stratum within one row of its proportional share
    available = strata_counts(today.train)
    kept = strata_counts(split.train).reindex(available.index, fill_value=0)
    assert (np.abs(kept - available * budget / len(today.train)) < 1).all()
    assert_ordered_subset(split.train, today.train)
    # validation and test untouched
    pd.testing.assert_frame_equal(split.validation, today.validation)
    pd.testing.assert_frame_equal(split.test, today.test)
    assert split.rows.budget == budget
    assert (split.rows.train_before, split.rows.train_after) == (len(today.train), budget)


def test_the_sample_is_fixed_by_the_seed(dataset, today) -> None:
    budget = len(today.train) // 2
    first, again = read(dataset, budget, seed=0), read(dataset, budget, seed=0)
    other = read(dataset, budget, seed=1)
    pd.testing.assert_frame_equal(first.train, again.train)
    assert not first.train[KEYS].equals(other.train[KEYS])
    assert len(other.train) == budget


def test_the_final_fit_is_sampled_from_train_and_validation(dataset, today) -> None:
    # between the train rows and train + validation: train whole, the final fit sampled
    budget = len(today.train) + len(today.validation) // 2
    split = read(dataset, budget)
    pd.testing.assert_frame_equal(split.train, today.train)
    final = final_fit_frame(split)
    assert final is split.final and len(final) == budget
    whole = final_fit_frame(today)
    kept = strata_counts(final).reindex(strata_counts(whole).index, fill_value=0)
    assert (np.abs(kept - strata_counts(whole) * budget / len(whole)) < 1).all()
    # the train period's rows first, then validation's, each in today's order
    assert_ordered_subset(final, whole)
    assert (split.rows.final_before, split.rows.final_after) == (len(whole), budget)
    assert "the final fit on" in budget_line(split.rows)


def test_only_the_parts_asked_for_are_read(dataset, today) -> None:
    split = read(dataset, 100, parts=("test",))
    assert split.train.empty and split.validation.empty and split.final is None
    assert list(split.train.columns) == list(today.train.columns)
    pd.testing.assert_frame_equal(split.test, today.test)
    assert split.rows.train_before == len(today.train)  # the counts are still known
    with pytest.raises(ValueError, match="no such split part: tests"):
        read(dataset, 100, parts=("tests",))


def test_only_the_columns_asked_for_are_read(dataset, today) -> None:
    split = read(dataset, 500, columns=["recency_days"])
    columns = [EVENT_TIMESTAMP, LABEL, "recency_days"]  # the date and the label always
    assert list(split.train.columns) == list(split.final.columns) == columns
    pd.testing.assert_frame_equal(split.validation, today.validation[columns])
    pd.testing.assert_frame_equal(split.train, read(dataset, 500).train[columns])  # the same sample
    with pytest.raises(ValueError, match="lacks columns: spend_30d"):
        read(dataset, 500, columns=["spend_30d"])


def test_large_validation_and_test_parts_are_scored_in_chunks(dataset, today) -> None:
    split = read(dataset, 500, chunk_rows=1_000)
    assert isinstance(split.validation, StreamedPart) and isinstance(split.test, StreamedPart)
    sizes = [len(chunk) for chunk in split.test.chunks()]
    assert sum(sizes) == len(today.test) and set(sizes[:-1]) == {1_000}
    pd.testing.assert_frame_equal(as_frame(split.validation), today.validation)
    pd.testing.assert_frame_equal(as_frame(split.test), today.test)
    assert split.test.labels.tolist() == today.test[LABEL].tolist()

    # every figure as when the part is held whole: scores are per row
    features = ["recency_days", "spend_total"]
    evaluation = Settings().evaluation
    held = fit_staged(
        "gradient_boosting",
        {"max_iter": 20},
        *frame_of(split.train, features),
        *frame_of(today.validation, features),
    )
    chunked = fit_staged(
        "gradient_boosting",
        {"max_iter": 20},
        *frame_of(split.train, features),
        *training_frame(split.validation, features, LABEL),
    )
    assert chunked.history == held.history
    for part in ("validation", "test"):
        assert evaluate_on(chunked.model, split.parts()[part], LABEL, evaluation) == evaluate_on(
            held.model, today.parts()[part], LABEL, evaluation
        )
    # from the file's bytes as from its path (a Katib trial reads the object store's bytes)
    in_bytes = read_split(
        dataset.read_bytes(), split_settings(500), HORIZON, LABEL, chunk_rows=1_000
    )
    pd.testing.assert_frame_equal(in_bytes.train, split.train)
    pd.testing.assert_frame_equal(as_frame(in_bytes.test), today.test)
    # a streamed part's own file goes with it
    spilled = split.test.path
    assert spilled.is_file()
    del split
    gc.collect()
    assert not spilled.parent.exists()


def frame_of(part: pd.DataFrame, features: list[str]):
    return training_frame(part, features, LABEL)


def test_the_log_line_says_what_the_budget_did(dataset, today, caplog) -> None:
    with caplog.at_level("INFO", logger="mlstack.models.split_file"):
        read(dataset, 500)
    expected = (
        f"training on 500 of {len(today.train):,} training rows, sampled by snapshot and "
        "label (split.train_rows=500)"
    )
    assert expected in caplog.text
    assert f"training on all {len(today.train):,} training rows" in budget_line(
        read(dataset, None).rows
    )


def test_labels_must_be_zero_or_one(tmp_path: Path) -> None:
    path = training_set(tmp_path / "bad.parquet")
    frame = pd.read_parquet(path)
    frame.loc[5, LABEL] = 2
    frame.to_parquet(path, index=False)
    with pytest.raises(ValueError, match="'purchase_within_30d' must be 0 or 1"):
        read(path, 100)


@pytest.mark.parametrize("value", [0, -5])
def test_a_budget_below_one_row_fails_at_settings_load_naming_the_key(value: int) -> None:
    with pytest.raises(ValidationError, match=r"split\.train_rows"):
        Settings(split={"train_rows": value})
    assert Settings(split={"train_rows": None}).split.train_rows is None


def partitioned(path: Path, shards: int) -> Path:
    """The training set at `path` as a dataset partitioned by customer shard, beside it."""
    frame = pd.read_parquet(path)
    root = path.with_name("partitioned")
    for k, part in enumerate(split_by_shard(frame, shards)):
        partition(root, k).parent.mkdir(parents=True)
        part.to_parquet(partition(root, k), index=False, row_group_size=700)
    return root


@pytest.mark.parametrize("budget", [None, 500, 5_000])
def test_a_partitioned_training_set_gives_the_one_file_split(dataset, budget) -> None:
    root = partitioned(dataset, 3)
    one, parts = read(dataset, budget), read(root, budget)
    for name in ("train", "validation", "test"):
        pd.testing.assert_frame_equal(parts.parts()[name], one.parts()[name])
    pd.testing.assert_frame_equal(final_fit_frame(parts), final_fit_frame(one))
    assert parts.rows == one.rows and parts.boundaries == one.boundaries
    # columns asked for: the customer id is read to order the rows, not returned
    asked = read(root, budget, columns=["recency_days"])
    pd.testing.assert_frame_equal(asked.train, one.train[asked.train.columns])
    assert ENTITY not in asked.train.columns
    # streamed parts keep the shard order: the same rows and labels, by row
    chunked = read(root, budget, chunk_rows=1_000)
    assert isinstance(chunked.test, StreamedPart)
    streamed = as_frame(chunked.test)
    pd.testing.assert_frame_equal(in_order(streamed), one.test)
    assert chunked.test.labels.tolist() == streamed[LABEL].tolist()
    # the parts' bytes in shard order, as a Katib trial reads them from the object store
    parts_bytes = [partition(root, k).read_bytes() for k in range(3)]
    in_bytes = read_split(parts_bytes, split_settings(budget), HORIZON, LABEL)
    pd.testing.assert_frame_equal(in_bytes.train, one.train)


def test_the_keys_of_a_row_cost_a_few_bytes_not_positions(tmp_path: Path, monkeypatch) -> None:
    """Under a budget the split holds one date code, one label and a few flags a row, not
    8-byte positions of every train and final row (1 GB at 100x)."""
    import tracemalloc

    customers, snapshots = 10_000, 100
    frame = pd.DataFrame(
        {
            ENTITY: np.repeat([f"{c:06d}" for c in range(customers)], snapshots),
            EVENT_TIMESTAMP: np.tile(START + WEEK * np.arange(snapshots), customers),
            LABEL: np.random.default_rng(0).integers(0, 2, customers * snapshots),
        }
    )
    path = tmp_path / "large.parquet"
    frame.to_parquet(path, index=False, row_group_size=1 << 18)
    del frame
    gc.collect()
    monkeypatch.setattr(split_file, "COUNT_ROWS", 1 << 15)  # chunks small beside the rows
    tracemalloc.start()  # numpy's arrays are traced; Arrow's buffers are not (its own pool)
    try:
        split = read_split(
            str(path),
            split_settings(1_000),
            HORIZON,
            LABEL,
            parts=("train", "final"),
            batch_rows=1 << 15,  # a batch's own arrays: small beside the rows'
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rows = customers * snapshots
    assert len(split.train) == len(split.final) == 1_000
    assert peak / rows < 10, f"{peak / rows:.1f} bytes a row"  # 19.8 before
