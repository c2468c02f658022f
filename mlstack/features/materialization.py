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
"""

from __future__ import annotations

import fcntl
import logging
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
LOCKED_SQLITE = f"{__name__}.LockedSqliteOnlineStore"


class LockedSqliteOnlineStoreConfig(SqliteOnlineStoreConfig):
    """Feast's SQLite online store settings, for the store whose writes take turns."""

    type: Literal["mlstack.features.materialization.LockedSqliteOnlineStore"] = LOCKED_SQLITE


class LockedSqliteOnlineStore(SqliteOnlineStore):
    """Feast's SQLite online store, each write batch under an exclusive lock on
    ``<database>.lock``, so writers in several processes wait their turn without limit
    instead of failing after SQLite's busy timeout."""

    def online_write_batch(self, config: Any, table: Any, data: Any, progress: Any) -> None:
        database = Path(config.online_store.path)
        # a file of its own, not the database: closing another descriptor of the database
        # would drop the POSIX locks SQLite holds on it in this process
        with database.with_name(f"{database.name}.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            super().online_write_batch(config, table, data, progress)


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
