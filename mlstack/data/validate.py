"""Validate: the table's schema, the cleaning rules with their policies, and the limits.

The schema (columns present with their canonical types) is a pandera schema, validated
lazily; a table that breaks it is not cleaned. The row rules and their policies live in
`mlstack.data.clean`. Then two limits hold on the cleaned table: the share of rows dropped
(``validation.max_dropped_share``) and the rows left (``validation.min_rows``). A rule whose
policy is ``stop`` and that found rows, or a broken limit, fails the report; a ``keep``
rule that found rows is a warning; a ``drop`` rule reports what it removed.
"""

from __future__ import annotations

import html
import json
import logging
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from mlstack.config import RULE_POLICIES, Policy, Settings, ValidationSettings
from mlstack.data.clean import ROW_RULES, Cleaning, RuleRows, clean, describe
from mlstack.failures import ExplainedError
from mlstack.reports.page import render_page, write_file
from mlstack.reports.tables import bullets, code, markup_table

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = "required_columns"
DROPPED_SHARE = "dropped_share"
MIN_ROWS = "min_rows"
TABLE_RULES = (REQUIRED_COLUMNS, DROPPED_SHARE, MIN_ROWS)
RULES = (REQUIRED_COLUMNS, *ROW_RULES, DROPPED_SHARE, MIN_ROWS)

# canonical column → its pandera dtype (and how it reads in a message)
REQUIRED_TYPES: dict[str, tuple[Any, str]] = {
    "customer_id": (pa.String, "string"),
    "timestamp": ("datetime64[ns]", "datetime64[ns]"),
    "amount": ("float64", "float64"),
}


class DataValidationError(ExplainedError, ValueError):
    """The data broke a rule whose policy is ``stop``, or a limit."""


@dataclass(frozen=True)
class RuleResult:
    """The outcome of one rule: how many rows it found and what its policy did with them."""

    name: str
    policy: Policy
    rows: int
    message: str
    examples: list[str] = field(default_factory=list)
    checked: bool = True

    @property
    def passed(self) -> bool:
        return self.checked and self.rows == 0

    @property
    def status(self) -> str:
        """passed, dropped (a drop rule removed rows), warning (kept) or failed."""
        if self.passed:
            return "passed"
        if not self.checked:
            return "failed"
        return {Policy.drop: "dropped", Policy.keep: "warning"}.get(self.policy, "failed")

    @property
    def setting(self) -> str:
        """The config key that changes what this rule does."""
        return {
            REQUIRED_COLUMNS: "source.columns",
            DROPPED_SHARE: "validation.max_dropped_share",
            MIN_ROWS: "validation.min_rows",
        }.get(self.name, f"validation.policies.{self.name}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "name": self.name,
            "policy": str(self.policy),
            "status": self.status,
            "rows": self.rows,
            "message": self.message,
            "examples": list(self.examples),
            "setting": self.setting,
        }


@dataclass(frozen=True)
class ValidationReport:
    """All rule results for one table, and what cleaning kept."""

    rules: list[RuleResult]
    rows_in: int
    rows_out: int
    returns: int = 0
    data_version: str | None = None
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def errors(self) -> list[RuleResult]:
        """Rules that stop the run."""
        return [r for r in self.rules if r.status == "failed"]

    @property
    def warnings(self) -> list[RuleResult]:
        """Rules that found rows their policy keeps."""
        return [r for r in self.rules if r.status == "warning"]

    @property
    def dropped(self) -> dict[str, int]:
        """Rows removed, by rule."""
        return {r.name: r.rows for r in self.rules if r.status == "dropped"}

    @property
    def passed(self) -> bool:
        """True when nothing stops the run."""
        return not self.errors

    def rule(self, name: str) -> RuleResult:
        """The result of the rule called ``name``."""
        for result in self.rules:
            if result.name == name:
                return result
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "passed": self.passed,
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "dropped": self.dropped,
            "returns": self.returns,
            "data_version": self.data_version,
            "created_at": self.created_at,
            "errors": [r.name for r in self.errors],
            "warnings": [r.name for r in self.warnings],
            "rules": [r.to_dict() for r in self.rules],
        }

    def write_json(self, path: Path | str) -> Path:
        """Write the report as JSON; returns the path."""
        return write_file(path, json.dumps(self.to_dict(), indent=2) + "\n")

    def write_html(self, path: Path | str) -> Path:
        """Write a self-contained HTML page with one table row per rule; returns the path."""
        return write_file(path, _render_html(self))

    def write_markdown(self, path: Path | str) -> Path:
        """Write the report as a Markdown table; returns the path."""
        return write_file(path, _render_markdown(self))

    def raise_for_errors(self, report_path: Path | str | None = None) -> None:
        """Raise `DataValidationError` naming every rule that stops the run, if there is one:
        per rule its row count and a few examples, the report at `report_path`, and the
        settings that change the outcome."""
        if not self.errors:
            return
        details = "; ".join(
            f"{r.name} ({r.rows} rows): {r.message}; change with {r.setting}" for r in self.errors
        )
        causes = [
            f"{r.name}: {r.message}" + (f"; e.g. {'; '.join(r.examples[:2])}" if r.examples else "")
            for r in self.errors
        ]
        raise DataValidationError(
            f"data validation failed: {details}",
            cause_lines=causes,
            report=None if report_path is None else str(report_path),
            setting="; ".join(_setting_hint(r) for r in self.errors),
        )


def _setting_hint(rule: RuleResult) -> str:
    """The key that changes a failed rule's outcome, and what it can be set to."""
    if rule.name in RULE_POLICIES:
        choices = " | ".join(RULE_POLICIES[rule.name])
        return f"{rule.setting}: {choices} (now {rule.policy})"
    return rule.setting


# -- the schema ----------------------------------------------------------------------------


def _schema() -> pa.DataFrameSchema:
    """Columns present with their canonical types; missing values are the row rules' job."""
    columns = {
        name: pa.Column(dtype, nullable=True, required=True)
        for name, (dtype, _) in REQUIRED_TYPES.items()
    }
    return pa.DataFrameSchema(columns, strict=False, coerce=False)


def _schema_problems(frame: pd.DataFrame) -> list[str]:
    """What is wrong with the table's columns ([] when nothing is)."""
    with warnings.catch_warnings():
        # pandera's own concat of failure cases trips a pandas FutureWarning
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"pandera\.")
        try:
            _schema().validate(frame, lazy=True)
        except SchemaErrors as exc:
            cases = exc.failure_cases
        else:
            return []
    problems = []
    for check, column, value in zip(
        cases["check"], cases["column"], cases["failure_case"], strict=True
    ):
        if check == "column_in_dataframe":
            problems.append(f"column {value!r} is missing")
        else:
            problems.append(
                f"column {column!r} has dtype {value}, expected {REQUIRED_TYPES[column][1]}"
            )
    return problems


# -- entry point ---------------------------------------------------------------------------


def _row_result(found: RuleRows, rules: ValidationSettings) -> RuleResult:
    message = describe(found.rule, rules)
    if found.rows:
        verb = {Policy.drop: " dropped", Policy.keep: " kept", Policy.stop: ""}[found.policy]
        message = f"{found.rows:,} rows{verb}: {message}"
    return RuleResult(found.rule, found.policy, found.rows, message, found.examples)


def _limits(cleaning: Cleaning, rules: ValidationSettings) -> list[RuleResult]:
    share = cleaning.dropped_share
    dropped = sum(cleaning.dropped.values())
    share_message = (
        f"{share:.1%} of rows dropped ({dropped} of {cleaning.rows_in}); at most "
        f"{rules.max_dropped_share:.0%} may be"
    )
    too_many = share > rules.max_dropped_share
    left = len(cleaning.frame)
    return [
        RuleResult(
            DROPPED_SHARE,
            Policy.stop,
            dropped if too_many else 0,
            share_message,
            [f"{rule}: {n}" for rule, n in cleaning.dropped.items()] if too_many else [],
        ),
        RuleResult(
            MIN_ROWS,
            Policy.stop,
            0 if left >= rules.min_rows else left,
            f"{left} rows after cleaning; at least {rules.min_rows} needed",
        ),
    ]


def validate(
    transactions: pd.DataFrame, settings: Settings, data_version: str | None = None
) -> tuple[ValidationReport, pd.DataFrame]:
    """Check ``transactions`` against the schema and every rule; the report, and the
    cleaned table (empty when the schema is broken: the rules could not run)."""
    problems = _schema_problems(transactions)
    if problems:
        not_checked = [
            RuleResult(name, Policy.stop, 0, f"not checked: see {REQUIRED_COLUMNS}", checked=False)
            for name in RULES[1:]
        ]
        structure = RuleResult(
            REQUIRED_COLUMNS, Policy.stop, len(transactions), "; ".join(problems), problems
        )
        report = ValidationReport([structure, *not_checked], len(transactions), 0, 0, data_version)
        _log(report)
        return report, transactions.iloc[0:0]
    rules = settings.validation
    cleaning = clean(transactions, rules, settings.source)
    structure = RuleResult(
        REQUIRED_COLUMNS,
        Policy.stop,
        0,
        "customer_id (string), timestamp (datetime64[ns]) and amount (float64) present",
    )
    results = [
        structure,
        *(_row_result(found, rules) for found in cleaning.found),
        *_limits(cleaning, rules),
    ]
    report = ValidationReport(
        results, cleaning.rows_in, len(cleaning.frame), cleaning.returns, data_version
    )
    _log(report)
    return report, cleaning.frame


def _log(report: ValidationReport) -> None:
    for result in report.rules:
        if result.status != "passed":
            log = logger.error if result.status == "failed" else logger.warning
            log("%s %s (%d rows): %s", result.name, result.status, result.rows, result.message)


# -- rendering -----------------------------------------------------------------------------


_HTML_COLUMNS = ("Rule", "Status", "Policy", "Rows", "Message and setting", "Examples")
_STATUS_COLOURS = {
    "passed": "#1a7f37",
    "dropped": "#0969da",
    "warning": "#9a6700",
    "failed": "#cf222e",
}


def _headline(report: ValidationReport) -> str:
    """Rows in and out, drops by reason, returns, errors and warnings: one line."""
    dropped = ", ".join(f"{n} {rule}" for rule, n in report.dropped.items()) or "none"
    return (
        f"{report.rows_in} rows read, {report.rows_out} kept (dropped: {dropped}); "
        f"{report.returns} returns; {len(report.errors)} errors, "
        f"{len(report.warnings)} warnings"
    )


def _render_html(report: ValidationReport) -> str:
    """The report as one self-contained HTML page."""
    verdict = "passed" if report.passed else "failed"
    rows = [
        [
            code(r.name),
            (f'<span style="color:{_STATUS_COLOURS[r.status]}">{r.status}</span>', "status"),
            html.escape(str(r.policy)),
            (str(r.rows), "num"),
            f"{html.escape(r.message)}<br><small>{code(r.setting)}</small>",
            bullets(r.examples, as_code=True),
        ]
        for r in report.rules
    ]
    version = html.escape(report.data_version or "n/a")
    heading = (
        f'Data validation: <span style="color:{_STATUS_COLOURS[verdict]}">{verdict.upper()}</span>'
    )
    intro = (
        f"<p>{html.escape(_headline(report))} &middot; data version <code>{version}</code> "
        f"&middot; {html.escape(report.created_at)}</p>\n" + markup_table(_HTML_COLUMNS, rows)
    )
    return render_page(f"Data validation: {verdict}", intro=intro, heading=heading)


def _md_cell(text: str) -> str:
    """Text made safe for one Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _render_markdown(report: ValidationReport) -> str:
    """The report as a Markdown document."""
    lines = [
        f"# Data validation: {'passed' if report.passed else 'FAILED'}",
        "",
        f"{_headline(report)}; data version `{report.data_version or 'n/a'}` "
        f"({report.created_at}).",
        "",
        "| Rule | Status | Policy | Rows | Message | Examples |",
        "| --- | --- | --- | ---: | --- | --- |",
    ]
    for r in report.rules:
        examples = "<br>".join(f"`{_md_cell(e)}`" for e in r.examples)
        lines.append(
            f"| `{r.name}` | {r.status} | {r.policy} | {r.rows} "
            f"| {_md_cell(r.message)} | {examples} |"
        )
    return "\n".join(lines) + "\n"
