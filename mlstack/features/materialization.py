"""Online materialization by customer shard (`features.shards` > 1).

Each shard loads the latest feature rows of its own customers into the real online store
(SQLite locally, Redis on a cluster), reading only its partition of the offline source, so
its memory is bounded by one shard. It runs Feast's own materialization
(`FeatureStore.materialize`) on a store narrowed to the partition (the declarations and
scratch registry of `partitions.shard_store`) but configured with the real online store:
the project and the feature view carry the real names, so the rows land under the keys the
served store reads (SQLite: the table `<project>_<view>`; Redis: the entity key with the
project, one field per view and feature).

Which interval is loaded is the real registry's business, as with one shard
(`store.materialize`): the first time, one TTL before the end; after that, from the last
end on. `plan` reads it once, before the shards run, and every shard loads the same
interval. The shards' scratch registries are thrown away; once every shard has loaded,
`record` adds the interval to the real registry, so the next run (the pipeline's or the
materialize CronJob's) goes on from its end.

SQLite takes one writer at a time, and a writer kept waiting longer than its busy timeout
(Python's 5 s, which Feast keeps) fails with "database is locked". The shards' SQLite store
(`LockedSqliteOnlineStore`, a Feast online store type) writes each batch holding an
exclusive lock on a file beside the database: shard processes read and convert their rows
in parallel and write in turn. Redis takes concurrent writers as they come.

The SQL is the part that takes turns, so it is kept short as the database grows (at 100x
CDNOW's customers it holds 57 million rows, every shard's customers spread over all of
its two indexes): the rows are made before the lock is taken, a batch goes in as one
`executemany`, the database writes ahead (WAL, which the database keeps: lookups by the
model server then do not wait for a write either), and the shard's connection has a page
cache big enough for the pages one batch dirties.
"""

from __future__ import annotations

import fcntl
import itertools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from feast import FeatureStore
from feast.infra.online_stores.sqlite import SqliteOnlineStore, SqliteOnlineStoreConfig

from mlstack.config import Settings
from mlstack.config.data import FeastSettings
from mlstack.features import partitions, store

log = logging.getLogger(__name__)

# Rows per online write: bounds the Feast value objects a shard holds at once (the whole
# shard in one batch otherwise) and how long one shard holds the SQLite lock.
WRITE_BATCH = 10_000
# SQLite's page cache on a shard's connection, in KiB: room for the pages one write batch
# dirties (two index entries a row). With SQLite's default of 2 MB, once the database has
# outgrown it, a batch spills dirty pages mid-transaction, and more of them the larger the
# database is. It is used only as far as a batch needs it.
WRITE_CACHE_KIB = 2 * 1024 * 1024
LOCKED_SQLITE = f"{__name__}.LockedSqliteOnlineStore"


class LockedSqliteOnlineStoreConfig(SqliteOnlineStoreConfig):
    """Feast's SQLite online store settings, for the store whose writes take turns."""

    type: Literal["mlstack.features.materialization.LockedSqliteOnlineStore"] = LOCKED_SQLITE


class _Statements:
    """Stands in for the SQLite connection while Feast's write makes a batch's rows: keeps
    each statement and its parameters, in order, instead of running them."""

    def __init__(self) -> None:
        self.made: list[tuple[str, tuple[Any, ...]]] = []

    def __enter__(self) -> _Statements:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def execute(self, sql: str, parameters: tuple[Any, ...] = ()) -> None:
        self.made.append((sql, parameters))

    def runs(self) -> Iterator[tuple[str, list[tuple[Any, ...]]]]:
        """Each run of one statement, with its parameters in order."""
        for sql, run in itertools.groupby(self.made, key=lambda made: made[0]):
            yield sql, [parameters for _, parameters in run]


class LockedSqliteOnlineStore(SqliteOnlineStore):
    """Feast's SQLite online store, each write batch under an exclusive lock on
    ``<database>.lock``, so writers in several processes wait their turn without limit
    instead of failing after SQLite's busy timeout.

    Feast's own write makes the batch's rows (entity keys and values serialized as Feast
    stores them) outside the lock, into `_Statements`; under the lock the rows go into the
    database in one transaction. So the shards make their rows side by side, and only the
    SQL takes turns."""

    def online_write_batch(self, config: Any, table: Any, data: Any, progress: Any) -> None:
        connection = self._get_conn(config)
        if getattr(config.online_store, "enable_openai_compatible_store", False):
            # Feast's write then reads the table's columns on the connection first: it
            # runs whole, in turn
            with self._turn(config, connection):
                super().online_write_batch(config, table, data, progress)
            return
        statements = _Statements()
        self._conn = statements  # type: ignore[assignment]  # Feast's write runs on it
        try:
            super().online_write_batch(config, table, data, progress)
        finally:
            self._conn = connection
        with self._turn(config, connection), connection:
            for sql, rows in statements.runs():
                connection.executemany(sql, rows)

    @staticmethod
    @contextmanager
    def _turn(config: Any, connection: Any) -> Iterator[None]:
        """This process's turn at the database: an exclusive lock on ``<database>.lock``."""
        database = Path(config.online_store.path)
        # a file of its own, not the database: closing another descriptor of the database
        # would drop the POSIX locks SQLite holds on it in this process
        with database.with_name(f"{database.name}.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            connection.execute("PRAGMA journal_mode = WAL")  # kept by the database
            yield

    def _get_conn(self, config: Any) -> Any:
        opened = self._conn is None
        conn = super()._get_conn(config)
        if opened:
            conn.execute(f"PRAGMA cache_size = -{WRITE_CACHE_KIB}")
        return conn


@dataclass(frozen=True)
class Interval:
    """What one feature view's materialization loads: its rows from `start` to `end`."""

    view: str
    start: datetime
    end: datetime

    @property
    def empty(self) -> bool:
        """Whether the registry is already past `end` (nothing newer to load)."""
        return self.start > self.end

    def to_list(self) -> list[str]:
        return [self.view, self.start.isoformat(), self.end.isoformat()]

    @classmethod
    def from_list(cls, fields: list[str]) -> Interval:
        view, start, end = fields
        return cls(view, datetime.fromisoformat(start), datetime.fromisoformat(end))


def plan(feast_store: FeatureStore, feast: FeastSettings, end: datetime) -> list[Interval]:
    """The interval of each view of the feature service that a materialization up to `end`
    loads, from the registry of `feast_store`: as `store.materialize`, one TTL before `end`
    the first time, else from the last materialization's end."""
    end = end if end.tzinfo else end.replace(tzinfo=UTC)
    service = feast_store.get_feature_service(feast.feature_service)
    intervals = []
    for projection in service.feature_view_projections:
        view = feast_store.get_feature_view(projection.name)
        start = view.most_recent_end_time or end - view.ttl
        start = start if start.tzinfo else start.replace(tzinfo=UTC)
        intervals.append(Interval(view.name, start, end))
    return intervals


def online_config(feast: FeastSettings) -> Any:
    """The real online store's Feast settings, as a shard writes to it: SQLite through
    `LockedSqliteOnlineStore` (the same database, by its absolute path), others as they are."""
    config = store.repo_config(feast)
    online = config.online_store
    if not isinstance(online, SqliteOnlineStoreConfig):
        return config.online_config
    path = Path(online.path)
    database = path if path.is_absolute() else feast.repo_path / path
    return online.model_dump() | {"type": LOCKED_SQLITE, "path": str(database.resolve())}


def materialize_shard(
    settings: Settings, shard: int, intervals: list[Interval], workdir: Path
) -> None:
    """Load partition `shard`'s rows of each interval into the real online store; `workdir`
    holds the shard's scratch registry (the caller removes it)."""
    narrowed = partitions.shard_store(settings, shard, workdir)
    config = store.repo_config(
        settings.feast,
        replace={
            "registry": str(narrowed.config.registry.path),
            "online_store": online_config(settings.feast),
            "materialization": {"online_write_batch_size": WRITE_BATCH},
        },
    )
    writer = FeatureStore(repo_path=str(settings.feast.repo_path), config=config)
    for interval in intervals:
        if interval.empty:
            continue
        log.info(
            "shard %d: materializing %s from %s to %s",
            shard,
            interval.view,
            interval.start,
            interval.end,
        )
        writer.materialize(
            start_date=interval.start, end_date=interval.end, feature_views=[interval.view]
        )


def record(feast_store: FeatureStore, intervals: list[Interval]) -> None:
    """Add each loaded interval to the registry of `feast_store` (the real one), as Feast's
    own materialization does once it has written, so the next one starts at its end."""
    for interval in intervals:
        if interval.empty:
            log.warning(
                "%s is materialized up to %s already, past %s: nothing newer was loaded",
                interval.view,
                interval.start,
                interval.end,
            )
            continue
        view = feast_store.get_feature_view(interval.view)
        feast_store.registry.apply_materialization(
            view, feast_store.project, interval.start, interval.end
        )
