"""Data steps: ingest, validate, features, training set, materialize."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from mlstack.config import Settings
from mlstack.data.ingest import ingest
from mlstack.data.validate import validate
from mlstack.features.build import build_features, build_labels
from mlstack.features.definitions import (
    ENTITY,
    EVENT_TIMESTAMP,
    attribute_names,
    feature_names,
    label_name,
)
from mlstack.features.reports import feature_report, profile_report
from mlstack.steps import keep, step
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
    """The point-in-time feature table and the data profile (pure: cached)."""
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
    from mlstack.features import store  # lazy on purpose: Feast is slow to import

    result = _feature_table(settings, transactions, data_version, out_path, report_html)
    keep(out_path, settings.features_dir(result.feature_version) / "features.parquet")
    keep(report_html, settings.reports_dir / data_version / "profile.html")
    store.write_source(pd.read_parquet(out_path), settings)
    store.apply(settings)
    return result


# the labels and features as above, joined by Feast through the configured feature service
@cached(outputs=("out_path", "report_html"), reads=(*FEATURE_SETTINGS, "feast"))
def _training_set(
    settings: Settings, transactions: Path, features: Path, out_path: Path, report_html: Path
) -> TrainingSet:
    from mlstack.features import store  # lazy on purpose: Feast is slow to import

    frame = pd.read_parquet(transactions)
    attributes = attribute_names(settings)
    entity = pd.read_parquet(features, columns=[ENTITY, EVENT_TIMESTAMP, *attributes])
    entity_rows = build_labels(frame, entity, settings)
    training = store.training_set(store.open_store(settings, offline=True), entity_rows, settings)
    for name in attributes:  # categorical attributes for the evaluation's slices, in row order
        training[name] = entity_rows[name].to_numpy()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    training.to_parquet(out_path, index=False)
    label = label_name(settings)
    with tempfile.TemporaryDirectory() as tmp:
        page = feature_report(training, feature_names(settings), label, Path(tmp))
        shutil.copyfile(page, report_html)
    metrics = {
        "training_rows": len(training),
        "label_rate": float(training[label].mean()) if len(training) else 0.0,
        "labelled_snapshots": int(training[EVENT_TIMESTAMP].nunique()),
    }
    return TrainingSet(
        metrics=metrics,
        label=label,
        feature_service=settings.feast.feature_service,
        training_rows=len(training),
    )


@step
def training_set_step(
    settings: Settings, transactions: Path, features: Path, out_path: Path, report_html: Path
) -> TrainingSet:
    """Label every (customer, snapshot), then build the training set through Feast."""
    return _training_set(settings, transactions, features, out_path, report_html)


@step
def materialize_step(settings: Settings, features: Path) -> Materialized:
    """Load the newest features into the online store, incrementally."""
    from mlstack.features import store  # lazy on purpose: Feast is slow to import

    last = pd.read_parquet(features, columns=[EVENT_TIMESTAMP])[EVENT_TIMESTAMP].max()
    store.materialize(store.open_store(settings, offline=True), settings, last.to_pydatetime())
    return Materialized(materialized_until=last.isoformat())
