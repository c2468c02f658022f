"""Data steps: ingest, validate, features, training set, materialize."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from mlstack.config import FeatureSettings, Settings
from mlstack.data.ingest import ingest
from mlstack.data.validate import validate
from mlstack.features.build import build_features, build_labels
from mlstack.features.definitions import (
    ENTITY,
    EVENT_TIMESTAMP,
)
from mlstack.features.reports import profile_report
from mlstack.features.shards import partition
from mlstack.steps import keep, online, sharded, step
from mlstack.steps.cache import cached
from mlstack.steps.results import FeatureTable, Ingested, Materialized, TrainingSet, Validated
from mlstack.versioning import content_version

log = logging.getLogger(__name__)

# what the feature table and the labels depend on: the windows, the horizon, the columns
FEATURE_SETTINGS = ("features", "source.columns")


@step
def ingest_step(settings: Settings, out_path: Path) -> Ingested:
    """Read and normalise the raw log into Parquet at `out_path`."""
    result = ingest(settings, out_path=out_path)
    return Ingested(metrics={"rows_read": result.rows}, **result.to_dict())


@step
def validate_step(
    settings: Settings,
    transactions: Path,
    ingested: Ingested,
    report_html: Path,
    clean_path: Path,
) -> Validated:
    """Check the schema and the cleaning rules; write the reports and the cleaned table to
    `clean_path`; raise `DataValidationError` when a rule or limit stops the run."""
    version = ingested.data_version
    report, cleaned = validate(pd.read_parquet(transactions), settings, version)
    report_html.parent.mkdir(parents=True, exist_ok=True)
    report.write_html(report_html)
    report.write_json(report_html.with_suffix(".json"))
    page = keep(report_html, settings.reports_dir / version / "validation.html")
    keep(report_html.with_suffix(".json"), settings.reports_dir / version / "validation.json")
    report.raise_for_errors(report_path=page)
    clean_path.parent.mkdir(parents=True, exist_ok=True)
    cleaned.to_parquet(clean_path, index=False)
    metrics = {
        "rules_passed": sum(r.passed for r in report.rules),
        "rules_failed": len(report.errors),
        "warnings": len(report.warnings),
        "rows_dropped": report.rows_in - report.rows_out,
        "returns": report.returns,
    }
    return Validated(
        metrics=metrics,
        data_version=version,
        source_uri=ingested.source_uri,
        rows_read=report.rows_in,
        rows_written=report.rows_out,
        dropped=report.dropped,
        returns=report.returns,
        kept_with_warning={r.name: r.rows for r in report.warnings},
    )


@cached(outputs=("out_path", "report_html"), reads=FEATURE_SETTINGS)
def _feature_table(
    settings: Settings, transactions: Path, data_version: str, out_path: Path, report_html: Path
) -> FeatureTable:
    """The point-in-time feature table and the data profile (pure: cached); sharded, a
    dataset partitioned by shard at `out_path`, built in processes (`sharded`)."""
    if settings.features.shards > 1:
        return sharded.feature_table(settings, transactions, data_version, out_path, report_html)
    frame = pd.read_parquet(transactions)
    features = build_features(frame, settings)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    features.to_parquet(out_path, index=False)
    labels = build_labels(frame, features[[ENTITY, EVENT_TIMESTAMP]], settings)
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copyfile(profile_report(frame, labels, Path(tmp), data_version), report_html)
    snapshots = features[EVENT_TIMESTAMP]
    metrics = {
        "feature_rows": len(features),
        "customers": int(features[ENTITY].nunique()),
        "snapshots": int(snapshots.nunique()),
    }
    return FeatureTable(
        metrics=metrics,
        feature_version=content_version(features),
        data_version=data_version,
        first_snapshot=snapshots.min().isoformat(),
        last_snapshot=snapshots.max().isoformat(),
    )


@step
def features_step(
    settings: Settings, transactions: Path, data_version: str, out_path: Path, report_html: Path
) -> FeatureTable:
    """Build the feature table, write it as the Feast offline source and apply the repo."""
    from mlstack.features import partitions, store  # lazy on purpose: Feast is slow to import

    result = _feature_table(settings, transactions, data_version, out_path, report_html)
    name = "features" if out_path.is_dir() else "features.parquet"  # a folder when sharded
    keep(out_path, settings.features_dir(result.feature_version) / name)
    keep(report_html, settings.reports_dir / data_version / "profile.html")
    if settings.features.shards > 1:
        partitions.publish(out_path, settings)
    else:
        store.write_source(out_path, settings)
    store.apply(settings)
    return result


# the labels and features as above, joined by Feast through the configured feature service
@cached(outputs=("out_path", "report_html"), reads=(*FEATURE_SETTINGS, "feast"))
def _training_set(
    settings: Settings, transactions: Path, features: Path, out_path: Path, report_html: Path
) -> TrainingSet:
    from mlstack.features import store  # lazy on purpose: Feast is slow to import

    if settings.features.shards > 1:
        return sharded.training_set(settings, transactions, features, out_path, report_html)
    entity_rows = sharded.labelled_entity_rows(pd.read_parquet(transactions), features, settings)
    feast = store.open_store(settings, offline=True)
    training = sharded.join_features(feast, entity_rows, settings)
    return sharded.finish_training_set(training, settings, out_path, report_html)


@step
def training_set_step(
    settings: Settings, transactions: Path, features: Path, out_path: Path, report_html: Path
) -> TrainingSet:
    """Label every (customer, snapshot), then build the training set through Feast: a
    Parquet file, or with `features.shards` > 1 a dataset partitioned by shard."""
    return _training_set(settings, transactions, features, out_path, report_html)


@step
def materialize_step(settings: Settings, features: Path) -> Materialized:
    """Load the newest features into the online store, incrementally, up to the feature
    table's last snapshot; sharded, shard by shard in processes (`online`)."""
    last = online.last_snapshot(features)
    return online.materialize(settings, last.to_pydatetime(), last.isoformat())


# -- the steps of the compiled pipeline's shards (features.shards > 1, on a cluster) -------


@step
def split_shards_step(features: FeatureSettings, transactions: Path, out_dir: Path) -> None:
    """Split the clean log by customer shard into `out_dir`, with the whole log's facts."""
    sharded.split_log(transactions, features, out_dir)


@step
def features_shard_step(settings: Settings, shards_log: Path, shard: int, out_path: Path) -> str:
    """Build one shard's features and labels (`sharded.shard_features`); its result, JSON."""
    return sharded.shard_features(settings, shards_log, shard, out_path).to_json()


@step
def collect_features_step(
    settings: Settings,
    transactions: Path,
    data_version: str,
    shard_tables: list[Path],
    shard_results: list[str],
    out_path: Path,
    report_html: Path,
) -> FeatureTable:
    """The shards' feature tables as one dataset partitioned by shard at `out_path`, written
    shard by shard as the Feast offline source; the repo applied."""
    from mlstack.features import partitions, store  # lazy on purpose: Feast is slow to import

    parts = [sharded.ShardFeatures.from_json(r) for r in shard_results]
    for part, table in zip(parts, shard_tables, strict=True):
        target = partition(out_path, part.shard)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(table, target)
    result = sharded.collect_features(
        settings.features, transactions, data_version, parts, report_html
    )
    keep(out_path, settings.features_dir(result.feature_version) / "features")
    keep(report_html, settings.reports_dir / data_version / "profile.html")
    partitions.publish(out_path, settings)
    store.apply(settings)
    return result


@step
def training_set_shard_step(
    settings: Settings, shards_log: Path, features: Path, shard: int, out_path: Path
) -> int:
    """One shard's training set, joined against its partition of the offline source."""
    return sharded.shard_training_set(settings, shards_log, features, shard, out_path)


@step
def collect_training_set_step(
    settings: Settings, parts: list[Path], out_path: Path, report_html: Path
) -> TrainingSet:
    """The shards' training sets as one dataset partitioned by shard at `out_path` (each
    part as its shard wrote it: no rows put together), with its figures and report."""
    return sharded.collect_training_set(settings, parts, out_path, report_html)
