"""Returns and line-item logs in the features and labels: worked examples by hand."""

from __future__ import annotations

import pandas as pd
import pytest

from mlstack.config import Settings
from mlstack.data.clean import IS_RETURN, mark_returns
from mlstack.features.build import build_features, build_labels
from mlstack.features.definitions import ENTITY, EVENT_TIMESTAMP, attribute_names, label_name

pytestmark = pytest.mark.unit

LINE_ITEMS = {
    "customer_id": "Customer ID",
    "timestamp": "InvoiceDate",
    "quantity": "Quantity",
    "unit_price": "Price",
    "invoice_id": "Invoice",
    "product_id": "StockCode",
    "country": "Country",
}


def settings(**features: object) -> Settings:
    return Settings(
        source={"columns": LINE_ITEMS, "return_invoice_pattern": "C"},
        features={
            "windows_days": [30],
            "trend_window_days": 30,
            "horizon_days": 10,
            "peaks": [],
            "return_features": True,
            **features,
        },
    )


def lines(rows: list[tuple[str, str, str, str, float, float, str]]) -> pd.DataFrame:
    """Canonical line items from (customer, timestamp, invoice, product, quantity, amount,
    country), returns marked as validation marks them."""
    frame = pd.DataFrame(
        rows,
        columns=[ENTITY, "timestamp", "invoice_id", "product_id", "quantity", "amount", "country"],
    )
    for column in (ENTITY, "invoice_id", "product_id", "country"):
        frame[column] = frame[column].astype("string")
    frame["timestamp"] = pd.to_datetime(frame["timestamp"])
    return mark_returns(frame, settings().source)


# customer a: two invoices on Jan 2 (three lines), a cancellation on Jan 5, one more on Jan 9;
# customer b: one invoice on Jan 3 and, in the label window of the Jan 6 snapshot, only a return
LOG = lines(
    [
        ("a", "2020-01-02 09:15", "100", "P1", 2, 20.0, "UK"),
        ("a", "2020-01-02 09:15", "100", "P2", 1, 5.0, "UK"),
        ("a", "2020-01-02 17:40", "101", "P1", 1, 10.0, "UK"),
        ("a", "2020-01-05 11:00", "C102", "P1", -1, -10.0, "UK"),
        ("a", "2020-01-09 08:00", "103", "P3", 4, 12.0, "France"),
        ("b", "2020-01-03 10:00", "200", "P9", 3, 30.0, "Spain"),
        ("b", "2020-01-08 12:00", "C201", "P9", -3, -30.0, "Spain"),
        ("b", "2020-01-30 12:00", "202", "P9", 1, 10.0, "Spain"),
    ]
)
SNAPSHOTS = ["2020-01-03", "2020-01-06", "2020-01-10"]


@pytest.fixture(scope="module")
def built() -> pd.DataFrame:
    frame = build_features(LOG, settings(), SNAPSHOTS)
    frame[EVENT_TIMESTAMP] = frame[EVENT_TIMESTAMP].dt.strftime("%Y-%m-%d")
    return frame.set_index([ENTITY, EVENT_TIMESTAMP])


def test_an_order_is_an_invoice(built: pd.DataFrame) -> None:
    a = built.loc["a"]
    # Jan 3: invoices 100 and 101 from Jan 2 are two orders on the same day
    assert a.loc["2020-01-03", "orders_total"] == 2
    assert a.loc["2020-01-03", "ipt_last_days"] == 0
    assert a.loc["2020-01-03", "items_per_order"] == pytest.approx((3 + 1) / 2)
    assert a.loc["2020-01-03", "distinct_products"] == 2


def test_returns_change_neither_orders_nor_recency_but_net_the_spend(
    built: pd.DataFrame,
) -> None:
    jan6 = built.loc[("a", "2020-01-06")]
    assert jan6["orders_total"] == 2  # the Jan 5 cancellation is no order
    assert jan6["recency_days"] == 3  # from the Jan 3 order day, not the Jan 5 return
    assert jan6["spend_total"] == pytest.approx(35.0 - 10.0)
    assert jan6["spend_30d"] == pytest.approx(25.0)
    assert jan6["avg_basket_value"] == pytest.approx(25.0 / 2)
    assert jan6["returns_total"] == 1
    assert jan6["return_value_share"] == pytest.approx(10.0 / 35.0)
    assert jan6["items_per_order"] == pytest.approx(4 / 2)  # returned items are no order's


def test_returns_are_counted_point_in_time(built: pd.DataFrame) -> None:
    assert built.loc[("a", "2020-01-03"), "returns_total"] == 0
    assert built.loc[("a", "2020-01-03"), "return_value_share"] == 0
    assert built.loc[("b", "2020-01-06"), "returns_total"] == 0  # b's return is on Jan 8
    assert built.loc[("b", "2020-01-10"), "returns_total"] == 1
    assert built.loc[("b", "2020-01-10"), "spend_total"] == pytest.approx(0.0)


def test_the_time_of_day_decides_which_snapshot_sees_a_line(built: pd.DataFrame) -> None:
    # the Jan 9 08:00 invoice is seen from the Jan 10 midnight snapshot, not before
    assert built.loc[("a", "2020-01-10"), "orders_total"] == 3
    assert built.loc[("a", "2020-01-10"), "recency_days"] == 0
    assert list(built.reset_index()[EVENT_TIMESTAMP].unique()) == SNAPSHOTS


def test_a_categorical_attribute_is_the_latest_orders(built: pd.DataFrame) -> None:
    assert attribute_names(settings().source) == ["country"]
    assert built.loc[("a", "2020-01-06"), "country"] == "UK"
    assert built.loc[("a", "2020-01-10"), "country"] == "France"
    assert built.loc[("b", "2020-01-06"), "country"] == "Spain"


def test_a_customer_whose_only_activity_in_the_window_is_a_return_is_labelled_0() -> None:
    entity = pd.DataFrame(
        {
            ENTITY: pd.array(["a", "b"], dtype="string"),
            EVENT_TIMESTAMP: pd.to_datetime(["2020-01-06", "2020-01-06"]).tz_localize("UTC"),
        }
    )

    labels = build_labels(LOG, entity, settings()).set_index(ENTITY)[
        label_name(settings().features)
    ]

    # a bought on Jan 9 (inside (Jan 6, Jan 16]); b only returned on Jan 8
    assert labels.to_dict() == {"a": 1, "b": 0}


def test_without_validation_the_sign_still_marks_a_return() -> None:
    raw = LOG.drop(columns=IS_RETURN)
    raw.loc[raw["invoice_id"] == "C102", ["quantity", "amount"]] = [1, 10.0]  # sign lost

    built = build_features(raw, settings(), SNAPSHOTS).set_index([ENTITY, EVENT_TIMESTAMP])

    # with the sign gone, only the invoice pattern in the settings marks the cancellation
    jan6 = built.xs(pd.Timestamp("2020-01-06", tz="UTC"), level=EVENT_TIMESTAMP).loc["a"]
    assert jan6["orders_total"] == 2 and jan6["returns_total"] == 1
