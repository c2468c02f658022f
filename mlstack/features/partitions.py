"""Feast over the offline source partitioned by shard (`features.shards` > 1).

The feature repo's FileSource is then the folder ``<data_dir>/customer_features`` (Parquet
format declared), one ``shard=K/part-0.parquet`` per shard: Feast's DuckDB offline store
reads a FileSource path with DuckDB's ``read_parquet``, which takes a folder of Parquet
files as one table, hive partitions included (a `shard` column the feature view does not
declare), and reads it lazily, so materialization and the registry see one source.

A shard's training set joins that shard's entity rows against that shard's partition only:
`shard_store` is a Feast store of its own (a registry and an online store in a scratch
folder) holding the repo's declarations with the source narrowed to the partition, so
Feast's point-in-time join reads one partition, not the whole dataset, and the real
registry and online store are not touched.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from feast import FeatureStore, FeatureView, FileSource

from mlstack.config import Settings
from mlstack.features import store
from mlstack.features.shards import SHARD_COLUMN, partition

log = logging.getLogger(__name__)


def publish(features: Path, settings: Settings) -> Path:
    """Write each shard's feature table (the partitioned dataset at `features`) as its
    partition of the offline source, a batch at a time, and remove partitions
    of shards the settings no longer have. Returns the source folder."""
    shards = settings.features.shards
    for shard in range(shards):
        store.write_source(partition(features, shard), settings, shard=shard)
    root = store.source_path(settings)
    for stale in root.glob(f"{SHARD_COLUMN}=*"):
        if stale.name not in {f"{SHARD_COLUMN}={k}" for k in range(shards)}:
            shutil.rmtree(stale)
            log.info("removed the offline source's stale partition %s", stale)
    return root


def shard_store(settings: Settings, shard: int, workdir: Path) -> FeatureStore:
    """A Feast store whose only source is partition `shard` of the offline source (brought
    from the state store when that is remote); its registry and online store live in
    `workdir`, which the caller removes."""
    shards = settings.features.shards
    if shards < 2:
        raise ValueError("a shard store needs features.shards > 1")
    if not 0 <= shard < shards:
        raise ValueError(f"no shard {shard}: features.shards={shards} makes 0..{shards - 1}")
    root = store.sync_offline_source(settings, shard=shard)
    if not partition(root, shard).is_file():
        raise FileNotFoundError(
            f"the offline source has no partition for shard {shard}: "
            f"{partition(root, shard)} is missing; the features step writes one per shard "
            f"(features.shards={shards})"
        )
    module = store.load_declarations(settings)
    path = str(partition(root, shard))
    for obj in vars(module).values():  # the source, and the views' copies of it
        source = obj.batch_source if isinstance(obj, FeatureView) else obj
        if isinstance(source, FileSource):
            source.file_options.uri = path
    config = store.repo_config(
        settings.feast,
        replace={
            "registry": str(workdir / "registry.db"),
            "online_store": {"type": "sqlite", "path": str(workdir / "online_store.db")},
        },
    )
    local = FeatureStore(repo_path=str(settings.feast.repo_path), config=config)
    return store.apply(settings, store=local, module=module)
