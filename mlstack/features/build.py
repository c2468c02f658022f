"""Point-in-time customer features and purchase labels on a grid of snapshot dates.

A snapshot ``t`` is a midnight instant (UTC). The features of a customer at ``t`` use only
transactions with ``timestamp <= t``; the label at ``t`` looks only at ``(t, t + horizon]``.

Lines are first grouped into *orders*: an invoice when the log maps ``invoice_id``, else a
(customer, purchase day). An order's day is the first midnight at or after its (latest)
line, i.e. the first snapshot instant that can see it, so "timestamp <= t" and "order day
<= t" are the same test and whole-day recencies are the elapsed time rounded down; the time
of day stays in the log. Returns (``is_return``, see `mlstack.data.clean`) are never
orders: orders, recency, inter-purchase times and the label count purchases only, while
spend is net of returns and the return features count them.

Every (customer, snapshot) value is computed at once from prefix sums over events sorted by
(customer, day) and binary searches on a combined (customer, day) key; nothing loops over
customers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd

from mlstack.config import Settings
from mlstack.data.clean import IS_RETURN, mark_returns
from mlstack.features.definitions import (
    ENTITY,
    EVENT_TIMESTAMP,
    attribute_names,
    feature_list,
    label_name,
)

logger = logging.getLogger(__name__)

_EPOCH_DAY = np.datetime64(0, "D")


@dataclass(frozen=True)
class _Events:
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
class _History:
    """A log's orders (with per-order facts), returns and first product purchases."""

    customers: pd.Index  # customer ids with an order, sorted; the position is the code
    orders: _Events  # cum: amount, quantity (when mapped), gap, gap_sq
    start: np.ndarray  # first order of each customer, plus the total order count at the end
    day: np.ndarray  # day number (days since 1970-01-01) of each order
    gap: np.ndarray  # days since the customer's previous order (0 for the first)
    returns: _Events  # cum: amount (negative), count
    products: _Events | None  # cum: count (one per customer's first purchase of a product)
    attributes: dict[str, np.ndarray]  # the value on each order (its last line)
    last_timestamp: pd.Timestamp


def _prefix(values: np.ndarray) -> np.ndarray:
    out = np.zeros(len(values) + 1, dtype=values.dtype)
    np.cumsum(values, out=out[1:])
    return out


def _naive_utc(values: pd.Series | pd.DatetimeIndex) -> pd.DatetimeIndex:
    """Timestamps as a naive UTC DatetimeIndex (tz-aware input is converted)."""
    index = pd.DatetimeIndex(values)
    if index.tz is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    return index.as_unit("ns")


def _day_numbers(index: pd.DatetimeIndex) -> np.ndarray:
    return (index.values.astype("datetime64[D]") - _EPOCH_DAY).astype(np.int64)


def _group_ids(lines: pd.DataFrame, day: np.ndarray) -> np.ndarray:
    """Which order each line belongs to, within its customer: its invoice when the log has
    invoice ids (a line without one is an order of its own day), else its day."""
    if "invoice_id" not in lines.columns:
        return day
    invoice = lines["invoice_id"].astype("string")
    invoice = invoice.fillna(pd.Series(day, index=lines.index).map("@day{}".format))
    return pd.factorize(invoice)[0].astype(np.int64)


def _grouped(
    lines: pd.DataFrame, code: np.ndarray, day: np.ndarray, columns: dict[str, str]
) -> pd.DataFrame:
    """One row per order of these lines: code, day (its latest line's), stamp and the
    aggregated `columns` (name: pandas aggregation), sorted by (code, day, stamp)."""
    frame = pd.DataFrame(
        {
            "code": code,
            "group": _group_ids(lines, day),
            "day": day,
            "stamp": _naive_utc(lines["timestamp"]).asi8,
            **{name: lines[name].to_numpy() for name in columns},
        }
    )
    aggregations = {"day": "max", "stamp": "max", **columns}
    grouped = frame.groupby(["code", "group"], sort=False).agg(aggregations).reset_index()
    return grouped.sort_values(["code", "day", "stamp"], kind="stable").reset_index(drop=True)


def _mapped(lines: pd.DataFrame, settings: Settings, column: str) -> bool:
    """Whether the settings map this canonical column; raise if the log then lacks it."""
    mapping = settings.source.columns
    if column not in mapping.attributes() and getattr(mapping, column, None) is None:
        return False
    if column not in lines.columns:
        raise ValueError(f"settings map a {column} column but the transactions have none")
    return True


def _history(transactions: pd.DataFrame, settings: Settings, *, full: bool = True) -> _History:
    """Group the log into orders and returns (``full``: also products, attributes and
    quantities, which only the features need)."""
    if transactions.empty:
        raise ValueError("the transaction log is empty")
    lines = transactions
    if IS_RETURN not in lines.columns:  # a log that skipped validation (tests, benches)
        lines = mark_returns(lines, settings)
    ids = lines[ENTITY].astype("string")
    if ids.isna().any():
        raise ValueError(
            f"{ENTITY} has missing values: clean the log first (validation.policies."
            "missing_customer_id)"
        )
    stamps = _naive_utc(lines["timestamp"])
    if stamps.hasnans:
        raise ValueError("timestamp has missing values: clean the log first")
    is_return = lines[IS_RETURN].to_numpy(bool)
    if is_return.all():
        raise ValueError("the transaction log has no purchases, only returns")
    customers = pd.Index(ids[~is_return].unique(), name=ENTITY).sort_values()
    code = customers.get_indexer(ids).astype(np.int64)
    day = _day_numbers(stamps.ceil("D"))
    origin = int(day.min())
    stride = int(day.max()) - origin + 2
    if len(customers) * stride >= np.iinfo(np.int64).max:
        raise ValueError("too many customers x days for the (customer, day) key")

    def events(frame: pd.DataFrame, cum: dict[str, np.ndarray]) -> _Events:
        key = frame["code"].to_numpy(np.int64) * stride + (frame["day"].to_numpy() - origin)
        return _Events(key=key, origin=origin, stride=stride, cum=cum)

    buy = ~is_return
    sums = {"amount": "sum"}
    if full and _mapped(lines, settings, "quantity"):
        sums["quantity"] = "sum"
    attributes = [a for a in attribute_names(settings) if full and _mapped(lines, settings, a)]
    per_order = {**sums, **dict.fromkeys(attributes, "last")}
    orders = _grouped(lines.loc[buy], code[buy], day[buy], per_order)
    order_code = orders["code"].to_numpy(np.int64)
    order_day = orders["day"].to_numpy(np.int64)
    start = np.searchsorted(order_code, np.arange(len(customers) + 1), side="left")
    gap = np.diff(order_day, prepend=order_day[0])
    gap[start[:-1]] = 0
    cum = {name: _prefix(orders[name].to_numpy(float)) for name in sums}
    cum |= {"gap": _prefix(gap), "gap_sq": _prefix(gap * gap)}

    back = is_return & (code >= 0)  # a return by someone with no purchase in the log: unused
    returned = _grouped(lines.loc[back], code[back], day[back], {"amount": "sum"})
    returns = events(
        returned,
        {
            "amount": _prefix(returned["amount"].to_numpy(float)),
            "count": _prefix(np.ones(len(returned), dtype=np.int64)),
        },
    )
    products = None
    if full and _mapped(lines, settings, "product_id"):
        bought = pd.DataFrame(
            {"code": code[buy], "product": lines.loc[buy, "product_id"].to_numpy(), "day": day[buy]}
        ).dropna()
        firsts = bought.groupby(["code", "product"], sort=False)["day"].min().reset_index()
        firsts = firsts.sort_values(["code", "day"], kind="stable")
        products = events(firsts, {"count": _prefix(np.ones(len(firsts), dtype=np.int64))})
    return _History(
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


def _snapshot_index(snapshots: Iterable[date | pd.Timestamp | str]) -> pd.DatetimeIndex:
    """Validate snapshot instants: midnights, returned sorted, unique and naive UTC."""
    index = _naive_utc(pd.DatetimeIndex(list(snapshots)))
    if index.hasnans:
        raise ValueError("snapshot dates have missing values")
    if not (index == index.normalize()).all():
        raise ValueError("snapshot dates must be midnight instants")
    return index.unique().sort_values()


def snapshot_dates(transactions: pd.DataFrame, settings: Settings) -> pd.DatetimeIndex:
    """The snapshot grid: every `snapshot_frequency_days` from the first snapshot to the last
    transaction date (inclusive). The first snapshot defaults to the first purchase date plus
    the smallest feature window."""
    if transactions.empty:
        raise ValueError("the transaction log is empty")
    cfg = settings.features
    stamps = _naive_utc(transactions["timestamp"])
    if cfg.first_snapshot is not None:
        first = pd.Timestamp(cfg.first_snapshot)
    else:
        first = stamps.min().normalize() + pd.Timedelta(days=min(cfg.windows_days, default=0))
    last = stamps.max().normalize()
    return pd.date_range(first, last, freq=f"{cfg.snapshot_frequency_days}D", name=EVENT_TIMESTAMP)


def _active_periods(history: _History, period: int) -> np.ndarray:
    """Prefix count of orders that open a new `period`-day block of their customer, the
    blocks counted from the customer's first purchase day; so the distinct blocks with a
    purchase among orders ``[start, pos)`` are ``cum[pos] - cum[start]``."""
    first = np.repeat(history.day[history.start[:-1]], np.diff(history.start))
    block = (history.day - first) // period
    opens = np.ones(len(block), dtype=np.int64)
    opens[1:] = block[1:] != block[:-1]
    opens[history.start[:-1]] = 1
    return _prefix(opens)


def _entity_grid(history: _History, snap_days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(customer code, snapshot position) of every customer at every snapshot on or after
    the customer's first purchase day, sorted by customer then snapshot."""
    first_day = history.day[history.start[:-1]]
    first_snap = np.searchsorted(snap_days, first_day, side="left")
    counts = len(snap_days) - first_snap
    code = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    offsets = np.repeat(np.cumsum(counts) - counts - first_snap, counts)
    return code, np.arange(len(code), dtype=np.int64) - offsets


def _behaviour(
    history: _History, code: np.ndarray, day: np.ndarray, settings: Settings
) -> dict[str, np.ndarray]:
    """Recency, frequency, monetary, window, inter-purchase, trend, regularity, return and
    variety features per row."""
    cfg = settings.features
    orders, returns = history.orders, history.returns
    start = history.start[code]
    pos = orders.upto(code, day)
    positions: dict[int, np.ndarray] = {0: pos}

    def before(days: int) -> np.ndarray:
        if days not in positions:
            positions[days] = orders.upto(code, day - days)
        return positions[days]

    def bought(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        cum = orders.cum["amount"]
        return np.where(a == b, 0.0, cum[b] - cum[a])  # exact zero for empty windows

    def spend(days: int | None, end: int = 0) -> np.ndarray:
        """Net spend in (day - end - days, day - end]; days None: everything so far."""
        a = start if days is None else before(end + days)
        gross = bought(a, before(end))
        since = None if days is None else day - end - days
        return gross + returns.total("amount", code, since, day - end)

    n = pos - start
    cols: dict[str, np.ndarray] = {
        "recency_days": day - history.day[pos - 1],
        "tenure_days": day - history.day[start],
        "orders_total": n,
        "spend_total": spend(None),
    }
    cols["avg_basket_value"] = cols["spend_total"] / n
    for w in cfg.windows_days:
        cols[f"orders_{w}d"] = pos - before(w)
        cols[f"spend_{w}d"] = spend(w)

    gaps = (n - 1).astype(float)
    gap_sum = (orders.cum["gap"][pos] - orders.cum["gap"][start]).astype(float)
    gap_sq = (orders.cum["gap_sq"][pos] - orders.cum["gap_sq"][start]).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(gaps >= 1, gap_sum / gaps, np.nan)
        var = (gaps * gap_sq - gap_sum**2) / (gaps * (gaps - 1))
        cols["ipt_mean_days"] = mean
        cols["ipt_std_days"] = np.where(gaps >= 2, np.sqrt(np.maximum(var, 0.0)), np.nan)
        cols["ipt_last_days"] = np.where(gaps >= 1, history.gap[pos - 1].astype(float), np.nan)
        # invoices on one day are orders 0 days apart: a zero mean gap has no overdue ratio
        cols["overdue_ratio"] = np.where(mean > 0, cols["recency_days"] / mean, np.nan)

    t = cfg.trend_window_days
    last, prior = before(t), before(2 * t)
    cols[f"orders_trend_{t}d"] = (pos - last) - (last - prior)
    cols[f"spend_trend_{t}d"] = spend(t) - spend(t, end=t)

    h = cfg.horizon_days
    opened = _active_periods(history, h)
    active = opened[pos] - opened[start]
    cols[f"active_periods_{h}d"] = active
    cols[f"active_share_{h}d"] = active / ((cols["tenure_days"] // h) + 1)
    if "quantity" in orders.cum:
        cols["items_per_order"] = (orders.cum["quantity"][pos] - orders.cum["quantity"][start]) / n
    cols["returns_total"] = returns.total("count", code, None, day)
    gross = bought(start, pos)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = -returns.total("amount", code, None, day) / gross
    cols["return_value_share"] = np.where(gross > 0, share, 0.0)
    if history.products is not None:
        cols["distinct_products"] = history.products.total("count", code, None, day)
    return cols


def _attributes(history: _History, code: np.ndarray, day: np.ndarray) -> dict[str, pd.Series]:
    """Each categorical attribute's value on the customer's latest order at each snapshot."""
    last = history.orders.upto(code, day) - 1
    return {
        name: pd.Series(values.take(last), dtype="string")
        for name, values in history.attributes.items()
    }


def _peak_days(years: np.ndarray, month: int, day: int) -> np.ndarray:
    """Day numbers of (month, day) in each year; a day past the month's end means its last."""
    month_start = (years - 1970).astype("datetime64[Y]").astype("datetime64[M]") + (month - 1)
    first = month_start.astype("datetime64[D]")
    length = ((month_start + 1).astype("datetime64[D]") - first).astype(np.int64)
    return (first - _EPOCH_DAY).astype(np.int64) + np.minimum(day, length) - 1


def _seasonal(snap_days: np.ndarray, settings: Settings) -> dict[str, np.ndarray]:
    """Days to the next and since the last yearly peak, per snapshot (0 on a peak day)."""
    years = snap_days.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970
    candidates = np.stack(
        [
            _peak_days(years + shift, p.month, p.day)
            for p in settings.features.peaks
            for shift in (-1, 0, 1)
        ]
    )
    delta = candidates - snap_days
    big = np.iinfo(np.int64).max
    return {
        "days_to_next_peak": np.where(delta >= 0, delta, big).min(axis=0),
        "days_since_last_peak": np.where(delta <= 0, -delta, big).min(axis=0),
    }


def build_features(
    transactions: pd.DataFrame,
    settings: Settings,
    snapshots: Iterable[date | pd.Timestamp | str] | None = None,
) -> pd.DataFrame:
    """One row per (customer, snapshot) from the customer's first purchase on: `customer_id`,
    `snapshot_date` (UTC) and `feature_names(settings)`, each computed only from
    transactions at or before the snapshot. Snapshots default to `snapshot_dates`."""
    started = time.perf_counter()
    specs = feature_list(settings)
    history = _history(transactions, settings)
    index = (
        snapshot_dates(transactions, settings) if snapshots is None else _snapshot_index(snapshots)
    )
    snap_days = _day_numbers(index)
    code, snap = _entity_grid(history, snap_days)
    day = snap_days[snap]

    values = _behaviour(history, code, day, settings)
    if settings.features.peaks:
        values.update({k: v[snap] for k, v in _seasonal(snap_days, settings).items()})
    columns: dict[str, object] = {
        ENTITY: history.customers.array.take(code),
        EVENT_TIMESTAMP: index.tz_localize("UTC").take(snap),
    }
    for f in specs:
        columns[f.name] = np.asarray(values[f.name], dtype=np.int64 if f.kind == "int" else float)
    frame = pd.DataFrame(columns)
    for name, attribute in _attributes(history, code, day).items():
        frame[name] = attribute.to_numpy()
    logger.info(
        "built %d feature rows (%d customers x %d snapshots) in %.2fs",
        len(frame),
        len(history.customers),
        len(index),
        time.perf_counter() - started,
    )
    return frame


def build_labels(
    transactions: pd.DataFrame, entity: pd.DataFrame, settings: Settings
) -> pd.DataFrame:
    """The entity rows with `label_name(settings)`: 1 if the customer bought in
    (snapshot_date, snapshot_date + horizon], else 0. Rows whose label window ends after the
    last transaction in the log are dropped, since their outcome is not yet known."""
    horizon = settings.features.horizon_days
    history = _history(transactions, settings, full=False)
    orders = history.orders
    stamps = _naive_utc(entity[EVENT_TIMESTAMP])
    if not (stamps == stamps.normalize()).all():
        raise ValueError("snapshot dates must be midnight instants")
    keep = np.asarray(stamps + pd.Timedelta(days=horizon) <= history.last_timestamp)
    rows = entity.loc[keep].reset_index(drop=True)
    code = history.customers.get_indexer(rows[ENTITY].astype("string")).astype(np.int64)
    known = code >= 0
    day = _day_numbers(stamps[keep])[known]
    bought = orders.upto(code[known], day + horizon) > orders.upto(code[known], day)
    label = np.zeros(len(rows), dtype=np.int64)
    label[known] = bought
    rows[label_name(settings)] = label
    logger.info(
        "labelled %d rows (%d dropped: label window past %s); positive rate %.3f",
        len(rows),
        int((~keep).sum()),
        history.last_timestamp,
        label.mean() if len(label) else float("nan"),
    )
    return rows
