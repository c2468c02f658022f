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
from dataclasses import replace
from datetime import date

import numpy as np
import pandas as pd

from mlstack.config import FeatureSettings, Settings
from mlstack.features.definitions import (
    ENTITY,
    EVENT_TIMESTAMP,
    feature_list,
    label_name,
)
from mlstack.features.history import (
    EPOCH_DAY,
    History,
    day_numbers,
    naive_utc,
    order_history,
    prefix,
)

logger = logging.getLogger(__name__)


def _snapshot_index(snapshots: Iterable[date | pd.Timestamp | str]) -> pd.DatetimeIndex:
    """Validate snapshot instants: midnights, returned sorted, unique and naive UTC."""
    index = naive_utc(pd.DatetimeIndex(list(snapshots)))
    if index.hasnans:
        raise ValueError("snapshot dates have missing values")
    if not (index == index.normalize()).all():
        raise ValueError("snapshot dates must be midnight instants")
    return index.unique().sort_values()


def snapshot_dates(transactions: pd.DataFrame, features: FeatureSettings) -> pd.DatetimeIndex:
    """The snapshot grid: every `snapshot_frequency_days` from the first snapshot to the last
    transaction date (inclusive). The first snapshot defaults to the first purchase date plus
    the smallest feature window."""
    if transactions.empty:
        raise ValueError("the transaction log is empty")
    cfg = features
    stamps = naive_utc(transactions["timestamp"])
    if cfg.first_snapshot is not None:
        first = pd.Timestamp(cfg.first_snapshot)
    else:
        first = stamps.min().normalize() + pd.Timedelta(days=min(cfg.windows_days, default=0))
    last = stamps.max().normalize()
    return pd.date_range(first, last, freq=f"{cfg.snapshot_frequency_days}D", name=EVENT_TIMESTAMP)


def _active_periods(history: History, period: int) -> np.ndarray:
    """Prefix count of orders that open a new `period`-day block of their customer, the
    blocks counted from the customer's first purchase day; so the distinct blocks with a
    purchase among orders ``[start, pos)`` are ``cum[pos] - cum[start]``."""
    first = np.repeat(history.day[history.start[:-1]], np.diff(history.start))
    block = (history.day - first) // period
    opens = np.ones(len(block), dtype=np.int64)
    opens[1:] = block[1:] != block[:-1]
    opens[history.start[:-1]] = 1
    return prefix(opens)


def _entity_grid(history: History, snap_days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(customer code, snapshot position) of every customer at every snapshot on or after
    the customer's first purchase day, sorted by customer then snapshot."""
    first_day = history.day[history.start[:-1]]
    first_snap = np.searchsorted(snap_days, first_day, side="left")
    counts = len(snap_days) - first_snap
    code = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    offsets = np.repeat(np.cumsum(counts) - counts - first_snap, counts)
    return code, np.arange(len(code), dtype=np.int64) - offsets


def _behaviour(
    history: History, code: np.ndarray, day: np.ndarray, features: FeatureSettings
) -> dict[str, np.ndarray]:
    """Recency, frequency, monetary, window, inter-purchase, trend, regularity, return and
    variety features per row."""
    cfg = features
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


def _attributes(history: History, code: np.ndarray, day: np.ndarray) -> dict[str, pd.Series]:
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
    return (first - EPOCH_DAY).astype(np.int64) + np.minimum(day, length) - 1


def _seasonal(snap_days: np.ndarray, features: FeatureSettings) -> dict[str, np.ndarray]:
    """Days to the next and since the last yearly peak, per snapshot (0 on a peak day)."""
    years = snap_days.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970
    candidates = np.stack(
        [_peak_days(years + shift, p.month, p.day) for p in features.peaks for shift in (-1, 0, 1)]
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
    history = order_history(transactions, settings.source)
    index = (
        snapshot_dates(transactions, settings.features)
        if snapshots is None
        else _snapshot_index(snapshots)
    )
    snap_days = day_numbers(index)
    code, snap = _entity_grid(history, snap_days)
    day = snap_days[snap]

    values = _behaviour(history, code, day, settings.features)
    if settings.features.peaks:
        values.update({k: v[snap] for k, v in _seasonal(snap_days, settings.features).items()})
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
    transactions: pd.DataFrame,
    entity: pd.DataFrame,
    settings: Settings,
    last_timestamp: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """The entity rows with `label_name(settings.features)`: 1 if the customer bought in
    (snapshot_date, snapshot_date + horizon], else 0. Rows whose label window ends after the
    last transaction in the log are dropped, since their outcome is not yet known.

    `last_timestamp` is the whole log's last timestamp when `transactions` is one shard of
    it (default: the last in `transactions`)."""
    horizon = settings.features.horizon_days
    history = order_history(transactions, settings.source, full=False)
    if last_timestamp is not None:
        history = replace(history, last_timestamp=naive_utc(pd.Series([last_timestamp]))[0])
    orders = history.orders
    stamps = naive_utc(entity[EVENT_TIMESTAMP])
    if not (stamps == stamps.normalize()).all():
        raise ValueError("snapshot dates must be midnight instants")
    keep = np.asarray(stamps + pd.Timedelta(days=horizon) <= history.last_timestamp)
    rows = entity.loc[keep].reset_index(drop=True)
    code = history.customers.get_indexer(rows[ENTITY].astype("string")).astype(np.int64)
    known = code >= 0
    day = day_numbers(stamps[keep])[known]
    bought = orders.upto(code[known], day + horizon) > orders.upto(code[known], day)
    label = np.zeros(len(rows), dtype=np.int64)
    label[known] = bought
    rows[label_name(settings.features)] = label
    logger.info(
        "labelled %d rows (%d dropped: label window past %s); positive rate %.3f",
        len(rows),
        int((~keep).sum()),
        history.last_timestamp,
        label.mean() if len(label) else float("nan"),
    )
    return rows
