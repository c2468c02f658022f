"""Validation: each rule catches its corruption, severities come from config, reports render."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlstack.config import Settings, Severity, load_settings
from mlstack.data.ingest import IngestResult, ingest
from mlstack.data.validate import (
    RULES,
    DataValidationError,
    RuleResult,
    ValidationReport,
    validate,
)

PROJECT = Path(__file__).resolve().parents[2]
CONFIG = PROJECT / "configs" / "cdnow.yaml"
BUNDLED = PROJECT / "data" / "cdnow_master.txt.gz"
ROWS = 40


def make_settings(tmp_path: Path, *overrides: str) -> Settings:
    """Settings for small frames: 10 rows minimum, timestamps up to the end of 2000."""
    return load_settings(
        CONFIG,
        overrides=[
            f"root={tmp_path}",
            "validation.min_rows=10",
            "validation.latest_timestamp=2000-12-31",
            *overrides,
        ],
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def clean() -> pd.DataFrame:
    """A small canonical table that passes every rule."""
    return pd.DataFrame(
        {
            "customer_id": pd.array([f"{i % 10:05d}" for i in range(ROWS)], dtype="string"),
            "timestamp": pd.date_range("1997-01-01", periods=ROWS, freq="3D"),
            "amount": np.linspace(5.0, 50.0, ROWS),
            "quantity": np.full(ROWS, 2.0),
        }
    )


def failure_message(report: ValidationReport) -> str:
    with pytest.raises(DataValidationError) as caught:
        report.raise_for_errors()
    return str(caught.value)


def test_clean_frame_passes_every_rule(clean: pd.DataFrame, settings: Settings) -> None:
    report = validate(clean, settings)

    assert [r.name for r in report.rules] == list(RULES)
    assert all(r.passed for r in report.rules)
    assert report.passed
    report.raise_for_errors()


def test_required_columns_missing_column(clean: pd.DataFrame, settings: Settings) -> None:
    report = validate(clean.drop(columns="amount"), settings)

    rule = report.rule("required_columns")
    assert not rule.passed
    assert rule.failed_rows == ROWS
    assert "column 'amount' is missing" in rule.message
    assert f"required_columns ({ROWS} rows)" in failure_message(report)
    # the amount rule cannot run without the column, and says so
    assert report.rule("amount_positive_unless_return").message.startswith("not checked")


def test_required_columns_unparseable_values(clean: pd.DataFrame, settings: Settings) -> None:
    broken = clean.copy()
    broken.loc[[1, 2], "amount"] = np.nan
    broken.loc[[2, 5], "timestamp"] = pd.NaT

    report = validate(broken, settings)

    rule = report.rule("required_columns")
    assert rule.failed_rows == 3
    assert "2 rows with a null or unparseable amount" in rule.message
    assert "2 rows with a null or unparseable timestamp" in rule.message
    assert any("row 1: amount=null" in e for e in rule.examples)
    assert "required_columns (3 rows)" in failure_message(report)


def test_required_columns_wrong_type(clean: pd.DataFrame, settings: Settings) -> None:
    broken = clean.assign(timestamp=clean["timestamp"].dt.strftime("%Y-%m-%d"))

    report = validate(broken, settings)

    rule = report.rule("required_columns")
    assert rule.failed_rows == ROWS
    assert "column 'timestamp' has dtype object, expected datetime64[ns]" in rule.message
    assert not report.rule("timestamp_in_range").passed


def test_customer_id_not_null(clean: pd.DataFrame, settings: Settings) -> None:
    broken = clean.copy()
    broken.loc[3, "customer_id"] = pd.NA
    broken.loc[7, "customer_id"] = "   "

    report = validate(broken, settings)

    rule = report.rule("customer_id_not_null")
    assert (rule.passed, rule.failed_rows) == (False, 2)
    assert report.rule("required_columns").passed
    assert "customer_id_not_null (2 rows): null or blank customer ids" in failure_message(report)


def test_amount_positive_unless_return(clean: pd.DataFrame, settings: Settings) -> None:
    broken = clean.copy()
    broken.loc[0, "amount"] = 0.0  # zero purchase
    broken.loc[1, "amount"] = -4.0  # negative amount, positive quantity
    broken.loc[2, ["quantity", "amount"]] = [-1.0, 9.0]  # return with a positive amount
    broken.loc[3, ["quantity", "amount"]] = [-1.0, -9.0]  # a proper return

    report = validate(broken, settings)

    rule = report.rule("amount_positive_unless_return")
    assert (rule.passed, rule.failed_rows, rule.severity) == (False, 3, "warning")
    assert "1 of them are zero" in rule.message
    assert rule.examples[0] == "row 0: amount=0.0"
    assert report.passed  # a warning does not fail the report
    assert report.warnings == [rule]

    severity = "validation.severities.amount_positive_unless_return=error"
    strict = make_settings(settings.root, severity)
    strict_report = validate(broken, strict)
    assert not strict_report.passed
    assert "amount_positive_unless_return (3 rows)" in failure_message(strict_report)


def test_without_quantity_a_negative_amount_is_a_return(
    clean: pd.DataFrame, settings: Settings
) -> None:
    broken = clean.drop(columns="quantity")
    broken.loc[[0, 1], "amount"] = [-3.0, 0.0]

    rule = validate(broken, settings).rule("amount_positive_unless_return")

    assert rule.failed_rows == 1


def test_timestamp_in_range(clean: pd.DataFrame, settings: Settings) -> None:
    broken = clean.copy()
    broken.loc[0, "timestamp"] = pd.Timestamp("1985-06-01")
    broken.loc[1, "timestamp"] = pd.Timestamp("2001-01-01 00:00:00")
    broken.loc[2, "timestamp"] = pd.Timestamp("2100-01-01")
    broken.loc[3, "timestamp"] = pd.Timestamp("2000-12-31 23:59:59")  # last day is allowed

    report = validate(broken, settings)

    rule = report.rule("timestamp_in_range")
    assert rule.failed_rows == 3
    assert "1985-06-01" in rule.examples[0]
    assert (
        "data validation failed: timestamp_in_range (3 rows): "
        "timestamps outside 1990-01-01..2000-12-31"
    ) in failure_message(report)


def test_timestamp_upper_bound_defaults_to_today(clean: pd.DataFrame, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "validation.latest_timestamp=null")
    future = clean.assign(timestamp=pd.Timestamp.today().normalize() + pd.Timedelta(days=2))

    rule = validate(future, settings).rule("timestamp_in_range")

    assert rule.failed_rows == ROWS
    assert pd.Timestamp.today().strftime("%Y-%m-%d") in rule.message


def test_duplicate_share_from_ingest_stats(clean: pd.DataFrame, settings: Settings) -> None:
    stats = {"rows_read": 100, "dropped": {"exact_duplicate": 5}, "duplicate_share": 0.05}

    report = validate(clean, settings, stats)

    rule = report.rule("duplicate_share")
    assert (rule.passed, rule.failed_rows) == (False, 5)
    assert "5.00% of rows were exact duplicates (5 of 100" in rule.message
    assert report.passed  # warning by default

    strict = make_settings(settings.root, "validation.severities.duplicate_share=error")
    assert "duplicate_share (5 rows)" in failure_message(validate(clean, strict, stats))


def test_duplicate_share_accepts_an_ingest_result(clean: pd.DataFrame, settings: Settings) -> None:
    result = IngestResult("abc", Path("x.parquet"), 1000, 995, {"exact_duplicate": 5}, 0.005)

    report = validate(clean, settings, result)

    assert report.rule("duplicate_share").passed
    assert report.data_version == "abc"


def test_duplicate_share_without_stats_counts_the_frame(
    clean: pd.DataFrame, settings: Settings
) -> None:
    doubled = pd.concat([clean, clean.iloc[:4]], ignore_index=True)

    rule = validate(doubled, settings).rule("duplicate_share")

    assert (rule.passed, rule.failed_rows) == (False, 4)


def test_min_rows(clean: pd.DataFrame, settings: Settings) -> None:
    report = validate(clean.iloc[:5], settings)

    rule = report.rule("min_rows")
    assert (rule.passed, rule.failed_rows) == (False, 5)
    assert "min_rows (5 rows): only 5 rows, need at least 10" in failure_message(report)


def test_every_failed_error_rule_is_named(clean: pd.DataFrame, settings: Settings) -> None:
    broken = clean.iloc[:5].copy()
    broken.loc[0, "timestamp"] = pd.Timestamp("1980-01-01")
    broken.loc[1, "customer_id"] = ""

    message = failure_message(validate(broken, settings))

    for part in ("timestamp_in_range (1 rows)", "customer_id_not_null (1 rows)", "min_rows (5"):
        assert part in message


def test_severity_can_be_relaxed(clean: pd.DataFrame, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "validation.severities.min_rows=warning")

    report = validate(clean.iloc[:5], settings)

    assert report.passed
    assert [r.name for r in report.warnings] == ["min_rows"]


def test_reports_are_written(clean: pd.DataFrame, settings: Settings, tmp_path: Path) -> None:
    broken = clean.copy()
    broken.loc[0, "amount"] = 0.0
    report = validate(broken, settings)

    as_json = json.loads(report.write_json(tmp_path / "r" / "validation.json").read_text())
    page = report.write_html(tmp_path / "r" / "validation.html").read_text()
    markdown = report.write_markdown(tmp_path / "r" / "validation.md").read_text()

    assert [r["name"] for r in as_json["rules"]] == list(RULES)
    assert as_json["warnings"] == ["amount_positive_unless_return"]
    assert as_json["passed"] is True
    assert page.startswith("<!DOCTYPE html>")
    for name in RULES:
        assert f"<code>{name}</code>" in page
        assert f"`{name}`" in markdown
    assert "row 0: amount=0.0" in page


def test_html_escapes_values(tmp_path: Path) -> None:
    rule = RuleResult("custom", Severity.error, False, 1, "<b>bad</b>", ["row 1: x='<i>'"])

    page = ValidationReport(rules=[rule], rows=1).write_html(tmp_path / "r.html").read_text()

    assert "&lt;b&gt;bad&lt;/b&gt;" in page
    assert "<i>" not in page


def test_bundled_data_passes_quickly(tmp_path: Path) -> None:
    settings = load_settings(CONFIG, overrides=[f"root={tmp_path}", f"source.uri={BUNDLED}"])
    result = ingest(settings)
    frame = pd.read_parquet(result.path)
    # pandera registers its backends (importing hypothesis, if installed) on first use in a
    # process; that one-off cost is not validation time
    validate(frame.head(50), settings)

    started = time.perf_counter()
    report = validate(frame, settings, result)
    elapsed = time.perf_counter() - started

    assert report.passed, report.to_dict()
    assert [r.name for r in report.warnings] == ["amount_positive_unless_return"]
    assert report.rule("amount_positive_unless_return").failed_rows == 80
    assert report.rule("duplicate_share").passed
    assert elapsed < 1.0, f"validation took {elapsed:.2f}s"
