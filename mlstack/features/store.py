"""Feast glue: write the offline source, apply the repo, fetch training and online features.

Training and serving both fetch through the versioned feature service named in
`settings.feast.feature_service`, declared in the feature repo (`feature_repo/repo.py`).

Where the state lives. The registry and the online store are services (a file and SQLite
locally; the object store and Redis on a cluster, from `feast.registry` and `feast.redis`).
The offline source is the feature table the features step writes. DuckDB reads it from a
local file (`feast.data_dir`); with a remote state store (`state_uri: s3://...`) that file
is a pod-local copy of `<state_uri>/feast/customer_features.parquet`, which the features
step uploads and every reader brings down first (`sync_offline_source`). DuckDB reads the
object store only through its httpfs extension, downloaded at run time, which an air-gapped
cluster cannot do; a copy by ETag costs one GET per new feature table.

With `features.shards` > 1 the offline source is a folder, a Parquet dataset partitioned by
shard (`customer_features/shard=K/part-0.parquet`, see `mlstack.features.shards`), which
DuckDB reads as one table; each partition is copied on its own, so a shard's reader brings
down only its own (`sync_offline_source(..., shard=K)`; `mlstack.features.partitions`).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml
from feast import Entity, FeatureService, FeatureStore, FeatureView, FileSource, Project
from feast.data_source import DataSource
from feast.feature_view import DUMMY_ENTITY
from feast.repo_config import RepoConfig
from feast.repo_contents import RepoContents
from feast.repo_operations import apply_total_with_repo_instance

from mlstack import storage
from mlstack.config import Settings
from mlstack.config.data import FeastSettings
from mlstack.features.definitions import (
    ENTITY,
    EVENT_TIMESTAMP,
    FEATURE_VIEW,
    SETTINGS_ENV,
    attribute_names,
    feature_list,
    feature_names,
    label_name,
)
from mlstack.features.shards import part_name, partition

log = logging.getLogger(__name__)

REPO_FILE = "repo.py"
_T = TypeVar("_T")
_ROW = "__mlstack_row"


SOURCE_FILE = "customer_features.parquet"
SOURCE_DIR = "customer_features"  # the partitioned source, when features.shards > 1


class FeatureStoreUnavailable(RuntimeError):
    """The registry or the offline data could not be reached."""


def repo_config(
    feast: FeastSettings,
    config_file: str | None = None,
    redis_timeout: float | None = None,
    replace: dict[str, object] | None = None,
) -> RepoConfig:
    """The Feast config file (`${VAR}`s expanded, as Feast does), with the registry and
    Redis connection from the settings where they are set; `redis_timeout` (seconds) bounds
    each Redis connect and read, unless the connection string sets its own. `replace`:
    top-level keys that replace the file's (and the settings')."""
    repo = feast.repo_path
    path = repo / (config_file or feast.config_file)
    raw = yaml.safe_load(os.path.expandvars(path.read_text()))
    if feast.registry:
        registry = raw.get("registry")
        if isinstance(registry, dict):
            raw["registry"] = {**registry, "path": feast.registry}
        else:
            raw["registry"] = feast.registry
    online = raw.get("online_store")
    if feast.redis and isinstance(online, dict):
        online = raw["online_store"] = {**online, "connection_string": feast.redis}
    if redis_timeout and isinstance(online, dict) and online.get("type") == "redis":
        # Feast passes key=value pairs of its connection string on to redis-py
        connection = str(online.get("connection_string", ""))
        for key in ("socket_timeout", "socket_connect_timeout"):
            if f"{key}=" not in connection:
                connection += f",{key}={redis_timeout:g}"
        online["connection_string"] = connection
    config = RepoConfig(**(raw | (replace or {})))
    config.repo_path = repo
    return config


def open_store(
    settings: Settings,
    config_file: str | None = None,
    offline: bool = False,
    redis_timeout: float | None = None,
) -> FeatureStore:
    """The feature store of the repo in the settings, configured by `config_file`.

    `config_file` is relative to the repo (default `settings.feast.config_file`), e.g.
    `feature_store.cluster.yaml` for the Redis online store. `offline=True` first brings the
    offline source from the state store (for training sets, materialization, batch scoring).
    """
    endpoint = settings.object_store.endpoint_url
    if endpoint:  # Feast's S3 registry reads its endpoint from here only
        os.environ.setdefault("FEAST_S3_ENDPOINT_URL", endpoint)
    store = FeatureStore(
        repo_path=str(settings.feast.repo_path),
        config=repo_config(settings.feast, config_file, redis_timeout),
    )
    if offline:
        sync_offline_source(settings, store)
    return store


def local_source(settings: Settings) -> Path:
    """The file (the folder, when sharded) DuckDB reads: the feature repo's FileSource path."""
    name = SOURCE_DIR if settings.features.shards > 1 else SOURCE_FILE
    return (settings.feast.data_dir or settings.feast.repo_path / "data") / name


def stored_source(settings: Settings) -> str:
    """Where the offline source is kept: in the state store when that is remote, else the
    local file itself."""
    if settings.state_uri and storage.is_remote(settings.state_uri):
        return settings.state("feast", local_source(settings).name)
    return str(local_source(settings))


def sync_offline_source(
    settings: Settings, store: FeatureStore | None = None, shard: int | None = None
) -> Path:
    """Bring the state store's offline source to the local file DuckDB reads (when it is
    remote and changed): the path the registry holds, when `store` is given (whichever pod
    applied it), else `feast.data_dir`'s. Sharded: every partition, or only `shard`'s.
    Raises `FeatureStoreUnavailable` when there is none yet."""
    local = local_source(settings)
    remote = stored_source(settings)
    if remote == str(local):
        return local
    if store is not None:
        try:
            local = Path(store.get_feature_view(FEATURE_VIEW).batch_source.path)
        except Exception as err:  # Feast raises its own not-found types, per registry kind
            raise FeatureStoreUnavailable(
                f"the Feast registry has no feature view {FEATURE_VIEW!r} ({err}): the "
                "training pipeline's features step applies it"
            ) from None
    shards = settings.features.shards
    parts = [""] if shards == 1 else [part_name(k) for k in range(shards)]
    try:
        for part in parts if shard is None or shards == 1 else [part_name(shard)]:
            source, target = f"{remote}/{part}".rstrip("/"), local / part if part else local
            if storage.download(source, target, settings.object_store):
                log.info("brought the offline source %s to %s", source, target)
    except FileNotFoundError:
        where = storage.describe(remote, settings.object_store)
        raise FeatureStoreUnavailable(
            f"no offline feature data at {where}: the training pipeline's features step writes it"
        ) from None
    return local


def load_declarations(settings: Settings) -> ModuleType:
    """The repo's declarations module, checked against the features these settings define."""
    path = settings.feast.repo_path / REPO_FILE
    spec = importlib.util.spec_from_file_location("mlstack_feature_repo", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"feature repo declarations not found: {path}")
    module = importlib.util.module_from_spec(spec)
    previous = os.environ.get(SETTINGS_ENV)
    os.environ[SETTINGS_ENV] = settings.to_json()
    try:
        spec.loader.exec_module(module)
    finally:
        if previous is None:
            del os.environ[SETTINGS_ENV]
        else:
            os.environ[SETTINGS_ENV] = previous
    _check_declarations(module, settings)
    return module


def _check_declarations(module: ModuleType, settings: Settings) -> None:
    view = _view_in(module)
    declared = [f.name for f in view.features]
    if declared != feature_names(settings):
        raise ValueError(
            f"the feature repo declares {declared} but the settings define "
            f"{feature_names(settings)}; point MLSTACK_CONFIG at the config the run uses"
        )
    services = [o.name for o in _objects(module, FeatureService)]
    if settings.feast.feature_service not in services:
        raise ValueError(
            f"the feature repo has no feature service {settings.feast.feature_service!r} "
            f"(it has {services})"
        )


def _objects(module: ModuleType, kind: type[_T]) -> list[_T]:
    found: list[_T] = []
    for obj in vars(module).values():
        if isinstance(obj, kind) and not any(obj is seen for seen in found):
            found.append(obj)
    return found


def _view_in(module: ModuleType) -> FeatureView:
    views = {v.name: v for v in _objects(module, FeatureView)}
    if FEATURE_VIEW not in views:
        raise ValueError(f"the feature repo has no feature view {FEATURE_VIEW!r}")
    return views[FEATURE_VIEW]


def declared_view(settings: Settings) -> FeatureView:
    """The customer feature view as the repo declares it (source, TTL, schema)."""
    return _view_in(load_declarations(settings))


def source_path(settings: Settings) -> Path:
    """Where the feature repo's source reads the feature table."""
    source = declared_view(settings).batch_source
    if not isinstance(source, FileSource):
        raise TypeError(f"expected a FileSource, got {type(source).__name__}")
    return Path(source.path)


def source_schema(settings: Settings) -> pa.Schema:
    """The Arrow schema of the offline source: key, UTC timestamp, features by kind, then
    the categorical attributes."""
    kinds = {"int": pa.int64(), "float": pa.float64()}
    return pa.schema(
        [
            pa.field(ENTITY, pa.string()),
            # Microseconds: DuckDB reads nanosecond Parquet timestamps as TIMESTAMPTZ_NS,
            # which Feast's materialization query cannot cast to TIMESTAMP.
            pa.field(EVENT_TIMESTAMP, pa.timestamp("us", tz="UTC")),
            *(pa.field(f.name, kinds[f.kind]) for f in feature_list(settings)),
            # not declared to Feast (no model reads them): kept for the drift checks
            *(pa.field(name, pa.string()) for name in attribute_names(settings.source)),
        ]
    )


SOURCE_BATCH_ROWS = 1 << 16  # rows cast and written at a time from a feature table file


def write_source(
    features: pd.DataFrame | Path, settings: Settings, shard: int | None = None
) -> Path:
    """Write the feature table (a frame, or a Parquet file read a batch at a time) as the
    Feast source (`shard`'s rows: its partition), replacing it atomically, and keep it in
    the state store when remote. Naive timestamps are UTC; columns cast to `source_schema`."""
    schema = source_schema(settings)
    file = None if isinstance(features, pd.DataFrame) else pq.ParquetFile(features)
    missing = sorted(set(schema.names) - set(file.schema_arrow.names if file else features))
    if missing:
        raise ValueError(f"feature table lacks columns {missing}")
    tables = (
        (pa.Table.from_batches([b]) for b in file.iter_batches(SOURCE_BATCH_ROWS))
        if file
        else [pa.Table.from_pandas(features[schema.names], preserve_index=False)]
    )
    target, remote = source_path(settings), stored_source(settings)
    if shard is not None:
        target, remote = partition(target, shard), f"{remote}/{part_name(shard)}"
    rows = 0
    with storage.replacing(target) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for table in tables:
            writer.write_table(table.select(schema.names).cast(schema))
            rows += table.num_rows
    log.info("wrote %d feature rows to %s", rows, target)
    if remote != str(target):
        storage.upload(target, remote, settings.object_store)
        with suppress(OSError):  # the local copy is current: no download on the next read
            storage.download(remote, target, settings.object_store)
        log.info("kept the offline source in %s", storage.describe(remote, settings.object_store))
    return target


def apply(
    settings: Settings, store: FeatureStore | None = None, module: ModuleType | None = None
) -> FeatureStore:
    """Register the repo's declarations (as `feast apply` does) and return the store;
    `store` and `module` (from `load_declarations`): another store, other declarations."""
    module = module or load_declarations(settings)
    store = store or open_store(settings)
    contents = RepoContents(
        projects=[Project(name=store.project)],
        data_sources=_objects(module, DataSource),
        entities=[*_objects(module, Entity), DUMMY_ENTITY],
        feature_views=_objects(module, FeatureView),
        feature_services=_objects(module, FeatureService),
        on_demand_feature_views=[],
        stream_feature_views=[],
        label_views=[],
        permissions=[],
    )
    apply_total_with_repo_instance(
        store, store.project, store.registry, contents, skip_source_validation=False
    )
    return store


def training_set(
    store: FeatureStore, entity_rows: pd.DataFrame, settings: Settings
) -> pd.DataFrame:
    """Point-in-time features for each entity row: entity columns, label, then features.

    `entity_rows` has `customer_id`, `snapshot_date` (the as-of time) and the label; each
    row gets the latest feature values at or before its `snapshot_date` within the feature
    view's TTL, as float64 (NaN if there are none). The entity columns and the label are
    those of `entity_rows`, in its row order, with a fresh index.
    """
    keys = entity_rows[[ENTITY, EVENT_TIMESTAMP, label_name(settings.features)]].reset_index(
        drop=True
    )
    result = historical_features(store, keys[[ENTITY, EVENT_TIMESTAMP]], settings)
    for position, column in enumerate(keys.columns):
        result.insert(position, column, keys[column])
    return result


def historical_features(
    store: FeatureStore, keys: pd.DataFrame, settings: Settings
) -> pd.DataFrame:
    """The feature service's features as of each row of `keys` (`customer_id`,
    `snapshot_date`), in feature order as float64, one row per key in the keys' order."""
    # Only the join keys and a row number go through Feast: every extra column would be
    # carried through its join and window, and the caller's own columns come back for free
    # once the rows are in their original order again.
    entity_df = keys.assign(**{_ROW: np.arange(len(keys), dtype=np.int64)})
    service = store.get_feature_service(settings.feast.feature_service)
    joined = store.get_historical_features(entity_df=entity_df, features=service).to_arrow()
    if joined.num_rows != len(keys):
        raise RuntimeError(f"Feast returned {joined.num_rows} rows for {len(keys)} entity rows")
    return _in_entity_order(joined, feature_names(settings))


def _in_entity_order(joined: pa.Table, names: list[str]) -> pd.DataFrame:
    """Feast's feature columns, back in entity row order, as one float64 block.

    Training and serving hand the model float64 features, NaN where missing, whatever the
    kind: Feast returns int64 or float64 depending on whether a value is missing.
    """
    order = np.empty(joined.num_rows, dtype=np.int64)
    order[joined[_ROW].to_numpy()] = np.arange(joined.num_rows)
    values = np.empty((joined.num_rows, len(names)), dtype=np.float64, order="F")
    for j, name in enumerate(names):
        np.take(pc.cast(joined[name], pa.float64()).to_numpy(), order, out=values[:, j])
    return pd.DataFrame(values, columns=names, copy=False)


def materialize(store: FeatureStore, feast: FeastSettings, end: datetime) -> None:
    """Load the latest feature values up to `end` into the online store.

    The first run loads one TTL before `end` (Feast itself would start one TTL before
    *now*, which misses a historical `end`); later runs continue from the last end.
    """
    end = end if end.tzinfo else end.replace(tzinfo=UTC)
    service = store.get_feature_service(feast.feature_service)
    for projection in service.feature_view_projections:
        view = store.get_feature_view(projection.name)
        if view.most_recent_end_time is None:
            log.info("first materialization of %s: %s to %s", view.name, end - view.ttl, end)
            store.materialize(start_date=end - view.ttl, end_date=end, feature_views=[view.name])
        else:
            log.info("materializing %s from %s to %s", view.name, view.most_recent_end_time, end)
            store.materialize_incremental(end_date=end, feature_views=[view.name])


def online_features(
    store: FeatureStore, customer_ids: list[str], settings: Settings
) -> pd.DataFrame:
    """The latest online features of each customer, as float64 (NaN if unknown), in order."""
    names = feature_names(settings)
    if not customer_ids:  # Feast rejects an empty lookup
        empty = {ENTITY: pd.Series(dtype=object)}
        return pd.DataFrame(empty | {name: pd.Series(dtype="float64") for name in names})
    service = store.get_feature_service(settings.feast.feature_service)
    response = store.get_online_features(features=service, entity_rows={ENTITY: customer_ids})
    frame = response.to_df()
    return pd.concat([frame[[ENTITY]], frame[names].astype("float64")], axis=1)
