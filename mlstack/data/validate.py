"""Validate: schema and quality rules for the canonical transaction table.

Every rule is a named pandera check (or a pandera built-in: column presence, dtype,
nullability) in one schema, validated lazily. Failures are attributed to rules by check
name and counted in rows. Each rule has a severity from ``validation.severities``: a failed
``error`` rule fails the report, a failed ``warning`` rule is only reported.
"""

from __future__ import annotations

import contextlib
import html
import json
import logging
import warnings
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from mlstack.config import Settings, Severity
from mlstack.data.ingest import EXACT_DUPLICATE, IngestResult
from mlstack.failures import ExplainedError

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = "required_columns"
CUSTOMER_ID_NOT_NULL = "customer_id_not_null"
AMOUNT_POSITIVE_UNLESS_RETURN = "amount_positive_unless_return"
TIMESTAMP_IN_RANGE = "timestamp_in_range"
DUPLICATE_SHARE = "duplicate_share"
MIN_ROWS = "min_rows"
RULES = (
    REQUIRED_COLUMNS,
    CUSTOMER_ID_NOT_NULL,
    AMOUNT_POSITIVE_UNLESS_RETURN,
    TIMESTAMP_IN_RANGE,
    DUPLICATE_SHARE,
    MIN_ROWS,
)

# canonical column → (pandera dtype, how to describe it)
REQUIRED_TYPES: dict[str, tuple[Any, str]] = {
    "customer_id": (pa.String, "string"),
    "timestamp": ("datetime64[ns]", "datetime64[ns]"),
    "amount": ("float64", "float64"),
}
MAX_EXAMPLES = 5


class DataValidationError(ExplainedError, ValueError):
    """The data broke at least one error-severity rule."""


@dataclass(frozen=True)
class RuleResult:
    """The outcome of one rule."""

    name: str
    severity: Severity
    passed: bool
    failed_rows: int
    message: str
    examples: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        """``passed``, or ``failed`` for a failed error rule, ``warning`` for a failed warning."""
        if self.passed:
            return "passed"
        return "failed" if self.severity == Severity.error else "warning"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "name": self.name,
            "severity": str(self.severity),
            "passed": self.passed,
            "status": self.status,
            "failed_rows": self.failed_rows,
            "message": self.message,
            "examples": list(self.examples),
        }


@dataclass(frozen=True)
class ValidationReport:
    """All rule results for one table."""

    rules: list[RuleResult]
    rows: int
    data_version: str | None = None
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def errors(self) -> list[RuleResult]:
        """Failed rules of error severity."""
        return [r for r in self.rules if not r.passed and r.severity == Severity.error]

    @property
    def warnings(self) -> list[RuleResult]:
        """Failed rules of warning severity."""
        return [r for r in self.rules if not r.passed and r.severity != Severity.error]

    @property
    def passed(self) -> bool:
        """True when no error-severity rule failed."""
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
            "rows": self.rows,
            "data_version": self.data_version,
            "created_at": self.created_at,
            "errors": [r.name for r in self.errors],
            "warnings": [r.name for r in self.warnings],
            "rules": [r.to_dict() for r in self.rules],
        }

    def write_json(self, path: Path | str) -> Path:
        """Write the report as JSON; returns the path."""
        return _write(path, json.dumps(self.to_dict(), indent=2) + "\n")

    def write_html(self, path: Path | str) -> Path:
        """Write a self-contained HTML page with one table row per rule; returns the path."""
        return _write(path, _render_html(self))

    def write_markdown(self, path: Path | str) -> Path:
        """Write the report as a Markdown table; returns the path."""
        return _write(path, _render_markdown(self))

    def raise_for_errors(self, report_path: Path | str | None = None) -> None:
        """Raise `DataValidationError` naming every failed error rule, if there is one: per
        rule its row count and a few examples, the report at `report_path`, and the severity
        settings that would let the run go on."""
        if self.errors:
            details = "; ".join(
                f"{r.name} ({r.failed_rows} rows): {r.message}" for r in self.errors
            )
            causes = [
                f"{r.name}: {r.failed_rows:,} rows failed — {r.message}"
                + (f"; e.g. {', '.join(r.examples[:3])}" if r.examples else "")
                for r in self.errors
            ]
            keys = ", ".join(f"validation.severities.{r.name}" for r in self.errors)
            raise DataValidationError(
                f"data validation failed: {details}",
                cause_lines=causes,
                report=report_path,
                setting=f"{keys} (error stops the run; warning reports and goes on)",
            )


# -- the rules as pandera checks -----------------------------------------------------------


def _is_usable(frame: pd.DataFrame, column: str) -> bool:
    """Whether ``column`` exists with its required type, so value checks can run on it."""
    if column not in frame.columns:
        return False
    dtype = frame[column].dtype
    if column == "customer_id":
        return pd.api.types.is_string_dtype(dtype)
    return str(dtype) == REQUIRED_TYPES[column][1]


def _amount_sign_ok(frame: pd.DataFrame) -> pd.Series:
    """Per row: purchases have a positive amount, returns a negative one; NaN is not judged.

    A return is a row with negative quantity; without a quantity column, a negative amount
    is taken as a return (nothing else can mark one).
    """
    amount = frame["amount"]
    if "quantity" in frame.columns:
        is_return = pd.to_numeric(frame["quantity"], errors="coerce").lt(0)
        ok = amount.lt(0).where(is_return, amount.gt(0))
    else:
        ok = amount.ne(0)
    return ok | amount.isna()


def _time_bounds(settings: Settings) -> tuple[date, date]:
    """First and last allowed day (both inclusive)."""
    rules = settings.validation
    return rules.earliest_timestamp, rules.latest_timestamp or date.today()


def build_schema(
    frame: pd.DataFrame, settings: Settings, duplicate_share: float
) -> pa.DataFrameSchema:
    """The pandera schema for ``frame``; value checks are left out where a column is unusable."""
    rules = settings.validation
    first, last = _time_bounds(settings)
    column_checks: dict[str, list[pa.Check]] = {
        "customer_id": [
            pa.Check.str_matches(r"\s*\S", name=CUSTOMER_ID_NOT_NULL, error=CUSTOMER_ID_NOT_NULL)
        ],
        "timestamp": [
            pa.Check.in_range(
                pd.Timestamp(first),
                pd.Timestamp(last + timedelta(days=1)),
                include_max=False,
                name=TIMESTAMP_IN_RANGE,
                error=TIMESTAMP_IN_RANGE,
            )
        ],
        "amount": [],
    }
    columns = {
        name: pa.Column(
            dtype,
            nullable=False,
            required=True,
            checks=column_checks[name] if _is_usable(frame, name) else [],
        )
        for name, (dtype, _) in REQUIRED_TYPES.items()
    }
    checks = [
        pa.Check(lambda df: len(df) >= rules.min_rows, name=MIN_ROWS),
        pa.Check(lambda df: duplicate_share <= rules.max_duplicate_share, name=DUPLICATE_SHARE),
    ]
    if _is_usable(frame, "amount"):
        checks.append(pa.Check(_amount_sign_ok, name=AMOUNT_POSITIVE_UNLESS_RETURN))
    return pa.DataFrameSchema(columns, checks=checks, strict=False, coerce=False)


def _failure_cases(schema: pa.DataFrameSchema, frame: pd.DataFrame) -> pd.DataFrame:
    """Pandera's failure cases for ``frame`` (empty when everything passed)."""
    with warnings.catch_warnings():
        # pandera's own concat of failure cases trips a pandas FutureWarning
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"pandera\.")
        try:
            schema.validate(frame, lazy=True)
        except SchemaErrors as exc:
            return exc.failure_cases
    return pd.DataFrame(columns=["schema_context", "column", "check", "failure_case", "index"])


def _rule_of(case_check: str, column: Any) -> str:
    """The rule a pandera failure case belongs to."""
    if case_check in RULES:
        return case_check
    if case_check == "not_nullable" and column == "customer_id":
        return CUSTOMER_ID_NOT_NULL
    return REQUIRED_COLUMNS  # column_in_dataframe, dtype(...), not_nullable on timestamp/amount


def _example(case: pd.Series) -> str:
    """One failure case as a short readable string."""
    check, column, value, index = case["check"], case["column"], case["failure_case"], case["index"]
    if check == "column_in_dataframe":
        return f"column {value!r} is missing"
    if str(check).startswith("dtype("):
        return f"column {column!r} has dtype {value}, expected {REQUIRED_TYPES[column][1]}"
    if pd.isna(index):
        return f"{check}: {value}"
    shown = "null" if pd.isna(value) else (repr(value) if isinstance(value, str) else str(value))
    return f"row {index}: {column}={shown}"


def _failed_rows(cases: pd.DataFrame, rows: int) -> int:
    """Rows broken by these failure cases; a column-wide failure breaks every row."""
    if cases["index"].isna().any():
        return rows
    return int(cases["index"].nunique())


# -- messages ------------------------------------------------------------------------------


def _describe(name: str, settings: Settings) -> str:
    """What the rule requires, in words."""
    rules = settings.validation
    first, last = _time_bounds(settings)
    return {
        REQUIRED_COLUMNS: "customer_id (string), timestamp (datetime64[ns]) and amount (float64) "
        "present, with no unparseable values",
        CUSTOMER_ID_NOT_NULL: "no null or blank customer ids",
        AMOUNT_POSITIVE_UNLESS_RETURN: "amount > 0, or < 0 for returns (negative quantity)",
        TIMESTAMP_IN_RANGE: f"timestamps within {first}..{last}",
        DUPLICATE_SHARE: f"exact duplicates at most {rules.max_duplicate_share:.2%} of rows",
        MIN_ROWS: f"at least {rules.min_rows} rows",
    }[name]


def _failure_message(
    name: str, settings: Settings, cases: pd.DataFrame, frame: pd.DataFrame, dupes: _Duplicates
) -> str:
    """Why the rule failed, in words."""
    rules = settings.validation
    first, last = _time_bounds(settings)
    if name == REQUIRED_COLUMNS:
        return _required_message(cases)
    if name == CUSTOMER_ID_NOT_NULL:
        return "null or blank customer ids"
    if name == AMOUNT_POSITIVE_UNLESS_RETURN:
        amounts = cases.loc[cases["column"] == "amount", "failure_case"]
        zeros = int((pd.to_numeric(amounts, errors="coerce") == 0).sum())
        return f"amounts not > 0 (or not < 0 for returns); {zeros} of them are zero"
    if name == TIMESTAMP_IN_RANGE:
        return f"timestamps outside {first}..{last}"
    if name == DUPLICATE_SHARE:
        return (
            f"{dupes.share:.2%} of rows were exact duplicates ({dupes.count} of {dupes.rows_read}"
            f", {dupes.origin}), above the {rules.max_duplicate_share:.2%} limit"
        )
    return f"only {len(frame)} rows, need at least {rules.min_rows}"


def _required_message(cases: pd.DataFrame) -> str:
    """Missing or mistyped columns, and how many values of each column are unparseable."""
    whole_column = cases["index"].isna()
    parts = [_example(case) for _, case in cases.loc[whole_column].iterrows()]
    nulls = cases.loc[~whole_column & cases["check"].eq("not_nullable")]
    for column, count in nulls.groupby("column")["index"].nunique().items():
        parts.append(f"{count} rows with a null or unparseable {column}")
    return "; ".join(parts)


@dataclass(frozen=True)
class _Duplicates:
    """Exact duplicates: how many, out of how many rows read, and where the figure came from."""

    count: int
    rows_read: int
    origin: str

    @property
    def share(self) -> float:
        return self.count / self.rows_read if self.rows_read else 0.0


def _duplicates(
    frame: pd.DataFrame, ingest_stats: dict[str, Any] | IngestResult | None
) -> _Duplicates:
    """Duplicates dropped by ingest, or, without ingest stats, those still in ``frame``."""
    if ingest_stats is None:
        return _Duplicates(int(frame.duplicated().sum()), len(frame), "found in the table")
    stats = ingest_stats.to_dict() if isinstance(ingest_stats, IngestResult) else ingest_stats
    rows_read = int(stats.get("rows_read", len(frame)))
    count = stats.get("dropped", {}).get(EXACT_DUPLICATE)
    if count is None:
        count = round(float(stats.get("duplicate_share", 0.0)) * rows_read)
    return _Duplicates(int(count), rows_read, "dropped by ingest")


# -- entry point ---------------------------------------------------------------------------


def validate(
    transactions: pd.DataFrame,
    settings: Settings,
    ingest_stats: dict[str, Any] | IngestResult | None = None,
) -> ValidationReport:
    """Check ``transactions`` against every rule and report each one's outcome."""
    dupes = _duplicates(transactions, ingest_stats)
    schema = build_schema(transactions, settings, dupes.share)
    cases = _failure_cases(schema, transactions)
    rule_of = [_rule_of(c, col) for c, col in zip(cases["check"], cases["column"], strict=True)]
    by_rule = dict(iter(cases.groupby(pd.Series(rule_of, index=cases.index, dtype=object))))
    results = [
        _rule_result(name, settings, by_rule.get(name), transactions, dupes) for name in RULES
    ]
    version = None
    if isinstance(ingest_stats, IngestResult):
        version = ingest_stats.data_version
    elif ingest_stats:
        version = ingest_stats.get("data_version")
    report = ValidationReport(rules=results, rows=len(transactions), data_version=version)
    for result in results:
        if not result.passed:
            log = logger.error if result.severity == Severity.error else logger.warning
            log("%s failed (%d rows): %s", result.name, result.failed_rows, result.message)
    return report


def _rule_result(
    name: str,
    settings: Settings,
    cases: pd.DataFrame | None,
    frame: pd.DataFrame,
    dupes: _Duplicates,
) -> RuleResult:
    """One rule's outcome from its failure cases (None: it passed or was not checked)."""
    severity = Severity(settings.validation.severities.get(name, Severity.error))
    if cases is None:
        blocked = _blocked_by(name, frame)
        if blocked:
            return RuleResult(name, severity, False, 0, f"not checked: {blocked}")
        return RuleResult(name, severity, True, 0, _describe(name, settings))
    if name == MIN_ROWS:
        failed = len(frame)
    elif name == DUPLICATE_SHARE:
        failed = dupes.count
    else:
        failed = _failed_rows(cases, len(frame))
    examples = [] if name in (MIN_ROWS, DUPLICATE_SHARE) else _examples(name, cases)
    message = _failure_message(name, settings, cases, frame, dupes)
    return RuleResult(name, severity, False, failed, message, examples)


def _examples(name: str, cases: pd.DataFrame) -> list[str]:
    """A few offending values for a row-level rule."""
    if name == AMOUNT_POSITIVE_UNLESS_RETURN:
        cases = cases.loc[cases["column"].isin(["amount", "quantity"])]
    with contextlib.suppress(TypeError):  # mixed index labels do not sort; keep pandera's order
        cases = cases.sort_values("index", kind="stable")
    return [_example(case) for _, case in cases.head(MAX_EXAMPLES).iterrows()]


def _blocked_by(name: str, frame: pd.DataFrame) -> str:
    """Why a value rule could not run on ``frame`` ('' when it could)."""
    needs = {
        CUSTOMER_ID_NOT_NULL: "customer_id",
        AMOUNT_POSITIVE_UNLESS_RETURN: "amount",
        TIMESTAMP_IN_RANGE: "timestamp",
    }.get(name)
    if needs is None or _is_usable(frame, needs):
        return ""
    return f"needs column {needs!r} of type {REQUIRED_TYPES[needs][1]} (see {REQUIRED_COLUMNS})"


# -- rendering -----------------------------------------------------------------------------


def _write(path: Path | str, text: str) -> Path:
    """Write ``text`` to ``path``, creating parent folders."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target


_STATUS_COLOURS = {"passed": "#1a7f37", "warning": "#9a6700", "failed": "#cf222e"}

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #1f2328; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #d0d7de; padding: 0.4rem 0.6rem; text-align: left;
         vertical-align: top; }
th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.status { font-weight: 600; text-transform: uppercase; }
ul { margin: 0; padding-left: 1.1rem; }
code { font-size: 0.9em; }
"""


def _render_html(report: ValidationReport) -> str:
    """The report as one self-contained HTML page."""
    verdict = "passed" if report.passed else "failed"
    rows = []
    for r in report.rules:
        colour = _STATUS_COLOURS[r.status]
        examples = "".join(f"<li><code>{html.escape(e)}</code></li>" for e in r.examples)
        rows.append(
            "<tr>"
            f"<td><code>{html.escape(r.name)}</code></td>"
            f'<td class="status" style="color:{colour}">{r.status}</td>'
            f"<td>{html.escape(str(r.severity))}</td>"
            f'<td class="num">{r.failed_rows}</td>'
            f"<td>{html.escape(r.message)}</td>"
            f"<td>{f'<ul>{examples}</ul>' if examples else ''}</td>"
            "</tr>"
        )
    version = html.escape(report.data_version or "n/a")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>Data validation: {verdict}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f'<h1>Data validation: <span style="color:{_STATUS_COLOURS[verdict]}">'
        f"{verdict.upper()}</span></h1>\n"
        f"<p>{report.rows} rows &middot; data version <code>{version}</code> &middot; "
        f"{len(report.errors)} errors, {len(report.warnings)} warnings &middot; "
        f"{html.escape(report.created_at)}</p>\n"
        "<table>\n<thead><tr><th>Rule</th><th>Status</th><th>Severity</th>"
        "<th>Failed rows</th><th>Message</th><th>Examples</th></tr></thead>\n<tbody>\n"
        + "\n".join(rows)
        + "\n</tbody>\n</table>\n</body>\n</html>\n"
    )


def _md_cell(text: str) -> str:
    """Text made safe for one Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _render_markdown(report: ValidationReport) -> str:
    """The report as a Markdown document."""
    lines = [
        f"# Data validation: {'passed' if report.passed else 'FAILED'}",
        "",
        f"{report.rows} rows, data version `{report.data_version or 'n/a'}`, "
        f"{len(report.errors)} errors, {len(report.warnings)} warnings ({report.created_at}).",
        "",
        "| Rule | Status | Severity | Failed rows | Message | Examples |",
        "| --- | --- | --- | ---: | --- | --- |",
    ]
    for r in report.rules:
        examples = "<br>".join(f"`{_md_cell(e)}`" for e in r.examples)
        lines.append(
            f"| `{r.name}` | {r.status} | {r.severity} | {r.failed_rows} "
            f"| {_md_cell(r.message)} | {examples} |"
        )
    return "\n".join(lines) + "\n"
