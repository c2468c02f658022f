"""Feast declarations for purchase propensity: entity, source, feature view, feature service.

Read top to bottom, in dependency order. The features themselves are not listed here: the
schema comes from `mlstack.features.definitions.feature_list`, the one list of features, for
the settings in `$MLSTACK_CONFIG` (default: the project's `configs/cdnow.yaml`).
"""

import os
from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.data_format import ParquetFormat
from feast.types import Float64, Int64, String

from mlstack.config import Settings, load_settings
from mlstack.features.definitions import (
    ENTITY,
    EVENT_TIMESTAMP,
    FEATURE_VIEW,
    SETTINGS_ENV,
    feature_list,
)

REPO_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = REPO_DIR.parent

# The run's own settings when mlstack applies the repo (so --set overrides count), else the
# config file: $MLSTACK_CONFIG or the project's bundled one.
settings = (
    Settings.from_json(os.environ[SETTINGS_ENV])
    if SETTINGS_ENV in os.environ
    else load_settings(
        os.environ.get("MLSTACK_CONFIG") or PROJECT_ROOT / "configs" / "cdnow.yaml",
        overrides={"root": str(PROJECT_ROOT)},
    )
)

# Feast's DuckDB offline store reads a FileSource path as given, relative to the current
# directory (only `feast apply`'s validation resolves it against the repo), so the path is
# made absolute here. With a remote state store (a cluster) it is the pod-local copy of the
# object store's offline data that mlstack brings down before each read (`feast.data_dir`).
DATA_DIR = settings.feast.data_dir or REPO_DIR / "data"

KINDS = {"int": Int64, "float": Float64}

# -- entity ------------------------------------------------------------------------------
customer = Entity(
    name="customer",
    join_keys=[ENTITY],
    value_type=ValueType.STRING,
    description="A customer of the retailer, keyed by the id in the transaction log.",
)

# -- source ------------------------------------------------------------------------------
# One shard: one Parquet file. More (`features.shards`): a folder partitioned by shard
# (shard=K/part-0.parquet), which DuckDB reads as one table; see mlstack.features.partitions.
SHARDED = settings.features.shards > 1
customer_features_source = FileSource(
    name="customer_features_source",
    path=str(DATA_DIR / ("customer_features" if SHARDED else "customer_features.parquet")),
    file_format=ParquetFormat() if SHARDED else None,
    timestamp_field=EVENT_TIMESTAMP,
    description="One row per customer per weekly snapshot, built from data up to the snapshot.",
)

# -- feature view ------------------------------------------------------------------------
# TTL = one snapshot interval. A snapshot row is the customer's state until the next
# snapshot replaces it, so one interval is exactly how long a value is current: any as-of
# time on or between snapshot dates finds the latest snapshot, and nothing older. A longer
# TTL adds nothing but cost: Feast's point-in-time join keeps every feature row inside the
# TTL window before picking the latest, so the window drives its time and memory (see
# bench/feast_join.py: 30 days ~1.7x the time of 7 days, 365 days ~20x and ~13 GB on 1.5M
# rows), and the first materialization loads one TTL before its end. Whole days only: the
# DuckDB store cannot turn a timedelta that mixes days and seconds into an interval.
customer_behaviour = FeatureView(
    name=FEATURE_VIEW,
    entities=[customer],
    ttl=timedelta(days=settings.features.snapshot_frequency_days),
    schema=[Field(name=ENTITY, dtype=String)]
    + [
        Field(name=f.name, dtype=KINDS[f.kind], description=f.description)
        for f in feature_list(settings)
    ],
    source=customer_features_source,
    online=True,
    description="Purchase behaviour of a customer as of a weekly snapshot date.",
    tags={"snapshot_frequency_days": str(settings.features.snapshot_frequency_days)},
)

# -- feature service ---------------------------------------------------------------------
# Training (get_historical_features) and serving (get_online_features) both fetch through
# this service, so they see the same features. A change to the feature set gets a new
# version (a new service name in the config), leaving the old one for deployed models.
customer_propensity = FeatureService(
    name=settings.feast.feature_service,
    features=[customer_behaviour],
    description="Features of the purchase-propensity model.",
)
