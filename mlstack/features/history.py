"""Transaction lines as per-customer event arrays: the orders (purchases grouped by invoice or
by customer and day, returns apart), sorted by (customer, day), with the prefix sums the
point-in-time features are read from (`order_history`). See `mlstack.features.build`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mlstack.config import SourceSettings
from mlstack.data.clean import IS_RETURN, mark_returns
from mlstack.features.definitions import (
    ENTITY,
    attribute_names,
)

EPOCH_DAY = np.datetime64(0, "D")


@dataclass(frozen=True)
class Events:
    """Events of one kind (orders, returns, first purchases of a product) sorted by
    (customer code, day): their combined key and prefix sums along that order.

    Prefix arrays have one more element than there are events: ``cum[i]`` sums events
    ``[0, i)``, so the sum over events ``[a, b)`` is ``cum[b] - cum[a]``.
    """

    key: np.ndarray  # code * stride + (day - origin), non-decreasing
    origin: int
    stride: int
    cum: dict[str, np.ndarray] = field(default_factory=dict)

    def upto(self, code: np.ndarray, day: np.ndarray) -> np.ndarray:
        """End position (exclusive) of each customer's events on or before each day."""
        rel = np.clip(day - self.origin, -1, self.stride - 2)
        return np.searchsorted(self.key, code * self.stride + rel, side="right")

    def first(self, code: np.ndarray) -> np.ndarray:
        """Start position of each customer's events."""
        return np.searchsorted(self.key, code * self.stride - 1, side="right")

    def total(self, name: str, code: np.ndarray, a_day: np.ndarray | None, b_day: np.ndarray):
        """Sum of ``name`` over each customer's events in (a_day, b_day] (a_day None: all
        events up to b_day); exactly 0 where there are none."""
        b = self.upto(code, b_day)
        a = self.first(code) if a_day is None else self.upto(code, a_day)
        cum = self.cum[name]
        return np.where(a == b, 0, cum[b] - cum[a])


@dataclass(frozen=True)
class History:
    """A log's orders (with per-order facts), returns and first product purchases."""

    customers: pd.Index  # customer ids with an order, sorted; the position is the code
    orders: Events  # cum: amount, quantity (when mapped), gap, gap_sq
    start: np.ndarray  # first order of each customer, plus the total order count at the end
    day: np.ndarray  # day number (days since 1970-01-01) of each order
    gap: np.ndarray  # days since the customer's previous order (0 for the first)
    returns: Events  # cum: amount (negative), count
    products: Events | None  # cum: count (one per customer's first purchase of a product)
    attributes: dict[str, np.ndarray]  # the value on each order (its last line)
    last_timestamp: pd.Timestamp


def prefix(values: np.ndarray) -> np.ndarray:
    out = np.zeros(len(values) + 1, dtype=values.dtype)
    np.cumsum(values, out=out[1:])
    return out


def naive_utc(values: pd.Series | pd.DatetimeIndex) -> pd.DatetimeIndex:
    """Timestamps as a naive UTC DatetimeIndex (tz-aware input is converted)."""
    index = pd.DatetimeIndex(values)
    if index.tz is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    return index.as_unit("ns")


def day_numbers(index: pd.DatetimeIndex) -> np.ndarray:
    return (index.values.astype("datetime64[D]") - EPOCH_DAY).astype(np.int64)


def group_ids(lines: pd.DataFrame, day: np.ndarray) -> np.ndarray:
    """Which order each line belongs to, within its customer: its invoice when the log has
    invoice ids (a line without one is an order of its own day), else its day."""
    if "invoice_id" not in lines.columns:
        return day
    invoice = lines["invoice_id"].astype("string")
    invoice = invoice.fillna(pd.Series(day, index=lines.index).map("@day{}".format))
    return pd.factorize(invoice)[0].astype(np.int64)


def grouped(
    lines: pd.DataFrame, code: np.ndarray, day: np.ndarray, columns: dict[str, str]
) -> pd.DataFrame:
    """One row per order of these lines: code, day (its latest line's), stamp and the
    aggregated `columns` (name: pandas aggregation), sorted by (code, day, stamp)."""
    frame = pd.DataFrame(
        {
            "code": code,
            "group": group_ids(lines, day),
            "day": day,
            "stamp": naive_utc(lines["timestamp"]).asi8,
            **{name: lines[name].to_numpy() for name in columns},
        }
    )
    aggregations = {"day": "max", "stamp": "max", **columns}
    grouped = frame.groupby(["code", "group"], sort=False).agg(aggregations).reset_index()
    return grouped.sort_values(["code", "day", "stamp"], kind="stable").reset_index(drop=True)


def mapped(lines: pd.DataFrame, source: SourceSettings, column: str) -> bool:
    """Whether the settings map this canonical column; raise if the log then lacks it."""
    mapping = source.columns
    if column not in mapping.attributes() and getattr(mapping, column, None) is None:
        return False
    if column not in lines.columns:
        raise ValueError(f"settings map a {column} column but the transactions have none")
    return True


def order_history(
    transactions: pd.DataFrame, source: SourceSettings, *, full: bool = True
) -> History:
    """Group the log into orders and returns (``full``: also products, attributes and
    quantities, which only the features need)."""
    if transactions.empty:
        raise ValueError("the transaction log is empty")
    lines = transactions
    if IS_RETURN not in lines.columns:  # a log that skipped validation (tests, benches)
        lines = mark_returns(lines, source)
    ids = lines[ENTITY].astype("string")
    if ids.isna().any():
        raise ValueError(
            f"{ENTITY} has missing values: clean the log first (validation.policies."
            "missing_customer_id)"
        )
    stamps = naive_utc(lines["timestamp"])
    if stamps.hasnans:
        raise ValueError("timestamp has missing values: clean the log first")
    is_return = lines[IS_RETURN].to_numpy(bool)
    if is_return.all():
        raise ValueError("the transaction log has no purchases, only returns")
    customers = pd.Index(ids[~is_return].unique(), name=ENTITY).sort_values()
    code = customers.get_indexer(ids).astype(np.int64)
    day = day_numbers(stamps.ceil("D"))
    origin = int(day.min())
    stride = int(day.max()) - origin + 2
    if len(customers) * stride >= np.iinfo(np.int64).max:
        raise ValueError("too many customers x days for the (customer, day) key")

    def events(frame: pd.DataFrame, cum: dict[str, np.ndarray]) -> Events:
        key = frame["code"].to_numpy(np.int64) * stride + (frame["day"].to_numpy() - origin)
        return Events(key=key, origin=origin, stride=stride, cum=cum)

    buy = ~is_return
    sums = {"amount": "sum"}
    if full and mapped(lines, source, "quantity"):
        sums["quantity"] = "sum"
    attributes = [a for a in attribute_names(source) if full and mapped(lines, source, a)]
    per_order = {**sums, **dict.fromkeys(attributes, "last")}
    orders = grouped(lines.loc[buy], code[buy], day[buy], per_order)
    order_code = orders["code"].to_numpy(np.int64)
    order_day = orders["day"].to_numpy(np.int64)
    start = np.searchsorted(order_code, np.arange(len(customers) + 1), side="left")
    gap = np.diff(order_day, prepend=order_day[0])
    gap[start[:-1]] = 0
    cum = {name: prefix(orders[name].to_numpy(float)) for name in sums}
    cum |= {"gap": prefix(gap), "gap_sq": prefix(gap * gap)}

    back = is_return & (code >= 0)  # a return by someone with no purchase in the log: unused
    returned = grouped(lines.loc[back], code[back], day[back], {"amount": "sum"})
    returns = events(
        returned,
        {
            "amount": prefix(returned["amount"].to_numpy(float)),
            "count": prefix(np.ones(len(returned), dtype=np.int64)),
        },
    )
    products = None
    if full and mapped(lines, source, "product_id"):
        bought = pd.DataFrame(
            {"code": code[buy], "product": lines.loc[buy, "product_id"].to_numpy(), "day": day[buy]}
        ).dropna()
        firsts = bought.groupby(["code", "product"], sort=False)["day"].min().reset_index()
        firsts = firsts.sort_values(["code", "day"], kind="stable")
        products = events(firsts, {"count": prefix(np.ones(len(firsts), dtype=np.int64))})
    return History(
        customers=customers,
        orders=events(orders, cum),
        start=start,
        day=order_day,
        gap=gap,
        returns=returns,
        products=products,
        attributes={a: orders[a].to_numpy(object) for a in attributes},
        last_timestamp=stamps.max(),
    )
