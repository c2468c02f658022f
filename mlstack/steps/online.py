"""Online materialization: the newest feature rows into the online store, by shard when
`features.shards` > 1.

With one shard it is Feast's materialization of the whole offline source
(`store.materialize`), as it always was. With more, the interval is planned once from the
real registry, each shard loads its own partition into the online store
(`materialization.materialize_shard`), and the interval is recorded in the registry once
every shard has loaded (`materialization.record`): a failed shard leaves the registry
where it was, so the next run loads the interval again.

Where the shards run. Locally, in the materialize step and in the materialize CronJob
(`mlstack materialize`), they are processes (`sharded.in_processes`, ``min(shards,
cores)`` at a time), all in `materialize`. The compiled pipeline (a cluster) plans in one
task (`plan_step`), fans out one pod per shard (`shard_step`, `dsl.ParallelFor`) and
records in a collecting task (`record_step`).
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from mlstack.config import Settings
from mlstack.features.definitions import EVENT_TIMESTAMP
from mlstack.features.shards import table_files
from mlstack.steps import configure_logging, step
from mlstack.steps.results import Materialized
from mlstack.steps.sharded import FEAST_MODULES, in_processes

log = logging.getLogger(__name__)


def last_snapshot(features: Path) -> pd.Timestamp:
    """The last snapshot date of the feature table at `features` (a file, or a dataset
    partitioned by shard, read one partition at a time)."""
    return max(
        pd.read_parquet(f, columns=[EVENT_TIMESTAMP])[EVENT_TIMESTAMP].max()
        for f in table_files(features)
    )


@dataclass(frozen=True)
class Plan:
    """What a sharded materialization loads, each interval as [view, start, end] (ISO,
    `materialization.Interval.to_list`), and the end its result reports (ISO)."""

    until: str
    intervals: list[list[str]]

    def to_json(self) -> str:
        return json.dumps({"until": self.until, "intervals": self.intervals})

    @classmethod
    def from_json(cls, text: str) -> Plan:
        data = json.loads(text)
        return cls(data["until"], data["intervals"])

    def loads_anything(self) -> bool:
        """Whether an interval starts no later than it ends (else the registry is past it)."""
        return any(
            datetime.fromisoformat(start) <= datetime.fromisoformat(end)
            for _, start, end in self.intervals
        )


def plan(settings: Settings, end: datetime, until: str) -> Plan:
    """The intervals up to `end`, from the real registry (`materialization.plan`)."""
    from mlstack.features import materialization, store  # lazy on purpose: Feast is slow

    intervals = materialization.plan(store.open_store(settings), settings.feast, end)
    return Plan(until, [i.to_list() for i in intervals])


def materialize_shard(settings: Settings, plan_json: str, shard: int) -> int:
    """Load `shard`'s partition of the offline source into the online store over the
    plan's intervals; returns the shard."""
    from mlstack.features import materialization  # lazy on purpose: Feast is slow to import

    planned = Plan.from_json(plan_json)
    if not planned.loads_anything():
        return shard
    intervals = [materialization.Interval.from_list(i) for i in planned.intervals]
    with tempfile.TemporaryDirectory() as tmp:
        materialization.materialize_shard(settings, shard, intervals, Path(tmp))
    return shard


def record(settings: Settings, plan_json: str, shards_done: list[int]) -> Materialized:
    """Record the plan's intervals in the registry once every shard has loaded them."""
    shards = settings.features.shards
    if sorted(shards_done) != list(range(shards)):
        raise ValueError(
            f"materialized shards {sorted(shards_done)}, expected 0..{shards - 1}: "
            "the online store is not complete; the registry is left as it was"
        )
    from mlstack.features import materialization, store  # lazy on purpose: Feast is slow

    planned = Plan.from_json(plan_json)
    intervals = [materialization.Interval.from_list(i) for i in planned.intervals]
    materialization.record(store.open_store(settings), intervals)
    return Materialized(materialized_until=planned.until)


def shard_worker(shard: int, settings_json: str, plan_json: str) -> int:
    configure_logging()
    return materialize_shard(Settings.from_json(settings_json), plan_json, shard)


def materialize(settings: Settings, end: datetime, until: str | None = None) -> Materialized:
    """Load the newest feature values up to `end` into the online store, incrementally;
    `until`: the end as the result reports it (default: `end`, ISO)."""
    from mlstack.features import store  # lazy on purpose: Feast is slow to import

    until = until or end.isoformat()
    shards = settings.features.shards
    if shards == 1:
        store.materialize(store.open_store(settings, offline=True), settings.feast, end)
        return Materialized(materialized_until=until)
    planned = plan(settings, end, until)
    if not planned.loads_anything():
        done = list(range(shards))  # the registry is past `end`: no shard has work
    else:
        done = in_processes(
            shard_worker, shards, settings.to_json(), planned.to_json(), preload=FEAST_MODULES
        )
    return record(settings, planned.to_json(), done)


# -- the steps of the compiled pipeline's shards (features.shards > 1, on a cluster) -------


@step
def plan_step(settings: Settings, features: Path) -> str:
    """What every shard loads: up to the feature table's last snapshot, from where the
    registry's last materialization ended (JSON)."""
    last = last_snapshot(features)
    return plan(settings, last.to_pydatetime(), last.isoformat()).to_json()


@step
def shard_step(settings: Settings, plan_json: str, shard: int) -> int:
    """One shard's rows into the online store; returns the shard."""
    return materialize_shard(settings, plan_json, shard)


@step
def record_step(settings: Settings, plan_json: str, shards_done: list[int]) -> Materialized:
    """The plan's intervals into the registry, once every shard has loaded."""
    return record(settings, plan_json, shards_done)
