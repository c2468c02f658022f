"""Point-in-time customer features and purchase labels on a grid of snapshot dates.

A snapshot ``t`` is a midnight instant. The features of a customer at ``t`` use only
transactions with ``timestamp <= t``; the label at ``t`` looks only at ``(t, t + horizon]``.
Transactions are first aggregated to *purchase days* ("orders"): a purchase day is the first
midnight at or after a transaction, i.e. the first snapshot instant that can see it, so
"timestamp <= t" and "purchase day <= t" are the same test and whole-day recencies are the
elapsed time rounded down. For day-level logs such as CDNOW it is simply the purchase date.

Every (customer, snapshot) value is computed at once from prefix sums over all orders sorted
by (customer, day) and binary searches on a combined (customer, day) key; nothing loops over
customers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from mlstack.config import Settings
from mlstack.features.definitions import ENTITY, EVENT_TIMESTAMP, feature_list, label_name

logger = logging.getLogger(__name__)

_EPOCH_DAY = np.datetime64(0, "D")


@dataclass(frozen=True)
class _Orders:
    """All purchase days, sorted by (customer code, day), with prefix sums along that order.

    Prefix arrays have one more element than there are orders: ``cum[i]`` sums orders
    ``[0, i)``, so the sum over orders ``[a, b)`` is ``cum[b] - cum[a]``.
    """

    customers: pd.Index  # customer ids, sorted; the position is the customer code
    start: np.ndarray  # first order of each customer, plus the total order count at the end
    day: np.ndarray  # day number (days since 1970-01-01) of each order
    gap: np.ndarray  # days since the customer's previous order (0 for the first)
    key: np.ndarray  # code * stride + (day - origin), strictly increasing
    origin: int
    stride: int
    cum_amount: np.ndarray
    cum_quantity: np.ndarray | None
    cum_gap: np.ndarray
    cum_gap_sq: np.ndarray
    last_timestamp: pd.Timestamp

    def upto(self, code: np.ndarray, day: np.ndarray) -> np.ndarray:
        """End position (exclusive) of each customer's orders on or before each day."""
        rel = np.clip(day - self.origin, -1, self.stride - 2)
        return np.searchsorted(self.key, code * self.stride + rel, side="right")


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


def _purchase_days(transactions: pd.DataFrame, with_quantity: bool) -> _Orders:
    """Aggregate the transaction log to one order per (customer, purchase day)."""
    if transactions.empty:
        raise ValueError("the transaction log is empty")
    if with_quantity and "quantity" not in transactions.columns:
        raise ValueError("settings map a quantity column but the transactions have none")
    codes, customers = pd.factorize(transactions[ENTITY].astype("string"), sort=True)
    if (codes < 0).any():
        raise ValueError(f"{ENTITY} has missing values")
    stamps = _naive_utc(transactions["timestamp"])
    if stamps.hasnans:
        raise ValueError("timestamp has missing values")
    day = _day_numbers(stamps.ceil("D"))
    origin = int(day.min())
    stride = int(day.max()) - origin + 2
    if len(customers) * stride >= np.iinfo(np.int64).max:
        raise ValueError("too many customers x days for the (customer, day) key")

    key, inverse = np.unique(codes.astype(np.int64) * stride + (day - origin), return_inverse=True)
    amount = np.bincount(inverse, weights=transactions["amount"].fillna(0.0).to_numpy(float))
    quantity = None
    if with_quantity:
        weights = transactions["quantity"].fillna(0.0).to_numpy(float)
        quantity = np.bincount(inverse, weights=weights, minlength=len(key))
    order_code = key // stride
    order_day = key % stride + origin
    start = np.searchsorted(order_code, np.arange(len(customers) + 1), side="left")
    gap = np.diff(order_day, prepend=order_day[0])
    gap[start[:-1]] = 0
    return _Orders(
        customers=pd.Index(customers, name=ENTITY),
        start=start,
        day=order_day,
        gap=gap,
        key=key,
        origin=origin,
        stride=stride,
        cum_amount=_prefix(amount),
        cum_quantity=None if quantity is None else _prefix(quantity),
        cum_gap=_prefix(gap),
        cum_gap_sq=_prefix(gap * gap),
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


def _active_periods(orders: _Orders, period: int) -> np.ndarray:
    """Prefix count of orders that open a new `period`-day block of their customer, the
    blocks counted from the customer's first purchase day; so the distinct blocks with a
    purchase among orders ``[start, pos)`` are ``cum[pos] - cum[start]``."""
    first = np.repeat(orders.day[orders.start[:-1]], np.diff(orders.start))
    block = (orders.day - first) // period
    opens = np.ones(len(block), dtype=np.int64)
    opens[1:] = block[1:] != block[:-1]
    opens[orders.start[:-1]] = 1
    return _prefix(opens)


def _entity_grid(orders: _Orders, snap_days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(customer code, snapshot position) of every customer at every snapshot on or after
    the customer's first purchase day, sorted by customer then snapshot."""
    first_day = orders.day[orders.start[:-1]]
    first_snap = np.searchsorted(snap_days, first_day, side="left")
    counts = len(snap_days) - first_snap
    code = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    offsets = np.repeat(np.cumsum(counts) - counts - first_snap, counts)
    return code, np.arange(len(code), dtype=np.int64) - offsets


def _behaviour(
    orders: _Orders, code: np.ndarray, day: np.ndarray, settings: Settings
) -> dict[str, np.ndarray]:
    """Recency, frequency, monetary, window, inter-purchase, trend and regularity features
    per row."""
    cfg = settings.features
    start = orders.start[code]
    pos = orders.upto(code, day)
    amount = orders.cum_amount
    positions: dict[int, np.ndarray] = {0: pos}

    def before(days: int) -> np.ndarray:
        if days not in positions:
            positions[days] = orders.upto(code, day - days)
        return positions[days]

    def spend(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.where(a == b, 0.0, amount[b] - amount[a])  # exact zero for empty windows

    n = pos - start
    cols: dict[str, np.ndarray] = {
        "recency_days": day - orders.day[pos - 1],
        "tenure_days": day - orders.day[start],
        "orders_total": n,
        "spend_total": spend(start, pos),
    }
    cols["avg_basket_value"] = cols["spend_total"] / n
    for w in cfg.windows_days:
        cols[f"orders_{w}d"] = pos - before(w)
        cols[f"spend_{w}d"] = spend(before(w), pos)

    gaps = (n - 1).astype(float)
    gap_sum = (orders.cum_gap[pos] - orders.cum_gap[start]).astype(float)
    gap_sq = (orders.cum_gap_sq[pos] - orders.cum_gap_sq[start]).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(gaps >= 1, gap_sum / gaps, np.nan)
        var = (gaps * gap_sq - gap_sum**2) / (gaps * (gaps - 1))
        cols["ipt_mean_days"] = mean
        cols["ipt_std_days"] = np.where(gaps >= 2, np.sqrt(np.maximum(var, 0.0)), np.nan)
        cols["ipt_last_days"] = np.where(gaps >= 1, orders.gap[pos - 1].astype(float), np.nan)
        cols["overdue_ratio"] = cols["recency_days"] / mean

    t = cfg.trend_window_days
    last, prior = before(t), before(2 * t)
    cols[f"orders_trend_{t}d"] = (pos - last) - (last - prior)
    cols[f"spend_trend_{t}d"] = spend(last, pos) - spend(prior, last)

    h = cfg.horizon_days
    opened = _active_periods(orders, h)
    active = opened[pos] - opened[start]
    cols[f"active_periods_{h}d"] = active
    cols[f"active_share_{h}d"] = active / ((cols["tenure_days"] // h) + 1)
    if orders.cum_quantity is not None:
        cols["items_per_order"] = (orders.cum_quantity[pos] - orders.cum_quantity[start]) / n
    return cols


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
    with_quantity = any(f.name == "items_per_order" for f in specs)
    orders = _purchase_days(transactions, with_quantity)
    index = (
        snapshot_dates(transactions, settings) if snapshots is None else _snapshot_index(snapshots)
    )
    snap_days = _day_numbers(index)
    code, snap = _entity_grid(orders, snap_days)
    day = snap_days[snap]

    values = _behaviour(orders, code, day, settings)
    if settings.features.peaks:
        values.update({k: v[snap] for k, v in _seasonal(snap_days, settings).items()})
    columns: dict[str, object] = {
        ENTITY: orders.customers.array.take(code),
        EVENT_TIMESTAMP: index.tz_localize("UTC").take(snap),
    }
    for f in specs:
        columns[f.name] = np.asarray(values[f.name], dtype=np.int64 if f.kind == "int" else float)
    frame = pd.DataFrame(columns)
    logger.info(
        "built %d feature rows (%d customers x %d snapshots) in %.2fs",
        len(frame),
        len(orders.customers),
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
    orders = _purchase_days(transactions, with_quantity=False)
    stamps = _naive_utc(entity[EVENT_TIMESTAMP])
    if not (stamps == stamps.normalize()).all():
        raise ValueError("snapshot dates must be midnight instants")
    keep = np.asarray(stamps + pd.Timedelta(days=horizon) <= orders.last_timestamp)
    rows = entity.loc[keep].reset_index(drop=True)
    code = orders.customers.get_indexer(rows[ENTITY].astype("string")).astype(np.int64)
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
        orders.last_timestamp,
        label.mean() if len(label) else float("nan"),
    )
    return rows
