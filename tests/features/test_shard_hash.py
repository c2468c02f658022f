"""Customer shards: a stable hash of the id, the same in every process."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from mlstack.features.definitions import ENTITY
from mlstack.features.shards import shard_of, split_by_shard
from tests.support.paths import BUNDLED

# blake2b(id, 8 bytes) little-endian mod 4, worked out once: a change here moves customers
EXPECTED = {"00001": 0, "00007": 3, "00018": 1, "00019": 2, "23570": 1, "abc": 0, "": 0}


@pytest.mark.unit
def test_shard_of_is_the_documented_hash() -> None:
    ids = list(EXPECTED)
    assert shard_of(ids, 4).tolist() == list(EXPECTED.values())
    assert shard_of(ids, 1).tolist() == [0] * len(ids)
    # text, so an integer id and its text agree
    assert shard_of([12345], 4).tolist() == shard_of(["12345"], 4).tolist()


@pytest.mark.unit
def test_shard_of_rejects_no_shards_and_missing_ids() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        shard_of(["1"], 0)
    with pytest.raises(ValueError, match="missing"):
        shard_of(pd.Series(["1", None]), 2)


@pytest.mark.component  # subprocesses
def test_shard_of_is_the_same_in_processes_with_other_hash_seeds() -> None:
    code = (
        "from mlstack.features.shards import shard_of;"
        "print(shard_of([str(i) for i in range(500)], 7).tolist())"
    )
    outputs = set()
    for seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        outputs.add(done.stdout)
    assert len(outputs) == 1
    assert outputs.pop().strip() == str(shard_of([str(i) for i in range(500)], 7).tolist())


@pytest.fixture(scope="module")
def cdnow_ids() -> pd.Series:
    log = pd.read_csv(BUNDLED, sep=r"\s+", header=None, usecols=[0], dtype=str)
    return log[0].rename(ENTITY)


@pytest.mark.unit
def test_every_customer_is_in_exactly_one_shard_and_every_shard_is_used(cdnow_ids) -> None:
    for shards in (2, 4, 16):
        shard = shard_of(cdnow_ids, shards)
        assert shard.min() == 0 and shard.max() == shards - 1
        assert len(np.unique(shard)) == shards
        per_customer = pd.Series(shard).groupby(cdnow_ids.to_numpy()).nunique()
        assert (per_customer == 1).all()  # a customer's lines all land in one shard
        counts = np.bincount(shard[~cdnow_ids.duplicated().to_numpy()], minlength=shards)
        assert counts.min() > 0.8 * counts.mean()  # and the customers spread evenly


@pytest.mark.unit
def test_split_by_shard_keeps_every_line_once_in_log_order(cdnow_ids) -> None:
    log = pd.DataFrame({ENTITY: cdnow_ids, "line": np.arange(len(cdnow_ids))})
    parts = split_by_shard(log, 4)
    assert sum(len(p) for p in parts) == len(log)
    for k, part in enumerate(parts):
        assert part["line"].is_monotonic_increasing
        assert (shard_of(part[ENTITY], 4) == k).all()
    whole = pd.concat(parts).sort_values("line", ignore_index=True)
    pd.testing.assert_frame_equal(whole, log)
