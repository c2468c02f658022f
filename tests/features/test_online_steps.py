"""The sharded materialization's bookkeeping: the plan handed to every shard, the check
that every shard loaded before anything is recorded, the feature table's last snapshot."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mlstack.config import load_settings
from mlstack.features.definitions import ENTITY, EVENT_TIMESTAMP
from mlstack.features.shards import partition
from mlstack.steps import online
from tests.support.paths import CONFIG

pytestmark = pytest.mark.unit


def test_a_plan_reads_back_as_written() -> None:
    plan = online.Plan(
        until="1998-06-27T00:00:00",
        intervals=[["customer_features", "1998-06-20T00:00:00+00:00", "1998-06-27T00:00:00+00:00"]],
    )
    assert online.Plan.from_json(plan.to_json()) == plan


@pytest.mark.parametrize(
    ("start", "loads"),
    [
        ("1998-06-20T00:00:00+00:00", True),
        ("1998-06-27T00:00:00+00:00", True),  # the end again: its rows are loaded again
        ("2026-12-01T02:30:00.250000+00:00", False),  # the CronJob went on to now
    ],
)
def test_a_plan_past_the_registry_loads_nothing(start: str, loads: bool) -> None:
    plan = online.Plan("1998-06-27", [["customer_features", start, "1998-06-27T00:00:00+00:00"]])
    assert plan.loads_anything() is loads


@pytest.mark.parametrize("done", [[0, 1, 3], [0, 1, 2], [0, 1, 2, 3, 3], [3, 2, 1, 0, 4]])
def test_nothing_is_recorded_unless_every_shard_loaded(done: list[int]) -> None:
    settings = load_settings(CONFIG, ["features.shards=4"])
    plan = online.Plan(until="1998-06-27T00:00:00", intervals=[]).to_json()
    with pytest.raises(ValueError, match=r"expected 0\.\.3"):
        online.record(settings, plan, done)


def snapshots(*dates: str) -> pd.DataFrame:
    stamps = pd.to_datetime(list(dates))
    return pd.DataFrame({ENTITY: [str(i) for i in range(len(stamps))], EVENT_TIMESTAMP: stamps})


def test_the_last_snapshot_of_a_table_and_of_its_partitions(tmp_path: Path) -> None:
    single = tmp_path / "features.parquet"
    snapshots("1998-06-13", "1998-06-27", "1998-06-20").to_parquet(single)
    assert online.last_snapshot(single) == pd.Timestamp("1998-06-27")

    folder = tmp_path / "features"
    for shard, dates in enumerate([["1998-06-13"], ["1998-06-27", "1998-06-06"], ["1998-06-20"]]):
        partition(folder, shard).parent.mkdir(parents=True)
        snapshots(*dates).to_parquet(partition(folder, shard))
    assert online.last_snapshot(folder) == pd.Timestamp("1998-06-27")


def test_a_feature_table_folder_without_partitions_is_named(tmp_path: Path) -> None:
    (tmp_path / "features").mkdir()
    with pytest.raises(FileNotFoundError, match="no shard=K partitions"):
        online.last_snapshot(tmp_path / "features")


def test_shards_write_the_real_online_store_sqlite_taking_turns() -> None:
    from mlstack.features import materialization  # lazy: the other tests need no Feast

    local = load_settings(CONFIG, ["features.shards=4"])
    online_store = materialization.online_config(local.feast)
    assert online_store["type"] == materialization.LOCKED_SQLITE
    assert online_store["path"] == str(local.feast.repo_path / "data" / "online_store.db")

    cluster = load_settings(
        CONFIG,
        ["features.shards=4", "feast.config_file=feature_store.cluster.yaml", "feast.redis=r:1"],
    )
    assert materialization.online_config(cluster.feast) == {
        "type": "redis",
        "connection_string": "r:1",
    }
