"""Cleaning: the row rules of the canonical transaction table, and what each policy does.

Each rule flags rows; a row is counted under the first rule it breaks (the order of
`ROW_RULES`), so the counts by reason add up to the rows flagged. The policy of a rule
(``validation.policies``) decides what happens to its rows: ``drop`` removes them,
``keep`` leaves them in with a warning, ``stop`` leaves them in and fails validation.

The cleaned table also says which rows are returns (``is_return``): a negative quantity or
amount, or an invoice id that starts with ``source.return_invoice_pattern``. A return's
amount and quantity are made negative whatever sign the log used, so sums are net.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd

from mlstack.config import Policy, Settings, SourceSettings, ValidationSettings
from mlstack.data.ingest import normalise, read_source

MISSING_CUSTOMER_ID = "missing_customer_id"
UNPARSEABLE_TIMESTAMP = "unparseable_timestamp"
UNPARSEABLE_AMOUNT = "unparseable_amount"
EXCLUDED_CUSTOMER = "excluded_customer"
TIMESTAMP_OUT_OF_RANGE = "timestamp_out_of_range"
ZERO_AMOUNT = "zero_amount"
EXACT_DUPLICATE = "exact_duplicate"
# attribution order: a row that cannot be attributed or read says so before anything else
ROW_RULES = (
    MISSING_CUSTOMER_ID,
    UNPARSEABLE_TIMESTAMP,
    UNPARSEABLE_AMOUNT,
    EXCLUDED_CUSTOMER,
    TIMESTAMP_OUT_OF_RANGE,
    ZERO_AMOUNT,
    EXACT_DUPLICATE,
)

IS_RETURN = "is_return"
MAX_EXAMPLES = 5


@dataclass(frozen=True)
class RuleRows:
    """The rows one rule flagged (each counted under its first rule only)."""

    rule: str
    policy: Policy
    rows: int
    examples: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Cleaning:
    """The cleaned table and what each rule found."""

    frame: pd.DataFrame
    rows_in: int
    found: list[RuleRows]

    @property
    def dropped(self) -> dict[str, int]:
        """Rows removed, by rule (rules that removed nothing are left out)."""
        return {r.rule: r.rows for r in self.found if r.policy == Policy.drop and r.rows}

    @property
    def dropped_share(self) -> float:
        return sum(self.dropped.values()) / self.rows_in if self.rows_in else 0.0

    @property
    def returns(self) -> int:
        return int(self.frame[IS_RETURN].sum())


def time_bounds(rules: ValidationSettings) -> tuple[date, date]:
    """First and last allowed day (both inclusive)."""
    return rules.earliest_timestamp, rules.latest_timestamp or date.today()


def describe(rule: str, rules: ValidationSettings) -> str:
    """What the rule flags, in words."""
    first, last = time_bounds(rules)
    pattern = rules.excluded_customers
    return {
        MISSING_CUSTOMER_ID: "lines with no customer id (they cannot be attributed)",
        UNPARSEABLE_TIMESTAMP: "timestamps that are missing or do not parse",
        UNPARSEABLE_AMOUNT: "amounts (or quantities) that are missing or do not parse",
        EXCLUDED_CUSTOMER: f"customer ids matching validation.excluded_customers ({pattern!r})"
        if pattern
        else "excluded customer ids (no validation.excluded_customers pattern set)",
        TIMESTAMP_OUT_OF_RANGE: f"timestamps outside {first}..{last}",
        ZERO_AMOUNT: "lines with a zero amount",
        EXACT_DUPLICATE: "exact repeats of an earlier line (the first is kept)",
    }[rule]


def _flags(frame: pd.DataFrame, rules: ValidationSettings) -> dict[str, np.ndarray]:
    """Per rule, the rows that break it (before attribution to a first rule)."""
    customer = frame["customer_id"].astype("string")
    missing_id = customer.isna() | customer.str.strip().eq("").fillna(True)
    amount = frame["amount"]
    unparseable = amount.isna()
    if "quantity" in frame.columns:
        unparseable |= frame["quantity"].isna()
    stamp = frame["timestamp"]
    first, last = time_bounds(rules)
    out_of_range = (stamp < pd.Timestamp(first)) | (stamp >= pd.Timestamp(last + timedelta(days=1)))
    pattern = rules.excluded_customers
    excluded = (
        customer.str.fullmatch(pattern).fillna(False)
        if pattern
        else pd.Series(False, index=frame.index)
    )
    return {
        MISSING_CUSTOMER_ID: missing_id.to_numpy(bool),
        UNPARSEABLE_TIMESTAMP: stamp.isna().to_numpy(bool),
        UNPARSEABLE_AMOUNT: unparseable.to_numpy(bool),
        EXCLUDED_CUSTOMER: excluded.to_numpy(bool),
        TIMESTAMP_OUT_OF_RANGE: out_of_range.to_numpy(bool),
        ZERO_AMOUNT: amount.eq(0).to_numpy(bool),
        EXACT_DUPLICATE: frame.duplicated(keep="first").to_numpy(bool),
    }


def _show(value: object) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return "null"
    if isinstance(value, pd.Timestamp):
        return "NaT" if pd.isna(value) else value.isoformat(sep=" ")
    return repr(value) if isinstance(value, str) else str(value)


def _examples(frame: pd.DataFrame, rows: np.ndarray) -> list[str]:
    """A few flagged rows, as their position in the log and their values."""
    shown = frame.iloc[np.flatnonzero(rows)[:MAX_EXAMPLES]]
    return [
        f"row {position}: " + ", ".join(f"{col}={_show(val)}" for col, val in values.items())
        for position, values in zip(shown.index, shown.to_dict("records"), strict=True)
    ]


def mark_returns(frame: pd.DataFrame, source: SourceSettings) -> pd.DataFrame:
    """``frame`` with ``is_return``, and returns' amounts and quantities made negative."""
    out = frame.copy()
    is_return = out["amount"].lt(0)
    if "quantity" in out.columns:
        is_return |= out["quantity"].lt(0)
    pattern = source.return_invoice_pattern
    if pattern and "invoice_id" in out.columns:
        is_return |= out["invoice_id"].astype("string").str.match(pattern).fillna(False)
    flag = is_return.to_numpy(bool)
    out["amount"] = np.where(flag, -out["amount"].abs(), out["amount"])
    if "quantity" in out.columns:
        out["quantity"] = np.where(flag, -out["quantity"].abs(), out["quantity"])
    out[IS_RETURN] = flag
    return out


def clean(frame: pd.DataFrame, rules: ValidationSettings, source: SourceSettings) -> Cleaning:
    """Apply every row rule's policy (`rules`) to the canonical table; mark returns (as the
    `source` defines them)."""
    flags = _flags(frame, rules)
    policies = rules.policies
    unclaimed = np.ones(len(frame), dtype=bool)
    keep = np.ones(len(frame), dtype=bool)
    found = []
    for rule in ROW_RULES:
        mine = flags[rule] & unclaimed
        unclaimed &= ~mine
        policy = Policy(policies[rule])
        if policy == Policy.drop:
            keep &= ~mine
        found.append(RuleRows(rule, policy, int(mine.sum()), _examples(frame, mine)))
    kept = frame.loc[keep]
    if "customer_id" in kept.columns:
        kept = kept.assign(customer_id=kept["customer_id"].astype("string").str.strip())
    cleaned = mark_returns(kept, source).sort_values(["customer_id", "timestamp"], kind="stable")
    return Cleaning(frame=cleaned.reset_index(drop=True), rows_in=len(frame), found=found)


def read_clean(settings: Settings) -> pd.DataFrame:
    """The source log read, normalised and cleaned as the pipeline's ingest and validate
    steps do (for jobs that read the log outside the pipeline: labels, the replay).

    Only the policies apply here; validation's verdict is the pipeline's to give.
    """
    source = settings.source
    return clean(normalise(read_source(source), source), settings.validation, source).frame
