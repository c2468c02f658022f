"""The data profile and the feature report, written on small synthetic frames."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlstack.features.definitions import ENTITY, EVENT_TIMESTAMP
from mlstack.features.reports import feature_report, profile_report

pytestmark = pytest.mark.unit

LABEL = "purchase_within_30d"


@pytest.fixture
def transactions() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 600
    frame = pd.DataFrame(
        {
            ENTITY: pd.array([f"c{i:03d}" for i in rng.integers(0, 80, n)], dtype="string"),
            "timestamp": pd.Timestamp("2021-01-01")
            + pd.to_timedelta(rng.integers(0, 200, n), unit="D"),
            "amount": rng.lognormal(3, 1, n).round(2),
            "quantity": rng.integers(1, 6, n).astype(float),
        }
    )
    frame.loc[3, "quantity"] = np.nan
    return frame.sort_values([ENTITY, "timestamp"]).reset_index(drop=True)


@pytest.fixture
def training_frame() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    n = 400
    signal = rng.normal(size=n)
    frame = pd.DataFrame(
        {
            ENTITY: pd.array([f"c{i}" for i in range(n)], dtype="string"),
            EVENT_TIMESTAMP: pd.Timestamp("2021-03-01", tz="UTC"),
            "recency_days": rng.integers(0, 300, n),
            "signal": signal,
            "noise": rng.normal(size=n),
            "gappy": np.where(rng.random(n) < 0.3, np.nan, rng.exponential(size=n)),
            LABEL: (signal + rng.normal(scale=0.5, size=n) > 0.5).astype(int),
        }
    )
    frame["signal_copy"] = frame["signal"] * 2 + 1  # redundant with `signal`
    return frame


def test_profile_report_is_written_with_the_data_version(
    transactions: pd.DataFrame, tmp_path: Path
) -> None:
    labels = pd.DataFrame(
        {
            ENTITY: transactions[ENTITY].unique()[:20].repeat(3),
            EVENT_TIMESTAMP: np.tile(
                pd.date_range("2021-02-01", periods=3, freq="7D", tz="UTC"), 20
            ),
            LABEL: np.tile([0, 1, 1], 20),
        }
    )
    page = profile_report(transactions, labels, tmp_path / "reports", "v0123abcd")
    text = page.read_text()
    assert page.is_file() and page.parent == tmp_path / "reports"
    assert "v0123abcd" in text.split("</title>")[0]
    for heading in ("Summary", "missing values", "Distributions", "Outliers", "Over time"):
        assert heading in text
    assert "Label balance" in text and text.count("data:image/png;base64,") == 3


def test_profile_report_without_labels_or_quantity(
    transactions: pd.DataFrame, tmp_path: Path
) -> None:
    page = profile_report(transactions.drop(columns="quantity"), None, tmp_path, "v1")
    text = page.read_text()
    assert "Label balance" not in text and "v1" in text


def test_feature_report_flags_the_duplicated_column(
    training_frame: pd.DataFrame, tmp_path: Path
) -> None:
    features = ["recency_days", "signal", "noise", "gappy", "signal_copy"]
    page = feature_report(training_frame, features, LABEL, tmp_path)
    summary = json.loads((tmp_path / "feature_report.json").read_text())
    assert page == tmp_path / "feature_report.html" and page.is_file()
    pairs = {(p["a"], p["b"]) for p in summary["redundant_pairs"]}
    assert pairs == {("signal", "signal_copy")}
    assert summary["features"]["signal"]["redundant_with"] == ["signal_copy"]
    assert summary["features"]["noise"]["redundant_with"] == []
    mi = {f: v["mutual_information"] for f, v in summary["features"].items()}
    assert mi["signal"] > mi["noise"]
    assert summary["features"]["gappy"]["missing_share"] == pytest.approx(
        training_frame["gappy"].isna().mean()
    )
    assert summary["rows"] == len(training_frame)
    assert "signal_copy" in page.read_text()


def test_feature_report_is_reproducible(training_frame: pd.DataFrame, tmp_path: Path) -> None:
    features = ["recency_days", "signal", "noise", "gappy"]
    feature_report(training_frame, features, LABEL, tmp_path / "one")
    feature_report(training_frame, features, LABEL, tmp_path / "two")
    one, two = ((tmp_path / d / "feature_report.json").read_text() for d in ("one", "two"))
    assert one == two
