"""Validation: the schema, each cleaning rule under each policy, the limits, returns, reports."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from mlstack.config import Policy, Settings, load_settings
from mlstack.data.clean import IS_RETURN, ROW_RULES
from mlstack.data.ingest import ingest
from mlstack.data.validate import (
    RULES,
    DataValidationError,
    RuleResult,
    ValidationReport,
    validate,
)
from tests.support.paths import CONFIG, PROJECT

pytestmark = pytest.mark.unit

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
    report, kept = validate(clean, settings)

    assert [r.name for r in report.rules] == list(RULES)
    assert all(r.passed for r in report.rules)
    assert report.passed and not report.dropped
    assert len(kept) == ROWS and not kept[IS_RETURN].any()
    report.raise_for_errors()


def test_a_missing_column_stops_before_any_rule(clean: pd.DataFrame, settings: Settings) -> None:
    report, kept = validate(clean.drop(columns="amount"), settings)

    rule = report.rule("required_columns")
    assert rule.status == "failed" and rule.rows == ROWS
    assert "column 'amount' is missing" in rule.message
    assert all(r.status == "failed" and "not checked" in r.message for r in report.rules[1:])
    assert kept.empty
    assert "required_columns" in failure_message(report)


def test_a_mistyped_column_is_named(clean: pd.DataFrame, settings: Settings) -> None:
    report, _ = validate(clean.assign(amount=clean["amount"].astype(str)), settings)

    assert "column 'amount' has dtype" in report.rule("required_columns").message


def test_missing_customer_ids_are_dropped_by_default_and_counted(
    clean: pd.DataFrame, settings: Settings
) -> None:
    broken = clean.copy()
    broken.loc[[3, 7], "customer_id"] = pd.NA
    broken.loc[11, "customer_id"] = "   "

    report, kept = validate(broken, settings)

    rule = report.rule("missing_customer_id")
    assert (rule.status, rule.rows, rule.policy) == ("dropped", 3, Policy.drop)
    assert rule.examples[0].startswith("row 3: customer_id=null")
    assert report.dropped == {"missing_customer_id": 3}
    assert report.passed and (report.rows_in, report.rows_out) == (ROWS, ROWS - 3)
    assert len(kept) == ROWS - 3 and kept["customer_id"].notna().all()


def test_stop_policy_fails_and_names_the_setting(clean: pd.DataFrame, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "validation.policies.missing_customer_id=stop")
    broken = clean.copy()
    broken.loc[5, "customer_id"] = pd.NA

    report, _ = validate(broken, settings)

    assert report.rule("missing_customer_id").status == "failed"
    message = failure_message(report)
    assert "missing_customer_id (1 rows)" in message
    assert "validation.policies.missing_customer_id" in message


@pytest.mark.parametrize(
    ("rule", "column", "value", "default"),
    [
        ("unparseable_timestamp", "timestamp", pd.NaT, "failed"),
        ("unparseable_amount", "amount", np.nan, "failed"),
        ("unparseable_amount", "quantity", np.nan, "failed"),
        ("timestamp_out_of_range", "timestamp", pd.Timestamp("1989-12-31"), "failed"),
        ("timestamp_out_of_range", "timestamp", pd.Timestamp("2001-01-01"), "failed"),
        ("zero_amount", "amount", 0.0, "warning"),
    ],
)
def test_each_rule_flags_its_rows_under_its_default_and_under_drop(
    clean: pd.DataFrame, tmp_path: Path, rule: str, column: str, value: object, default: str
) -> None:
    broken = clean.copy()
    broken.loc[4, column] = value

    report, kept = validate(broken, make_settings(tmp_path))
    assert (report.rule(rule).status, report.rule(rule).rows) == (default, 1)
    assert len(kept) == ROWS  # stop and keep leave the rows where they are

    report, kept = validate(broken, make_settings(tmp_path, f"validation.policies.{rule}=drop"))
    assert report.passed and report.dropped == {rule: 1} and len(kept) == ROWS - 1


def test_keep_leaves_out_of_range_rows_in_with_a_warning(
    clean: pd.DataFrame, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, "validation.policies.timestamp_out_of_range=keep")
    broken = clean.copy()
    broken.loc[0, "timestamp"] = pd.Timestamp("1985-06-01")

    report, kept = validate(broken, settings)

    assert report.passed
    assert [r.name for r in report.warnings] == ["timestamp_out_of_range"]
    assert len(kept) == ROWS


def test_excluded_accounts_match_a_pattern(clean: pd.DataFrame, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "validation.excluded_customers=TEST-.*|00000")
    frame = clean.copy()
    frame.loc[0, "customer_id"] = "TEST-1"

    report, kept = validate(frame, settings)

    # row 0 and every 10th row belong to 00000 (the fixture's ids cycle through ten)
    assert report.dropped == {"excluded_customer": 4}
    assert not kept["customer_id"].isin(["TEST-1", "00000"]).any()
    assert "00001" in set(kept["customer_id"])  # a full match, not a prefix


def test_duplicates_are_dropped_keeping_the_first(clean: pd.DataFrame, settings: Settings) -> None:
    frame = pd.concat([clean, clean.iloc[[2, 2, 9]]], ignore_index=True)

    report, kept = validate(frame, settings)

    assert report.dropped == {"exact_duplicate": 3}
    assert len(kept) == ROWS and not kept.duplicated().any()


def test_a_row_counts_under_its_first_rule_only(clean: pd.DataFrame, settings: Settings) -> None:
    frame = clean.copy()
    frame.loc[[1, 2], "customer_id"] = pd.NA
    frame.loc[[1, 2], "amount"] = 0.0  # the two rows are also zero-amount duplicates

    report, _ = validate(frame, settings)

    assert report.dropped == {"missing_customer_id": 2}
    assert report.rule("zero_amount").rows == 0
    assert report.rule("exact_duplicate").rows == 0


def test_too_large_a_dropped_share_stops(clean: pd.DataFrame, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "validation.max_dropped_share=0.1")
    frame = clean.copy()
    frame.loc[:4, "customer_id"] = pd.NA  # 5 of 40: 12.5%

    report, _ = validate(frame, settings)

    rule = report.rule("dropped_share")
    assert rule.status == "failed" and rule.rows == 5
    assert "12.5% of rows dropped (5 of 40)" in rule.message
    assert "validation.max_dropped_share" in failure_message(report)


def test_min_rows_counts_the_rows_left(clean: pd.DataFrame, settings: Settings) -> None:
    frame = clean.copy()
    frame.loc[:31, "customer_id"] = pd.NA  # 8 left, 10 needed

    report, _ = validate(frame, settings)

    assert report.rule("min_rows").status == "failed"
    assert "8 rows after cleaning; at least 10 needed" in failure_message(report)


def test_returns_are_marked_and_made_negative(clean: pd.DataFrame, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "source.return_invoice_pattern=C")
    frame = clean.assign(invoice_id=pd.array([f"{i}" for i in range(ROWS)], dtype="string"))
    frame.loc[0, "quantity"] = -2.0  # sign on the quantity only
    frame.loc[1, "amount"] = -7.0
    frame.loc[2, "invoice_id"] = "C2"  # signs left positive, the invoice says return
    frame.loc[3, "invoice_id"] = "2C"  # matched at the start only

    report, kept = validate(frame, settings)

    returns = kept.set_index("invoice_id").loc[["0", "1", "C2", "2C"]]
    assert returns[IS_RETURN].tolist() == [True, True, True, False]
    assert (returns["amount"].iloc[:3] < 0).all() and (returns["quantity"].iloc[:3] < 0).all()
    assert report.returns == 3 and report.passed


def test_policies_the_rules_cannot_take_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="missing_customer_id=keep: must be stop or drop"):
        make_settings(tmp_path, "validation.policies.missing_customer_id=keep")
    with pytest.raises(ValidationError, match=r"validation\.policies\.no_such_rule: no such rule"):
        make_settings(tmp_path, "validation.policies.no_such_rule=drop")
    with pytest.raises(ValidationError, match=r"severities was replaced by validation\.policies"):
        make_settings(tmp_path, "validation.severities.min_rows=error")
    with pytest.raises(ValidationError, match="excluded_customers is not a regular expression"):
        make_settings(tmp_path, "validation.excluded_customers=(")


def test_setting_one_policy_keeps_the_others(tmp_path: Path) -> None:
    policies = make_settings(tmp_path, "validation.policies.zero_amount=drop").validation.policies

    assert set(policies) == set(ROW_RULES)
    assert policies["zero_amount"] == Policy.drop
    assert policies["missing_customer_id"] == Policy.drop


def test_reports_are_written(clean: pd.DataFrame, settings: Settings, tmp_path: Path) -> None:
    broken = clean.copy()
    broken.loc[0, "amount"] = 0.0
    broken.loc[1, "customer_id"] = pd.NA
    report, _ = validate(broken, settings, "v1")

    as_json = json.loads(report.write_json(tmp_path / "r" / "validation.json").read_text())
    page = report.write_html(tmp_path / "r" / "validation.html").read_text()
    markdown = report.write_markdown(tmp_path / "r" / "validation.md").read_text()

    assert [r["name"] for r in as_json["rules"]] == list(RULES)
    assert as_json["warnings"] == ["zero_amount"]
    assert as_json["dropped"] == {"missing_customer_id": 1}
    assert as_json["passed"] is True
    assert page.startswith("<!DOCTYPE html>")
    for name in RULES:
        assert f"<code>{name}</code>" in page
        assert f"`{name}`" in markdown
    assert "40 rows read, 39 kept (dropped: 1 missing_customer_id)" in page
    assert "row 0: customer_id=&#x27;00000&#x27;" in page
    assert "validation.policies.zero_amount" in page


def test_html_escapes_values(tmp_path: Path) -> None:
    rule = RuleResult("custom", Policy.stop, 1, "<b>bad</b>", ["row 1: x='<i>'"])

    page = ValidationReport([rule], 1, 1).write_html(tmp_path / "r.html").read_text()

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
    report, kept = validate(frame, settings, result.data_version)
    elapsed = time.perf_counter() - started

    assert report.passed, report.to_dict()
    assert report.dropped == {"exact_duplicate": 255}
    assert [r.name for r in report.warnings] == ["zero_amount"]
    assert report.rule("zero_amount").rows == 80
    assert len(kept) == 69_404 and report.returns == 0
    assert elapsed < 1.0, f"validation took {elapsed:.2f}s"
