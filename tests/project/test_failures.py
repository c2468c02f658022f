"""A failed step's record and the block `mlstack run` ends with."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mlstack.config import load_settings
from mlstack.data.validate import DataValidationError, validate
from mlstack.failures import (
    RECORD_ENV,
    VERBOSE_ENV,
    VERBOSE_HINT,
    ExplainedError,
    Failure,
    format_block,
    read_failure,
    recorded,
    recording_failures,
)
from tests.support.paths import CONFIG, PROJECT

VALIDATION = Failure(
    step="validate",
    error_type="DataValidationError",
    message="data validation failed: missing_customer_id (1234 rows): no customer id",
    cause_lines=["missing_customer_id: 1,234 rows: lines with no customer id"],
    report="/runs/reports/v1/validation.html",
    setting="validation.policies.missing_customer_id: stop | drop (now stop)",
)


@pytest.mark.unit
def test_block_names_the_step_its_cause_the_report_and_the_setting() -> None:
    block = format_block(VALIDATION, RuntimeError("Inner task failed: 'validate'"))

    assert block.splitlines() == [
        "error: step 'validate' failed",
        "  missing_customer_id: 1,234 rows: lines with no customer id",
        "  report:  /runs/reports/v1/validation.html",
        "  setting: validation.policies.missing_customer_id: stop | drop (now stop)",
        f"  {VERBOSE_HINT}",
    ]
    assert VERBOSE_HINT not in format_block(VALIDATION, RuntimeError(), verbose=True)


@pytest.mark.unit
def test_a_plain_error_is_shown_by_type_and_first_lines() -> None:
    failure = Failure.from_exception("train", KeyError("no column 'recency_days'"))

    assert format_block(failure, RuntimeError()).splitlines() == [
        "error: step 'train' failed: KeyError: \"no column 'recency_days'\"",
        f"  {VERBOSE_HINT}",
    ]
    long = Failure.from_exception("train", ValueError("\n".join(f"line {i}" for i in range(9))))
    assert long.message.splitlines() == ["line 0", "line 1", "line 2"]


@pytest.mark.unit
def test_without_a_record_the_runners_last_line_stands_in() -> None:
    err = RuntimeError("Pipeline \x1b[95m'p'\x1b[0m finished.\nInner task failed: 'configure'.")

    assert format_block(None, err).splitlines() == [
        "error: RuntimeError: Inner task failed: 'configure'.",
        f"  {VERBOSE_HINT}",
    ]


@pytest.mark.unit
def test_a_failed_step_leaves_its_record_and_raises_the_same_error(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "last-failure.json"
    path.parent.mkdir()
    path.write_text("{}")  # a stale, unreadable record from an earlier run
    error = ExplainedError("bad", cause_lines=["why"], report=tmp_path / "r.html", setting="a.b")

    with recording_failures(path, verbose=True):
        assert not path.exists()
        with pytest.raises(ExplainedError) as caught, recorded("features"):
            raise error
    assert caught.value is error
    assert read_failure(path) == Failure(
        "features", "ExplainedError", "bad", ["why"], str(tmp_path / "r.html"), "a.b"
    )
    assert RECORD_ENV not in os.environ and VERBOSE_ENV not in os.environ


@pytest.mark.unit
def test_a_record_that_cannot_be_written_does_not_hide_the_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")

    with (
        recording_failures(blocker / "last-failure.json", verbose=True),
        pytest.raises(ZeroDivisionError),
        recorded("train"),
    ):
        1 / 0  # noqa: B018
    assert read_failure(blocker / "last-failure.json") is None


STEP_PROCESS = """
import logging, sys
from mlstack.failures import ExplainedError, recorded
logging.basicConfig(stream=sys.stdout)
try:
    with recorded("validate"):
        raise ExplainedError("data validation failed: min_rows (5 rows)")
finally:
    if sys.argv[1] == "then-another-error":
        raise KeyError("another error")
"""


@pytest.mark.component
@pytest.mark.parametrize(
    ("verbose", "then", "traceback_shown"),
    [("0", "", False), ("1", "", True), ("0", "then-another-error", True)],
)
def test_a_quiet_step_process_logs_one_line_not_its_traceback(
    verbose: str, then: str, traceback_shown: bool
) -> None:
    env = {**os.environ, VERBOSE_ENV: verbose}
    env.pop(RECORD_ENV, None)
    done = subprocess.run(
        [sys.executable, "-c", STEP_PROCESS, then],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )

    assert done.returncode == 1
    assert "step validate: failed: ExplainedError: data validation failed" in done.stdout
    assert ("Traceback" in done.stderr) == traceback_shown


@pytest.mark.unit
def test_a_validation_error_explains_itself() -> None:
    settings = load_settings(
        CONFIG,
        [f"root={PROJECT}", "validation.policies.missing_customer_id=stop"],
    )
    frame = pd.DataFrame(
        {
            "customer_id": pd.array(["00001", " ", "00003", ""] * 300, dtype="string"),
            "timestamp": pd.date_range("1997-01-01", periods=1200, freq="h"),
            "amount": 10.0,
        }
    )
    page = Path("/reports/v1/validation.html")

    report, _ = validate(frame, settings)
    with pytest.raises(DataValidationError) as caught:
        report.raise_for_errors(report_path=page)
    err = caught.value
    assert err.cause_lines == [
        "missing_customer_id: 600 rows: lines with no customer id (they cannot be attributed); "
        "e.g. row 1: customer_id=' ', timestamp=1997-01-01 01:00:00, amount=10.0; "
        "row 3: customer_id='', timestamp=1997-01-01 03:00:00, amount=10.0"
    ]
    assert err.report == str(page)
    assert err.setting == "validation.policies.missing_customer_id: stop | drop (now stop)"
    assert "missing_customer_id (600 rows)" in str(err)
