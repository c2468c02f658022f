"""The Feast glue on a small crafted feature table, in a throwaway copy of the feature repo."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from feast import FeatureStore

from mlstack.config import Settings
from mlstack.features import store as feature_store
from mlstack.features.definitions import (
    ENTITY,
    EVENT_TIMESTAMP,
    FEATURE_VIEW,
    feature_list,
    feature_names,
    label_name,
)

pytestmark = pytest.mark.component

WEEK = pd.Timedelta(days=7)
DAY = pd.Timedelta(days=1)
S0 = pd.Timestamp("1997-03-03", tz="UTC")  # the first weekly snapshot
SNAPSHOTS = [S0, S0 + WEEK, S0 + 2 * WEEK]
# customer -> snapshots it has a feature row at ("b" joins a week late)
ROWS = {"a": SNAPSHOTS, "b": SNAPSHOTS[1:]}


def value(customer: str, snapshot: pd.Timestamp, position: int) -> float:
    """A feature value that tells which customer, snapshot and feature it came from."""
    week = (snapshot - S0) // WEEK
    return 1000 * (ord(customer) - ord("a") + 1) + 10 * week + position


def feature_table(settings: Settings, rows: dict[str, list[pd.Timestamp]]) -> pd.DataFrame:
    records = []
    for customer, snapshots in rows.items():
        for snapshot in snapshots:
            record: dict[str, object] = {ENTITY: customer, EVENT_TIMESTAMP: snapshot}
            for i, feature in enumerate(feature_list(settings)):
                v = value(customer, snapshot, i)
                record[feature.name] = int(v) if feature.kind == "int" else v + 0.5
            records.append(record)
    return pd.DataFrame.from_records(records)


def expected(settings: Settings, customer: str, snapshot: pd.Timestamp | None) -> list[float]:
    if snapshot is None:
        return [math.nan] * len(feature_list(settings))
    return [
        value(customer, snapshot, i) + (0.5 if f.kind == "float" else 0)
        for i, f in enumerate(feature_list(settings))
    ]


def assert_rows(frame: pd.DataFrame, settings: Settings, wanted: list[tuple]) -> None:
    """Each row of frame has the float64 features of (customer, snapshot) in `wanted`."""
    features = frame[feature_names(settings)]
    assert set(features.dtypes) == {np.dtype("float64")}
    got = features.to_numpy().tolist()
    want = [expected(settings, c, s) for c, s in wanted]
    assert len(got) == len(want)
    for row, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == pytest.approx(w, nan_ok=True), f"row {row}: {wanted[row]}"


@pytest.fixture(autouse=True)
def _repo_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLSTACK_CONFIG", raising=False)


@pytest.fixture
def settings(project: Callable[..., Settings]) -> Settings:
    return project()


@pytest.fixture
def store(settings: Settings) -> FeatureStore:
    feature_store.write_source(feature_table(settings, ROWS), settings)
    return feature_store.apply(settings)


def test_write_source_replaces_the_table_in_the_repo(settings: Settings) -> None:
    path = feature_store.write_source(feature_table(settings, ROWS), settings)
    assert path == settings.feast.repo_path / "data" / "customer_features.parquet"
    smaller = feature_table(settings, {"a": SNAPSHOTS[:1]})
    feature_store.write_source(smaller, settings)
    assert len(pd.read_parquet(path)) == 1
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    assert path.stat().st_mode & 0o044 == 0o044  # readable by the other services


def test_write_source_rejects_a_table_without_all_features(settings: Settings, tmp_path) -> None:
    table = feature_table(settings, ROWS).drop(columns=feature_names(settings)[0])
    with pytest.raises(ValueError, match=feature_names(settings)[0]):
        feature_store.write_source(table, settings)
    table.to_parquet(tmp_path / "features.parquet", index=False)
    with pytest.raises(ValueError, match=feature_names(settings)[0]):
        feature_store.write_source(tmp_path / "features.parquet", settings)


def test_a_feature_table_file_is_written_batch_by_batch_as_its_frame(
    settings: Settings, tmp_path, monkeypatch
) -> None:
    frame = feature_table(settings, ROWS)  # naive timestamps, as the features step writes
    from_frame = pd.read_parquet(feature_store.write_source(frame, settings))
    frame.to_parquet(tmp_path / "features.parquet", index=False)
    monkeypatch.setattr(feature_store, "SOURCE_BATCH_ROWS", 2)  # many batches
    path = feature_store.write_source(tmp_path / "features.parquet", settings)
    assert pq.ParquetFile(path).schema_arrow.equals(feature_store.source_schema(settings))
    pd.testing.assert_frame_equal(pd.read_parquet(path), from_frame)
    assert len(from_frame) == len(frame) > 2


def test_feature_service_lists_exactly_the_features(store: FeatureStore, settings: Settings):
    service = store.get_feature_service(settings.feast.feature_service)
    assert [p.name for p in service.feature_view_projections] == [FEATURE_VIEW]
    assert [f.name for f in service.feature_view_projections[0].features] == feature_names(settings)
    assert store.get_feature_view(FEATURE_VIEW).entities == ["customer"]


def test_apply_works_before_the_source_exists(settings: Settings) -> None:
    store = feature_store.apply(settings)
    assert not feature_store.source_path(settings).exists()
    assert store.get_feature_service(settings.feast.feature_service).name


def test_apply_twice_changes_nothing(store: FeatureStore, settings: Settings) -> None:
    again = feature_store.apply(settings)
    assert [v.name for v in again.list_feature_views()] == [FEATURE_VIEW]
    assert [s.name for s in again.list_feature_services()] == [settings.feast.feature_service]


def test_the_repo_declares_the_features_of_the_run_settings(
    project: Callable[..., Settings],
) -> None:
    settings = project("features.windows_days=[30]")  # an override the config file lacks
    store = feature_store.apply(settings)
    service = store.get_feature_service(settings.feast.feature_service)
    declared = [f.name for view in service.feature_view_projections for f in view.features]
    assert declared == feature_names(settings)
    assert "orders_90d" not in declared


def test_training_set_is_point_in_time(store: FeatureStore, settings: Settings) -> None:
    label = label_name(settings.features)
    s0, s1, s2 = SNAPSHOTS
    cases = [  # (customer, as-of time) -> the snapshot whose values it must get
        (("a", s1), s1),  # on a snapshot: that snapshot
        (("a", s1 + 3 * DAY), s1),  # between snapshots: the earlier one, never the later
        (("a", s2 - pd.Timedelta(seconds=1)), s1),  # just before the next snapshot
        (("a", s0 - DAY), None),  # before any feature row
        (("b", s0), None),  # before this customer's first row, though "a" has one
        (("b", s2 + 3 * DAY), s2),
        (("a", s2 + WEEK + DAY), None),  # older than the TTL (one snapshot interval)
        (("zz", s1), None),  # unknown customer
        (("a", s0), s0),
    ]
    rows = pd.DataFrame(
        {
            ENTITY: [c for (c, _), _ in cases],
            EVENT_TIMESTAMP: [t for (_, t), _ in cases],
            label: range(len(cases)),
        },
        index=range(100, 100 + len(cases)),
    )
    result = feature_store.training_set(store, rows, settings)

    assert list(result.columns) == [ENTITY, EVENT_TIMESTAMP, label, *feature_names(settings)]
    pd.testing.assert_frame_equal(
        result[[ENTITY, EVENT_TIMESTAMP, label]], rows.reset_index(drop=True)
    )
    assert_rows(result, settings, [(c, snap) for (c, _), snap in cases])


def test_training_set_of_no_rows_has_the_columns(store: FeatureStore, settings: Settings):
    rows = pd.DataFrame(
        {
            ENTITY: pd.Series([], dtype="string"),
            EVENT_TIMESTAMP: pd.Series([], dtype="datetime64[ns, UTC]"),
            label_name(settings.features): pd.Series([], dtype="int64"),
        }
    )
    result = feature_store.training_set(store, rows, settings)
    assert result.empty
    assert list(result.columns) == [*rows.columns, *feature_names(settings)]


def test_materialize_then_online_features_are_the_latest(
    store: FeatureStore, settings: Settings
) -> None:
    feature_store.materialize(store, settings.feast, SNAPSHOTS[-1].to_pydatetime())
    online = feature_store.online_features(store, ["b", "zz", "a"], settings)
    assert list(online.columns) == [ENTITY, *feature_names(settings)]
    assert online[ENTITY].tolist() == ["b", "zz", "a"]
    assert_rows(online, settings, [("b", SNAPSHOTS[-1]), ("zz", None), ("a", SNAPSHOTS[-1])])


def test_online_features_of_no_customers_has_the_columns(store: FeatureStore, settings):
    online = feature_store.online_features(store, [], settings)
    assert online.empty
    assert list(online.columns) == [ENTITY, *feature_names(settings)]
    assert set(online[feature_names(settings)].dtypes) == {np.dtype("float64")}


def test_first_materialization_loads_one_ttl_before_the_end(settings: Settings) -> None:
    s0, _, s2 = SNAPSHOTS
    rows = {"a": SNAPSHOTS, "c": [s0]}  # "c" was last seen two snapshots before the end
    feature_store.write_source(feature_table(settings, rows), settings)
    store = feature_store.apply(settings)

    feature_store.materialize(store, settings.feast, s2.to_pydatetime())

    online = feature_store.online_features(store, ["a", "c"], settings)
    assert_rows(online, settings, [("a", s2), ("c", None)])


def test_incremental_materialization_picks_up_a_newer_snapshot(
    store: FeatureStore, settings: Settings
) -> None:
    feature_store.materialize(store, settings.feast, SNAPSHOTS[-1].to_pydatetime())
    newer = SNAPSHOTS[-1] + WEEK
    rows = {"a": [*SNAPSHOTS, newer], "b": SNAPSHOTS[1:]}  # "b" has no newer row
    feature_store.write_source(feature_table(settings, rows), settings)

    feature_store.materialize(store, settings.feast, newer.to_pydatetime())

    online = feature_store.online_features(store, ["a", "b"], settings)
    assert_rows(online, settings, [("a", newer), ("b", SNAPSHOTS[-1])])
    view = store.get_feature_view(FEATURE_VIEW)
    assert view.most_recent_end_time == newer.to_pydatetime()
