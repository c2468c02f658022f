"""The one list of features: names, types and meaning, derived from the feature settings.

The feature builder produces exactly these columns, the Feast repo declares them, and
training and serving fetch them through the feature service. Nothing else lists features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mlstack.config import FeatureSettings, Settings, SourceSettings

ENTITY = "customer_id"
EVENT_TIMESTAMP = "snapshot_date"
FEATURE_VIEW = "customer_behaviour"
# Set while mlstack imports the Feast repo, so the repo declares the run's features.
SETTINGS_ENV = "MLSTACK_SETTINGS_JSON"

Kind = Literal["int", "float"]


@dataclass(frozen=True)
class Feature:
    name: str
    kind: Kind
    description: str


def feature_list(settings: Settings) -> list[Feature]:
    """All features for these settings, in table order (peak features need peaks, quantity
    features a quantity column, return features `features.return_features`, variety
    features a product column)."""
    t = settings.features.trend_window_days
    h = settings.features.horizon_days
    feats = [
        Feature("recency_days", "int", "days since the last purchase"),
        Feature("tenure_days", "int", "days since the first purchase"),
        Feature("orders_total", "int", "orders so far (invoices, or purchase days)"),
        Feature("spend_total", "float", "total spend so far, net of returns"),
        Feature("avg_basket_value", "float", "net spend per order so far"),
    ]
    for w in settings.features.windows_days:
        feats.append(Feature(f"orders_{w}d", "int", f"orders in the last {w} days"))
        feats.append(Feature(f"spend_{w}d", "float", f"net spend in the last {w} days"))
    feats += [
        Feature("ipt_mean_days", "float", "mean days between orders (NaN if one)"),
        Feature("ipt_std_days", "float", "sample std of days between orders (NaN if < 3)"),
        Feature("ipt_last_days", "float", "days between the last two orders (NaN if one)"),
        Feature("overdue_ratio", "float", "recency over the mean days between orders (or NaN)"),
        Feature(f"orders_trend_{t}d", "int", f"orders in the last {t}d minus the {t}d before"),
        Feature(f"spend_trend_{t}d", "float", f"spend in the last {t}d minus the {t}d before"),
        Feature(
            f"active_periods_{h}d",
            "int",
            f"{h}-day blocks since the first purchase day (block 0 starts on it) with a purchase",
        ),
        Feature(
            f"active_share_{h}d",
            "float",
            f"share of the {h}-day blocks begun since the first purchase day with a purchase",
        ),
    ]
    if settings.features.peaks:
        feats += [
            Feature("days_to_next_peak", "int", "days to the next seasonal peak (0 on one)"),
            Feature("days_since_last_peak", "int", "days since the last seasonal peak (0 on one)"),
        ]
    if settings.source.columns.quantity is not None:
        feats.append(Feature("items_per_order", "float", "items per order so far"))
    if settings.features.return_features:
        feats += [
            Feature("returns_total", "int", "returns so far (invoices, or return days)"),
            Feature("return_value_share", "float", "value returned over value bought so far"),
        ]
    if settings.source.columns.product_id is not None:
        feats.append(Feature("distinct_products", "int", "different products bought so far"))
    return feats


def attribute_names(source: SourceSettings) -> list[str]:
    """The customer attributes the feature table carries besides the features: categorical
    values (their latest order's), for evaluation slices and drift checks, not model input."""
    return list(source.columns.attributes())


def feature_names(settings: Settings) -> list[str]:
    return [f.name for f in feature_list(settings)]


def label_name(features: FeatureSettings) -> str:
    return f"purchase_within_{features.horizon_days}d"
