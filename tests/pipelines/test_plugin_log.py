"""A different transaction log plugs in by config alone: other names, delimiter and types."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlstack.features.definitions import feature_names, label_name
from mlstack.steps.data import features_step, ingest_step, training_set_step, validate_step

pytestmark = pytest.mark.component


def write_shop_log(path: Path, customers: int = 150, seed: int = 0) -> Path:
    """A semicolon-separated log: client codes, ISO timestamps with a time of day, revenue."""
    rng = np.random.default_rng(seed)
    rows = []
    start = pd.Timestamp("2021-01-01")
    for c in range(customers):
        first = start + pd.Timedelta(days=int(rng.integers(0, 120)))
        gaps = rng.exponential(scale=rng.uniform(15, 120), size=12).cumsum()
        for gap in gaps[gaps < 600]:
            when = first + pd.Timedelta(days=float(gap), hours=int(rng.integers(8, 20)))
            rows.append((f"C-{c:04d}", when.isoformat(sep=" "), round(rng.gamma(2, 20), 2), "NL"))
    frame = pd.DataFrame(rows, columns=["client", "ts", "revenue", "country"])
    frame.to_csv(path, sep=";", index=False)
    return path


def test_other_log_runs_from_ingest_to_training_set(project, tmp_path: Path) -> None:
    log = write_shop_log(tmp_path / "shop.csv")
    settings = project(
        f"source.uri={log}",
        "source.delimiter=;",
        "source.timestamp_format=null",
        "source.columns.customer_id=client",
        "source.columns.timestamp=ts",
        "source.columns.amount=revenue",
        "source.columns.quantity=null",
        "source.columns.country=country",
    )
    out = tmp_path / "out"

    ingested = ingest_step(settings, out / "tx.parquet")
    tx = pd.read_parquet(out / "tx.parquet")
    assert list(tx.columns) == ["customer_id", "timestamp", "amount", "country"]
    assert tx["customer_id"].str.startswith("C-").all()
    validate_step(settings, out / "tx.parquet", ingested, out / "validation.html", out / "clean.pq")
    built = features_step(
        settings,
        out / "clean.pq",
        ingested.data_version,
        out / "features.parquet",
        out / "profile.html",
    )
    assert built.metrics["customers"] == tx["customer_id"].nunique()
    result = training_set_step(
        settings,
        out / "clean.pq",
        out / "features.parquet",
        out / "dataset.parquet",
        out / "feature_report.html",
    )
    training = pd.read_parquet(out / "dataset.parquet")
    label = label_name(settings.features)
    # no quantity in this log, so no quantity feature: the Feast repo follows the run's config
    assert "items_per_order" not in feature_names(settings)
    assert list(training.columns) == [
        "customer_id",
        "snapshot_date",
        label,
        *feature_names(settings),
        "country",  # a categorical attribute: for the evaluation's slices, not the model
    ]
    assert result.metrics["training_rows"] == len(training) > 1000
    assert 0.05 < training[label].mean() < 0.95
    assert training["recency_days"].ge(0).all()
