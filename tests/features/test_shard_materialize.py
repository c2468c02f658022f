"""Online materialization by shard: with 4 shards the online store answers every customer
exactly as with 1 shard, and the registry records the same interval, so the materialize
CronJob goes on from where the sharded run ended; a missing partition stops the run,
naming the shard, with nothing recorded."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from mlstack.cli import app
from mlstack.config import Settings, load_settings
from mlstack.features import store
from mlstack.features.definitions import ENTITY, EVENT_TIMESTAMP, FEATURE_VIEW, feature_names
from mlstack.features.shards import partition
from mlstack.steps import data
from tests.conftest import copy_project
from tests.support.steps import feature_table

pytestmark = [pytest.mark.component, pytest.mark.slow]

WEEK = pd.Timedelta(days=7)


def copy_to(root: Path, *overrides: str) -> list[str]:
    """A project copy of its own at `root` (its own registry and online store); the
    overrides that point settings at it, then `overrides`."""
    return [*copy_project(root), "cache=false", *overrides]


def project_in(root: Path, *overrides: str) -> Settings:
    return load_settings(root / "configs" / "cdnow.yaml", copy_to(root, *overrides))


def online_rows(settings: Settings) -> int:
    """Customers in the SQLite online store's table, counted in SQL."""
    database = settings.feast.repo_path / "data" / "online_store.db"
    with sqlite3.connect(database) as conn:
        table = f"mlstack_{FEATURE_VIEW}"
        return conn.execute(f'SELECT COUNT(DISTINCT entity_key) FROM "{table}"').fetchone()[0]


def intervals(settings: Settings) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    view = store.open_store(settings).get_feature_view(FEATURE_VIEW)
    return [(pd.Timestamp(s), pd.Timestamp(e)) for s, e in view.materialization_intervals]


def test_four_shards_serve_what_one_shard_serves(tmp_path: Path) -> None:
    one = project_in(tmp_path / "one")
    _, table = feature_table(one, tmp_path / "one" / "out")
    done = data.materialize_step(one, table)

    four = project_in(tmp_path / "four", "features.shards=4")
    _, table4 = feature_table(four, tmp_path / "four" / "out")
    done4 = data.materialize_step(four, table4)

    features = pd.read_parquet(table)
    last = features[EVENT_TIMESTAMP].max()
    customers = sorted(features[ENTITY].unique())
    asked = [*customers, "nobody"]
    served = store.online_features(store.open_store(one), asked, one)
    served4 = store.online_features(store.open_store(four), asked, four)
    pd.testing.assert_frame_equal(served4, served)
    assert done4 == done and done.materialized_until == last.isoformat()

    # what is served is each customer's row of the last snapshot (the TTL is one interval)
    latest = features[features[EVENT_TIMESTAMP] == last].set_index(ENTITY)
    names = feature_names(one)
    assert len(latest) > 900
    expected = latest.loc[served4[ENTITY].iloc[:-1], names].astype("float64")
    pd.testing.assert_frame_equal(
        served4[names].iloc[:-1].reset_index(drop=True), expected.reset_index(drop=True)
    )
    assert served4[names].iloc[-1].isna().all()  # an unknown customer
    assert online_rows(four) == online_rows(one) == len(latest)

    # the registry holds the one interval, as with one shard: one TTL up to the last snapshot
    utc = last.tz_localize("UTC") if last.tzinfo is None else last
    assert intervals(four) == intervals(one) == [(utc - WEEK, utc)]


def test_the_materialize_cronjob_goes_on_from_the_sharded_run(tmp_path: Path) -> None:
    root = tmp_path / "four"
    overrides = copy_to(root, "features.shards=4")
    config = root / "configs" / "cdnow.yaml"
    four = load_settings(config, overrides)
    _, table = feature_table(four, root / "out")
    data.materialize_step(four, table)
    before = intervals(four)
    later = before[0][1] + WEEK

    sets = [arg for override in overrides for arg in ("--set", override)]
    result = CliRunner().invoke(
        app, ["--config", str(config), *sets, "materialize", "--end", later.isoformat()]
    )

    assert result.exit_code == 0, result.output
    assert intervals(four) == [*before, (before[0][1], later)]  # from the last end on
    assert online_rows(four) == pd.read_parquet(table)[ENTITY].nunique()


def test_a_missing_partition_stops_the_run_naming_the_shard(tmp_path: Path) -> None:
    four = project_in(tmp_path, "features.shards=4")
    _, table = feature_table(four, tmp_path / "out")
    partition(store.source_path(four), 2).unlink()

    with pytest.raises(FileNotFoundError, match="no partition for shard 2"):
        data.materialize_step(four, table)
    assert intervals(four) == []  # nothing recorded: the next run loads the interval again
