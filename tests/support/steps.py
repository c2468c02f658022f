"""The data steps up to the feature table, run as plain functions on a project copy."""

from __future__ import annotations

from pathlib import Path

from mlstack.config import Settings
from mlstack.steps import data


def feature_table(settings: Settings, out: Path) -> tuple[Path, Path]:
    """Ingest, validate and features (the Feast source written, the repo applied) into
    `out`; the clean log's and the feature table's paths."""
    ingested = data.ingest_step(settings, out / "tx.parquet")
    clean = out / "clean.parquet"
    data.validate_step(settings, out / "tx.parquet", ingested, out / "v.html", clean)
    table = out / "features.parquet"
    data.features_step(settings, clean, ingested.data_version, table, out / "profile.html")
    return clean, table
