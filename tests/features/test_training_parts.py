"""The collected training set of several shards stays partitioned: the shards' parts are
copied as they are (no table of every row is read or built), its figures are streamed and
its feature report comes from a bounded sample that does not depend on the row order."""

from __future__ import annotations

import filecmp
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from mlstack.config import Settings
from mlstack.features import partitioned
from mlstack.features.definitions import ENTITY, EVENT_TIMESTAMP
from mlstack.features.shards import in_order, partition, row_hash, split_by_shard
from mlstack.steps import sharded
from tests.models.test_row_budget import LABEL, training_set

pytestmark = pytest.mark.unit

SHARDS = 3


@pytest.fixture
def shard_parts(tmp_path: Path) -> tuple[pd.DataFrame, list[Path]]:
    """A training set in the one-shard order, and its shards' parts (files of their own,
    each in order, as the shards' steps write them)."""
    whole = pd.read_parquet(training_set(tmp_path / "whole.parquet"))
    paths = []
    for k, part in enumerate(split_by_shard(whole, SHARDS)):
        path = tmp_path / "shards" / f"task-{k}" / "part"
        path.parent.mkdir(parents=True)
        in_order(part).to_parquet(path, index=False, row_group_size=500)
        paths.append(path)
    return whole, paths


def test_collecting_copies_the_parts_and_holds_no_table(
    shard_parts, tmp_path: Path, monkeypatch
) -> None:
    whole, paths = shard_parts
    seen: list[pd.DataFrame] = []

    def report(frame, features, label, out_dir):
        seen.append(frame)
        (out_dir / "feature_report.html").write_text("report")
        return out_dir / "feature_report.html"

    def whole_table(*args, **kwargs):
        raise AssertionError("the collecting step read a whole table")

    monkeypatch.setattr(sharded, "feature_report", report)
    monkeypatch.setattr(pd, "read_parquet", whole_table)
    monkeypatch.setattr(pq, "read_table", whole_table)
    monkeypatch.setattr(partitioned, "REPORT_ROWS", 1_000)
    settings = Settings(features={"shards": SHARDS}, cache=False)
    out = tmp_path / "dataset"
    out.mkdir()
    (out / "stale.parquet").write_text("an earlier run's")
    shuffled = [paths[2], paths[0], paths[1]]  # the collected parts come in any order
    result = sharded.collect_training_set(settings, shuffled, out, tmp_path / "report.html")
    monkeypatch.undo()

    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        f"shard={k}/part-0.parquet" for k in range(SHARDS)
    ]
    for k, path in enumerate(paths):  # byte for byte the shard's own file
        assert filecmp.cmp(partition(out, k), path, shallow=False)
    assert result.metrics == {
        "training_rows": len(whole),
        "label_rate": float(whole[LABEL].mean()),
        "labelled_snapshots": whole[EVENT_TIMESTAMP].nunique(),
    }
    assert result.training_rows == len(whole)
    # the report's rows: a bounded sample, the same as from the one-shard file
    (sample,) = seen
    assert len(sample) == 1_000
    one_file = tmp_path / "one.parquet"
    whole.to_parquet(one_file, index=False)
    pd.testing.assert_frame_equal(sample, partitioned.report_sample(one_file, 1_000))
    pd.testing.assert_frame_equal(sample, in_order(sample))


def test_the_report_sample_is_the_rows_of_smallest_hash_whatever_the_order(
    shard_parts, tmp_path: Path, monkeypatch
) -> None:
    whole, _ = shard_parts
    monkeypatch.setattr(partitioned, "BATCH_ROWS", 500)  # many batches: the held rows pruned
    shuffled = whole.sample(frac=1.0, random_state=np.random.default_rng(0).integers(1 << 30))
    path = tmp_path / "shuffled.parquet"
    shuffled.to_parquet(path, index=False, row_group_size=300)
    sample = partitioned.report_sample(path, 700)
    ranks = row_hash(whole[ENTITY], whole[EVENT_TIMESTAMP], partitioned.REPORT_SEED)
    expected = in_order(whole.iloc[np.argsort(ranks, kind="stable")[:700]])
    pd.testing.assert_frame_equal(sample, expected)
    pd.testing.assert_frame_equal(partitioned.report_sample(path, 10**6), whole)


def test_a_part_of_another_shard_count_is_refused(shard_parts) -> None:
    _, paths = shard_parts
    with pytest.raises(ValueError, match="expected 2 shards"):
        sharded.in_shard_order(paths, 2)
    with pytest.raises(ValueError, match="not the training set of one shard"):
        sharded.in_shard_order([paths[0], paths[0], paths[1]], SHARDS)


def test_katib_trials_read_a_partitioned_set_from_the_state_store(shard_parts, tmp_path) -> None:
    from mlstack.models.split_file import read_split
    from mlstack.steps.model import _dataset_for_trials
    from mlstack.tuning.trial import _dataset_source

    whole, paths = shard_parts
    folder = tmp_path / "dataset"
    for k, part in enumerate(sharded.in_shard_order(paths, SHARDS)):
        partition(folder, k).parent.mkdir(parents=True)
        partition(folder, k).write_bytes(part.read_bytes())
    settings = Settings(state_uri="memory://trials-state", split={"train_rows": 500})
    uri = _dataset_for_trials(settings, folder, "unused", "run-1")
    assert uri == "memory://trials-state/tuning/run-1/training_set"
    source = _dataset_source(settings.object_store, uri)  # the parts' bytes, in shard order
    assert source == [partition(folder, k).read_bytes() for k in range(SHARDS)]
    one = tmp_path / "one.parquet"
    whole.to_parquet(one, index=False)
    split, expected = (read_split(s, settings.split, 30, LABEL) for s in (source, str(one)))
    pd.testing.assert_frame_equal(split.train, expected.train)
    # one shard: the file, as before
    file_uri = _dataset_for_trials(settings, one, "unused", "run-2")
    assert file_uri.endswith("/run-2/training_set.parquet")
    assert _dataset_source(settings.object_store, file_uri) == one.read_bytes()


def test_describing_reads_the_set_once_and_names_a_missing_column(
    shard_parts, tmp_path: Path, monkeypatch
) -> None:
    whole, paths = shard_parts
    folder = tmp_path / "dataset"
    for k, path in enumerate(paths):
        partition(folder, k).parent.mkdir(parents=True)
        partition(folder, k).write_bytes(path.read_bytes())
    reads: list[tuple[str, ...] | None] = []
    iter_batches = pq.ParquetFile.iter_batches

    def counted(self, *args, columns=None, **kwargs):
        reads.append(None if columns is None else tuple(columns))
        return iter_batches(self, *args, columns=columns, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", counted)
    described = partitioned.describe(folder, LABEL, rows=500)
    assert reads == [None] * SHARDS  # each part read once, every column in that one pass
    assert described.figures == {
        "training_rows": len(whole),
        "label_rate": float(whole[LABEL].mean()),
        "labelled_snapshots": whole[EVENT_TIMESTAMP].nunique(),
    }
    assert len(described.sample) == 500

    with pytest.raises(ValueError, match="no 'churned_90d' column"):
        partitioned.describe(folder, "churned_90d")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no shard=K partitions"):
        partitioned.describe(empty, LABEL)
