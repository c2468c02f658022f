"""The SQLite online store the shards write (`LockedSqliteOnlineStore`): a shard makes its
rows with Feast's own write while another shard holds the lock, and writes them once it
gets it, ahead of the database (WAL); what it wrote reads back through Feast as written."""

from __future__ import annotations

import fcntl
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from feast import Entity, FeatureView, Field, FileSource, RepoConfig
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feast.types import Float64

from mlstack.features.materialization import (
    WRITE_CACHE_KIB,
    LockedSqliteOnlineStore,
    LockedSqliteOnlineStoreConfig,
)

pytestmark = pytest.mark.unit

CUSTOMERS = [f"c{i:04d}" for i in range(500)]
WHEN = datetime(1998, 6, 27, tzinfo=UTC)


def key(customer: str) -> EntityKey:
    return EntityKey(join_keys=["customer_id"], entity_values=[Value(string_val=customer)])


def a_store(
    folder: Path, **options: bool
) -> tuple[LockedSqliteOnlineStore, RepoConfig, FeatureView]:
    """A shard's locked SQLite store in `folder`, one feature view's table created by
    another; `options`: the online store's settings."""
    config = RepoConfig(
        project="demo",
        provider="local",
        registry=str(folder / "registry.db"),
        online_store=LockedSqliteOnlineStoreConfig(path=str(folder / "online.db"), **options),
        entity_key_serialization_version=3,
    )
    customer = Entity(name="customer", join_keys=["customer_id"])
    view = FeatureView(
        name="spend",
        entities=[customer],
        ttl=timedelta(days=7),
        schema=[Field(name="spend_30d", dtype=Float64)],
        source=FileSource(path=str(folder / "unused.parquet"), timestamp_field="ts"),
    )
    LockedSqliteOnlineStore().update(config, [], [view], [], [customer], partial=False)
    return LockedSqliteOnlineStore(), config, view  # a shard's own, as after `feast apply`


def stored_rows(database: Path) -> int:
    with sqlite3.connect(database) as conn:
        return conn.execute('SELECT COUNT(*) FROM "demo_spend"').fetchone()[0]


def test_a_shard_makes_its_rows_while_another_holds_the_lock(tmp_path: Path) -> None:
    writer, config, view = a_store(tmp_path)
    batch = [
        (key(customer), {"spend_30d": Value(double_val=i / 4)}, WHEN, None)
        for i, customer in enumerate(CUSTOMERS)
    ]
    made: list[int] = []
    database = tmp_path / "online.db"

    with (tmp_path / "online.db.lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another shard is writing
        shard = threading.Thread(
            target=writer.online_write_batch, args=(config, view, batch, made.append)
        )
        shard.start()
        deadline = time.monotonic() + 60
        while len(made) < len(batch) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(made) == len(batch)  # every row made...
        time.sleep(0.2)
        assert shard.is_alive() and stored_rows(database) == 0  # ...none written yet
    shard.join(timeout=60)

    assert not shard.is_alive()
    assert stored_rows(database) == len(CUSTOMERS)
    read = writer.online_read(config, view, [key(c) for c in reversed(CUSTOMERS)])
    assert [values["spend_30d"].double_val for _, values in read] == [
        i / 4 for i in reversed(range(len(CUSTOMERS)))
    ]
    assert {stamp for stamp, _ in read} == {WHEN}


@pytest.mark.parametrize("openai_compatible", [False, True])
def test_a_second_write_updates_the_rows_in_place(tmp_path: Path, openai_compatible: bool) -> None:
    # Feast's OpenAI-compatible layout has its write read the table first: it runs in turn
    writer, config, view = a_store(tmp_path, enable_openai_compatible_store=openai_compatible)
    for value in (1.0, 2.5):
        rows = [(key(c), {"spend_30d": Value(double_val=value)}, WHEN, None) for c in CUSTOMERS]
        writer.online_write_batch(config, view, rows, None)

    assert stored_rows(tmp_path / "online.db") == len(CUSTOMERS)
    read = writer.online_read(config, view, [key("c0007"), key("nobody")])
    assert read[0][1]["spend_30d"].double_val == 2.5
    assert read[1] == (None, None)


def test_a_shard_writes_ahead_with_a_page_cache_for_a_batch(tmp_path: Path) -> None:
    writer, config, view = a_store(tmp_path)
    rows = [(key(c), {"spend_30d": Value(double_val=1.0)}, WHEN, None) for c in CUSTOMERS]
    writer.online_write_batch(config, view, rows, None)

    cache = writer._get_conn(config).execute("PRAGMA cache_size").fetchone()[0]
    assert cache == -WRITE_CACHE_KIB  # KiB; SQLite's default is 2 MB
    with sqlite3.connect(tmp_path / "online.db") as reader:  # the mode is the database's
        assert reader.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
