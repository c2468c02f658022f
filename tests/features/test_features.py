"""Point-in-time features and labels, checked against a slow per-customer reference."""

from __future__ import annotations

import calendar
import itertools
import math
import time
from datetime import date, datetime

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from mlstack.config import Peak, Settings
from mlstack.features.build import (
    build_features,
    build_labels,
    snapshot_dates,
)
from mlstack.features.definitions import (
    ENTITY,
    EVENT_TIMESTAMP,
    feature_list,
    feature_names,
    label_name,
)
from mlstack.versioning import content_version
from tests.support.paths import BUNDLED

pytestmark = pytest.mark.unit

DAY = pd.Timedelta(days=1)
BASE = pd.Timestamp("2020-01-01")


def make_settings(**features: object) -> Settings:
    defaults: dict[str, object] = {
        "windows_days": [7, 30],
        "trend_window_days": 14,
        "snapshot_frequency_days": 7,
        "horizon_days": 10,
    }
    return Settings(features={**defaults, **features})


def log(rows: list[tuple[str, str, float, float]]) -> pd.DataFrame:
    """A canonical transaction frame from (customer, timestamp, amount, quantity) tuples."""
    frame = pd.DataFrame(rows, columns=[ENTITY, "timestamp", "amount", "quantity"])
    frame[ENTITY] = frame[ENTITY].astype("string")
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], format="ISO8601")
    return frame.sort_values([ENTITY, "timestamp"], kind="stable").reset_index(drop=True)


# -- the slow, obviously correct reference --------------------------------------------------


def peak_dates(year: int, month: int, day: int) -> pd.Timestamp:
    return pd.Timestamp(year, month, min(day, calendar.monthrange(year, month)[1]))


def reference_row(seen: pd.DataFrame, t: pd.Timestamp, settings: Settings) -> dict[str, object]:
    """Features at `t` from the transactions a customer made at or before `t`."""
    cfg = settings.features
    # a purchase day is the first midnight at or after the transaction: the first snapshot
    # that can see it
    days = seen["timestamp"].dt.ceil("D")
    orders = seen.groupby(days)[["amount", "quantity"]].sum().sort_index()
    order_days = list(orders.index)
    n = len(order_days)
    row: dict[str, object] = {
        "recency_days": (t - seen["timestamp"].max()) // DAY,
        "tenure_days": (t - seen["timestamp"].min()) // DAY,
        "orders_total": n,
        "spend_total": float(seen["amount"].sum()),
        "avg_basket_value": float(seen["amount"].sum()) / n,
    }
    for w in cfg.windows_days:
        recent = seen[seen["timestamp"] > t - w * DAY]
        row[f"orders_{w}d"] = recent["timestamp"].dt.ceil("D").nunique()
        row[f"spend_{w}d"] = float(recent["amount"].sum())
    gaps = [(b - a) // DAY for a, b in itertools.pairwise(order_days)]
    row["ipt_mean_days"] = float(np.mean(gaps)) if gaps else math.nan
    row["ipt_std_days"] = float(np.std(gaps, ddof=1)) if len(gaps) >= 2 else math.nan
    row["ipt_last_days"] = float(gaps[-1]) if gaps else math.nan
    row["overdue_ratio"] = row["recency_days"] / row["ipt_mean_days"] if gaps else math.nan
    tw = cfg.trend_window_days
    last = seen[seen["timestamp"] > t - tw * DAY]
    prior = seen[(seen["timestamp"] > t - 2 * tw * DAY) & (seen["timestamp"] <= t - tw * DAY)]
    row[f"orders_trend_{tw}d"] = (
        last["timestamp"].dt.ceil("D").nunique() - prior["timestamp"].dt.ceil("D").nunique()
    )
    row[f"spend_trend_{tw}d"] = float(last["amount"].sum() - prior["amount"].sum())
    # regularity: horizon-length blocks counted from the first purchase day
    h = cfg.horizon_days
    first = order_days[0]
    blocks = {((d - first) // DAY) // h for d in order_days}
    row[f"active_periods_{h}d"] = len(blocks)
    row[f"active_share_{h}d"] = len(blocks) / (((t - first) // DAY) // h + 1)
    if cfg.peaks:
        peaks = [
            peak_dates(year, p.month, p.day)
            for p in cfg.peaks
            for year in range(t.year - 1, t.year + 2)
        ]
        row["days_to_next_peak"] = min((p - t).days for p in peaks if p >= t)
        row["days_since_last_peak"] = min((t - p).days for p in peaks if p <= t)
    if settings.source.columns.quantity is not None:
        row["items_per_order"] = float(seen["quantity"].sum()) / n
    return row


def reference_features(
    tx: pd.DataFrame, settings: Settings, snapshots: list[pd.Timestamp]
) -> pd.DataFrame:
    rows = []
    for customer in sorted(tx[ENTITY].unique()):
        mine = tx[tx[ENTITY] == customer]
        for t in snapshots:
            seen = mine[mine["timestamp"] <= t]
            if len(seen):
                keys = {ENTITY: customer, EVENT_TIMESTAMP: t.tz_localize("UTC")}
                rows.append({**keys, **reference_row(seen, t, settings)})
    columns = [ENTITY, EVENT_TIMESTAMP, *feature_names(settings)]
    return pd.DataFrame(rows, columns=columns)


def reference_labels(tx: pd.DataFrame, entity: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    horizon = settings.features.horizon_days * DAY
    end = tx["timestamp"].max()
    rows = []
    for customer, t_utc in zip(entity[ENTITY], entity[EVENT_TIMESTAMP], strict=True):
        t = t_utc.tz_localize(None)
        if t + horizon > end:
            continue
        mine = tx[tx[ENTITY] == customer]["timestamp"]
        label = int(((mine > t) & (mine <= t + horizon)).any())
        rows.append(
            {ENTITY: customer, EVENT_TIMESTAMP: t_utc, label_name(settings.features): label}
        )
    frame = pd.DataFrame(rows, columns=[ENTITY, EVENT_TIMESTAMP, label_name(settings.features)])
    frame[EVENT_TIMESTAMP] = pd.to_datetime(frame[EVENT_TIMESTAMP], utc=True)
    return frame.astype({ENTITY: "string", label_name(settings.features): "int64"})


def assert_same_features(built: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(built.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(
        built.reset_index(drop=True),
        expected.reset_index(drop=True),
        check_dtype=False,
        check_exact=False,
        rtol=1e-9,
        atol=1e-9,
    )


# -- a crafted log where later transactions would change every answer -----------------------

SNAPSHOTS = [BASE + k * 7 * DAY for k in range(1, 9)]

CRAFTED = [
    # a: several purchases, two on one day, one intraday purchase on a snapshot day (visible
    # only from the next snapshot), one exactly at a snapshot instant, one a window-length
    # before a snapshot
    ("a", "2020-01-01", 10.0, 1),
    ("a", "2020-01-03 09:30", 5.0, 2),
    ("a", "2020-01-03 18:00", 7.5, 1),
    ("a", "2020-01-08 12:00", 20.0, 3),
    ("a", "2020-01-15", 1.25, 1),
    ("a", "2020-01-22", 40.0, 4),
    ("a", "2020-02-12", 3.0, 1),
    ("a", "2020-02-20", 9.99, 1),
    # b: one purchase only
    ("b", "2020-01-10 08:00", 12.0, 1),
    # c: first purchase exactly on a snapshot, then later ones
    ("c", "2020-01-29", 30.0, 2),
    ("c", "2020-02-01", 0.0, 1),
    ("c", "2020-02-26", 15.0, 1),
    # d: buys only after the last snapshot
    ("d", "2020-03-10", 50.0, 5),
]


@pytest.fixture
def crafted() -> pd.DataFrame:
    return log(CRAFTED)


def test_features_match_reference_on_crafted_log(crafted: pd.DataFrame) -> None:
    settings = make_settings()
    built = build_features(crafted, settings, SNAPSHOTS)
    assert_same_features(built, reference_features(crafted, settings, SNAPSHOTS))


def test_crafted_log_boundaries(crafted: pd.DataFrame) -> None:
    built = build_features(crafted, make_settings(), SNAPSHOTS).set_index([ENTITY, EVENT_TIMESTAMP])
    at = lambda customer, day: built.loc[(customer, pd.Timestamp(day, tz="UTC"))]  # noqa: E731
    # 2020-01-08 12:00 is after the 2020-01-08 snapshot: unseen there, seen a week later
    assert at("a", "2020-01-08")["orders_total"] == 2
    assert at("a", "2020-01-08")["spend_total"] == pytest.approx(22.5)
    assert at("a", "2020-01-15")["orders_total"] == 4  # includes the purchase at t itself
    assert at("a", "2020-01-15")["recency_days"] == 0
    # window (t-7, t] at 2020-01-22 excludes the purchase exactly at 2020-01-15
    assert at("a", "2020-01-22")["orders_7d"] == 1
    assert at("c", "2020-01-29")["orders_total"] == 1
    # 10-day blocks from a's first day 2020-01-01: purchase days fall in blocks 0, 1, 2 and 4
    # by 2020-02-19 (block 4), and also in block 5 (2020-02-20) by 2020-02-26 (block 5)
    assert at("a", "2020-01-08")["active_share_10d"] == 1.0
    assert at("a", "2020-02-19")["active_periods_10d"] == 4
    assert at("a", "2020-02-19")["active_share_10d"] == pytest.approx(4 / 5)
    assert at("a", "2020-02-26")["active_share_10d"] == pytest.approx(5 / 6)
    assert math.isnan(at("b", "2020-02-26")["ipt_mean_days"])
    assert "d" not in built.index.get_level_values(ENTITY)


def test_later_transactions_do_not_change_features(crafted: pd.DataFrame) -> None:
    settings = make_settings()
    cutoff = SNAPSHOTS[4]
    before = build_features(crafted, settings, SNAPSHOTS[:5])
    later = log(
        [
            *CRAFTED,
            ("a", str(cutoff + pd.Timedelta(seconds=1)), 999.0, 9),
            ("b", str(cutoff + 3 * DAY), 999.0, 9),
            ("e", str(cutoff + DAY), 999.0, 9),
        ]
    )
    after = build_features(later, settings, SNAPSHOTS)
    pd.testing.assert_frame_equal(
        after[after[EVENT_TIMESTAMP] <= cutoff.tz_localize("UTC")].reset_index(drop=True),
        before,
    )


def test_columns_dtypes_and_order(crafted: pd.DataFrame) -> None:
    settings = make_settings()
    built = build_features(crafted, settings, SNAPSHOTS)
    assert list(built.columns) == [ENTITY, EVENT_TIMESTAMP, *feature_names(settings)]
    assert built[ENTITY].dtype == "string"
    assert str(built[EVENT_TIMESTAMP].dt.tz) == "UTC"
    for f in feature_list(settings):
        assert built[f.name].dtype == (np.int64 if f.kind == "int" else np.float64), f.name
    assert built.equals(built.sort_values([ENTITY, EVENT_TIMESTAMP]))


def test_customers_appear_from_their_first_purchase(crafted: pd.DataFrame) -> None:
    built = build_features(crafted, make_settings(), SNAPSHOTS)
    first = crafted.groupby(ENTITY)["timestamp"].min()
    for customer, first_purchase in first.items():
        seen = built.loc[built[ENTITY] == customer, EVENT_TIMESTAMP].dt.tz_localize(None)
        assert list(seen) == [t for t in SNAPSHOTS if t >= first_purchase]


def test_optional_feature_groups() -> None:
    tx = log(CRAFTED)
    no_quantity = Settings(
        source={"columns": {"customer_id": "id", "timestamp": "ts", "amount": "value"}},
        features={"peaks": []},
    )
    built = build_features(tx.drop(columns="quantity"), no_quantity, SNAPSHOTS)
    assert list(built.columns[2:]) == feature_names(no_quantity)
    assert not {"items_per_order", "days_to_next_peak"} & set(built.columns)
    with pytest.raises(ValueError, match="quantity"):
        build_features(tx.drop(columns="quantity"), make_settings(), SNAPSHOTS)


def test_seasonal_peaks() -> None:
    settings = make_settings(
        peaks=[Peak(name="christmas", month=12, day=25), Peak(name="end_feb", month=2, day=30)]
    )
    tx = log([("a", "2019-01-01", 1.0, 1)])
    snaps = ["2019-12-25", "2019-12-26", "2020-02-29", "2020-03-01"]
    built = build_features(tx, settings, snaps).set_index(EVENT_TIMESTAMP)
    got = built[["days_to_next_peak", "days_since_last_peak"]].to_numpy().tolist()
    assert got == [[0, 0], [65, 1], [0, 0], [299, 1]]  # Feb 30 falls on the month's last day


def test_tz_aware_timestamps_are_read_as_utc(crafted: pd.DataFrame) -> None:
    settings = make_settings()
    aware = crafted.assign(timestamp=crafted["timestamp"].dt.tz_localize("UTC"))
    snaps_utc = [t.tz_localize("UTC") for t in SNAPSHOTS]
    pd.testing.assert_frame_equal(
        build_features(aware, settings, snaps_utc), build_features(crafted, settings, SNAPSHOTS)
    )


def test_rejects_bad_input(crafted: pd.DataFrame) -> None:
    settings = make_settings()
    with pytest.raises(ValueError, match="midnight"):
        build_features(crafted, settings, [pd.Timestamp("2020-01-08 12:00")])
    with pytest.raises(ValueError, match="empty"):
        build_features(crafted.iloc[:0], settings)
    missing = crafted.astype({ENTITY: object})
    missing.loc[0, ENTITY] = None
    with pytest.raises(ValueError, match="missing"):
        build_features(missing, settings, SNAPSHOTS)


def test_no_snapshots_gives_an_empty_table(crafted: pd.DataFrame) -> None:
    settings = make_settings()
    built = build_features(crafted, settings, [])
    assert built.empty
    assert list(built.columns) == [ENTITY, EVENT_TIMESTAMP, *feature_names(settings)]


# -- snapshot grid ------------------------------------------------------------------------


def test_snapshot_grid_defaults(crafted: pd.DataFrame) -> None:
    grid = snapshot_dates(crafted, make_settings(windows_days=[30, 7]).features)
    assert grid[0] == pd.Timestamp("2020-01-08")  # first purchase + the smallest window
    assert (grid.to_series().diff().dropna() == 7 * DAY).all()
    assert grid[-1] <= crafted["timestamp"].max() < grid[-1] + 7 * DAY
    assert (grid == grid.normalize()).all()


def test_snapshot_grid_first_snapshot_setting(crafted: pd.DataFrame) -> None:
    grid = snapshot_dates(
        crafted, make_settings(first_snapshot=date(2020, 2, 1), snapshot_frequency_days=3).features
    )
    assert grid[0] == pd.Timestamp("2020-02-01")
    assert grid[1] == pd.Timestamp("2020-02-04")
    assert build_features(crafted, make_settings(first_snapshot=date(2020, 2, 1)))[
        EVENT_TIMESTAMP
    ].min() == pd.Timestamp("2020-02-01", tz="UTC")


# -- labels -------------------------------------------------------------------------------


def test_label_window_is_open_at_t_and_closed_at_the_horizon() -> None:
    t = pd.Timestamp("2020-02-01")
    settings = make_settings(horizon_days=10)
    tx = log(
        [
            ("at_t", str(t), 1.0, 1),
            ("just_after_t", str(t + pd.Timedelta(hours=1)), 1.0, 1),
            ("at_horizon", str(t + 10 * DAY), 1.0, 1),
            ("after_horizon", str(t + 10 * DAY + pd.Timedelta(seconds=1)), 1.0, 1),
            ("day_after_horizon", str(t + 11 * DAY), 1.0, 1),
            ("end", "2020-03-01", 1.0, 1),
        ]
    )
    customers = ["at_t", "just_after_t", "at_horizon", "after_horizon", "day_after_horizon"]
    entity = pd.DataFrame(
        {ENTITY: pd.array(customers, dtype="string"), EVENT_TIMESTAMP: t.tz_localize("UTC")}
    )
    labels = build_labels(tx, entity, settings)
    assert labels[label_name(settings.features)].tolist() == [0, 1, 1, 0, 0]
    assert list(labels.columns) == [ENTITY, EVENT_TIMESTAMP, label_name(settings.features)]


def test_snapshots_whose_label_window_passes_the_data_end_are_dropped(
    crafted: pd.DataFrame,
) -> None:
    settings = make_settings(horizon_days=10)
    end = crafted["timestamp"].max()  # 2020-03-10
    snaps = [end - 11 * DAY, end - 10 * DAY, end - 9 * DAY, end]
    entity = pd.DataFrame({ENTITY: "a", EVENT_TIMESTAMP: pd.DatetimeIndex(snaps, tz="UTC")})
    labels = build_labels(crafted, entity, settings)
    assert list(labels[EVENT_TIMESTAMP].dt.tz_localize(None)) == snaps[:2]


def test_labels_match_reference_and_unknown_customers_are_negative(
    crafted: pd.DataFrame,
) -> None:
    settings = make_settings()
    entity = build_features(crafted, settings, SNAPSHOTS)[[ENTITY, EVENT_TIMESTAMP]]
    entity = pd.concat(
        [entity, pd.DataFrame({ENTITY: ["zz"], EVENT_TIMESTAMP: [entity[EVENT_TIMESTAMP][0]]})],
        ignore_index=True,
    ).astype({ENTITY: "string"})
    labels = build_labels(crafted, entity, settings)
    pd.testing.assert_frame_equal(labels, reference_labels(crafted, entity, settings))
    assert labels[label_name(settings.features)].dtype == np.int64
    assert labels[label_name(settings.features)].iloc[-1] == 0


# -- property: vectorised == reference on random small logs --------------------------------

timestamps = st.builds(
    lambda d, minutes: BASE + d * DAY + pd.Timedelta(minutes=minutes),
    st.integers(0, 120),
    st.one_of(st.just(0), st.just(0), st.integers(0, 24 * 60 - 1)),
)
transactions = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c", "d10"]),
        timestamps,
        st.floats(0, 500, allow_nan=False).map(lambda v: round(v, 2)),
        st.integers(1, 6),
    ),
    min_size=1,
    max_size=30,
)
snapshot_sets = st.lists(st.integers(0, 130), min_size=1, max_size=8, unique=True).map(
    lambda ks: sorted(BASE + k * DAY for k in ks)
)
feature_settings = st.fixed_dictionaries(
    {
        "windows_days": st.lists(st.integers(1, 60), min_size=1, max_size=3, unique=True),
        "trend_window_days": st.integers(1, 40),
        "horizon_days": st.integers(1, 40),
    }
)


@hyp_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=transactions, snaps=snapshot_sets, params=feature_settings)
def test_property_vectorised_matches_reference(
    rows: list[tuple[str, datetime, float, int]], snaps: list[pd.Timestamp], params: dict
) -> None:
    settings = make_settings(**params)
    tx = log([(c, str(ts), amount, qty) for c, ts, amount, qty in rows])
    built = build_features(tx, settings, snaps)
    assert_same_features(built, reference_features(tx, settings, snaps))
    labels = build_labels(tx, built[[ENTITY, EVENT_TIMESTAMP]], settings)
    pd.testing.assert_frame_equal(
        labels, reference_labels(tx, built[[ENTITY, EVENT_TIMESTAMP]], settings)
    )


@hyp_settings(max_examples=30, deadline=None)
@given(
    rows=transactions,
    extra=transactions,
    cutoff=st.integers(0, 120),
)
def test_property_adding_later_transactions_changes_nothing_before(
    rows: list[tuple[str, datetime, float, int]],
    extra: list[tuple[str, datetime, float, int]],
    cutoff: int,
) -> None:
    settings = make_settings()
    t = BASE + cutoff * DAY
    snaps = [s for s in pd.date_range(BASE, periods=20, freq="7D") if s <= t] or [t]
    early = [(c, str(ts), a, q) for c, ts, a, q in rows]
    late = [(c, str(ts + (t - BASE) + pd.Timedelta(seconds=1)), a, q) for c, ts, a, q in extra]
    before = build_features(log(early), settings, snaps)
    after = build_features(log(early + late), settings, snaps)
    pd.testing.assert_frame_equal(after, before)


# -- versions -----------------------------------------------------------------------------


def test_content_version_is_deterministic_and_content_sensitive(crafted: pd.DataFrame) -> None:
    settings = make_settings()
    one = build_features(crafted, settings, SNAPSHOTS)
    two = build_features(log(list(reversed(CRAFTED))), settings, SNAPSHOTS)
    assert content_version(one) == content_version(two)
    assert len(content_version(one)) == 16
    changed = one.copy()
    changed.loc[0, "spend_total"] += 0.01
    assert content_version(changed) != content_version(one)
    assert content_version(one.rename(columns={"spend_total": "x"})) != content_version(one)
    assert content_version(one.astype({"orders_total": "int32"})) != content_version(one)


# -- the real data ------------------------------------------------------------------------


def cdnow() -> pd.DataFrame:
    raw = pd.read_csv(BUNDLED, sep=r"\s+", dtype={"customer_id": str})
    tx = raw.rename(
        columns={"date": "timestamp", "dollar_value": "amount", "number_of_cds": "quantity"}
    )
    tx["timestamp"] = pd.to_datetime(tx["timestamp"].astype(str), format="%Y%m%d")
    tx = tx.astype({ENTITY: "string", "quantity": float})
    return tx.sort_values([ENTITY, "timestamp"], kind="stable").reset_index(drop=True)


@pytest.mark.slow
@pytest.mark.skipif(not BUNDLED.is_file(), reason="BUNDLED data not present")
def test_cdnow_full_build_and_sampled_reference() -> None:
    settings = Settings()
    tx = cdnow()
    started = time.perf_counter()
    built = build_features(tx, settings)
    elapsed = time.perf_counter() - started
    grid = snapshot_dates(tx, settings.features)
    assert built[ENTITY].nunique() == 23_570
    assert built[EVENT_TIMESTAMP].nunique() == len(grid)
    assert elapsed < 30, f"build_features took {elapsed:.1f}s"

    customers = tx[ENTITY].drop_duplicates().sample(25, random_state=1)
    snaps = list(grid[::9])
    sample_tx = tx[tx[ENTITY].isin(customers)]
    mine = built[
        built[ENTITY].isin(customers) & built[EVENT_TIMESTAMP].dt.tz_localize(None).isin(snaps)
    ]
    assert_same_features(mine, reference_features(sample_tx, settings, snaps))
