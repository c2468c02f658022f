"""The cluster Feast configuration against a real Redis server on loopback."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis

from mlstack.config import Settings
from mlstack.features import partitions
from mlstack.features import store as feature_store
from mlstack.features.definitions import (
    ENTITY,
    EVENT_TIMESTAMP,
    FEATURE_VIEW,
    feature_list,
    feature_names,
)
from mlstack.features.shards import partition, shard_of
from mlstack.steps import online
from tests.conftest import free_port

pytestmark = pytest.mark.integration

CLUSTER_CONFIG = "feature_store.cluster.yaml"
START_TIMEOUT = 10.0
WEEK = pd.Timedelta(days=7)
SNAPSHOTS = [pd.Timestamp("1998-06-12", tz="UTC") + i * WEEK for i in range(3)]


@pytest.fixture
def redis_server() -> Iterator[str]:
    """A throwaway redis-server on a free loopback port; yields Feast's connection string."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: apt-get install -y redis-server")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    output = process.communicate()[0].decode(errors="replace")
                    pytest.fail(f"redis-server did not answer PING on port {port}:\n{output}")
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        client.close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def cluster_project(
    project: Callable[..., Settings],
    redis_server: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., Settings]:
    """Settings in the cluster's Feast configuration, with more `--set`-style overrides."""
    shared = tmp_path / "shared-volume"
    monkeypatch.setenv("MLSTACK_FEAST_REDIS_CONNECTION", redis_server)
    monkeypatch.setenv("MLSTACK_FEAST_REGISTRY", str(shared / "registry.db"))
    monkeypatch.delenv("MLSTACK_CONFIG", raising=False)
    cluster = [f"feast.config_file={CLUSTER_CONFIG}", f"feast.data_dir={shared / 'offline'}"]
    return lambda *overrides: project(*cluster, *overrides)


@pytest.fixture
def cluster_settings(cluster_project: Callable[..., Settings]) -> Settings:
    return cluster_project()


def feature_table(settings: Settings, customers: list[str]) -> pd.DataFrame:
    """Every customer at every snapshot; values grow with the snapshot."""
    keys = pd.MultiIndex.from_product([customers, SNAPSHOTS], names=[ENTITY, EVENT_TIMESTAMP])
    table = keys.to_frame(index=False)
    base = np.arange(len(table), dtype=np.int64)
    for i, feature in enumerate(feature_list(settings)):
        table[feature.name] = base + i if feature.kind == "int" else base + i + 0.25
    return table


def test_materialize_to_redis_and_read_back(cluster_settings: Settings, redis_server: str):
    settings = cluster_settings
    customers = [f"{i:05d}" for i in range(1, 51)]
    table = feature_table(settings, customers)

    path = feature_store.write_source(table, settings)
    store = feature_store.apply(settings)
    feature_store.materialize(store, settings.feast, SNAPSHOTS[-1].to_pydatetime())
    online = feature_store.online_features(store, [*customers[:3], "nobody"], settings)

    assert path.is_relative_to(settings.root / "shared-volume" / "offline")
    assert (settings.root / "shared-volume" / "registry.db").is_file()
    assert store.config.online_store.type == "redis"
    host, port = redis_server.split(":")
    assert redis.Redis(host=host, port=int(port)).dbsize() == len(customers)

    latest = table[table[EVENT_TIMESTAMP] == SNAPSHOTS[-1]].set_index(ENTITY)
    expected = latest.loc[customers[:3], feature_names(settings)].astype("float64")
    assert online[ENTITY].tolist() == [*customers[:3], "nobody"]
    np.testing.assert_array_equal(online[feature_names(settings)].iloc[:3], expected)
    assert online[feature_names(settings)].iloc[3].isna().all()


def test_four_shard_processes_materialize_to_redis_as_one_store(
    cluster_project: Callable[..., Settings], redis_server: str, tmp_path: Path
):
    settings = cluster_project("features.shards=4")
    customers = [f"{i:05d}" for i in range(1, 201)]
    table = feature_table(settings, customers)
    folder, shard = tmp_path / "features", shard_of(table[ENTITY], 4)
    for k in range(4):
        partition(folder, k).parent.mkdir(parents=True)
        table[shard == k].to_parquet(partition(folder, k), index=False)
    partitions.publish(folder, settings)
    feature_store.apply(settings)

    online.materialize(settings, SNAPSHOTS[-1].to_pydatetime())

    store = feature_store.open_store(settings)
    served = feature_store.online_features(store, customers, settings)
    host, port = redis_server.split(":")
    assert redis.Redis(host=host, port=int(port)).dbsize() == len(customers)  # one key each
    latest = table[table[EVENT_TIMESTAMP] == SNAPSHOTS[-1]].set_index(ENTITY)
    names = feature_names(settings)
    np.testing.assert_array_equal(served[names], latest.loc[customers, names].astype("float64"))
    view = store.get_feature_view(FEATURE_VIEW)
    assert view.materialization_intervals == [(SNAPSHOTS[-1] - WEEK, SNAPSHOTS[-1])]
