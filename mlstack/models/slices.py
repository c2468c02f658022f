"""Metrics by slice of the test period, and the bias findings among them.

Bias flag: a scored slice is a finding when its PR-AUC trails the overall PR-AUC by more
than `evaluation.slice_margin` (the configured rule). PR-AUC moves with the base rate, so
each slice also carries its base rate, lift (PR-AUC / base rate) and ROC-AUC, and each
finding says whether the slice is also ranked worse (ROC-AUC behind by more than the same
margin) or the gap follows a lower base rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd

from mlstack.config import EvaluationSettings
from mlstack.models.metrics import classification_metrics

TENURE_COLUMN = "tenure_days"
TENURE_BANDS_DAYS = (90, 180, 365)
SPEND_COLUMNS = ("spend_total", "spend_365d")  # the first one present is cut in quartiles
QUANTILE_BANDS = 4
SLICE_TABLE_COLUMNS = [
    "slice", "value", "column", "rows", "positives", "base_rate", "selected_share", "roc_auc",
    "pr_auc", "pr_auc_lift", "brier", "pr_auc_gap", "roc_auc_gap", "scored", "bias_finding",
    "note",
]  # fmt: skip


@dataclass(frozen=True)
class Slice:
    """Rows of the test set that share a value or band of one column."""

    column: str
    name: str
    value: str
    mask: np.ndarray


def slices_of(test: pd.DataFrame, slice_columns: list[str]) -> list[Slice]:
    """Tenure bands (fixed; quartiles when the fixed bands leave a single non-empty one),
    quartile bands of the first spend column present, and each value of the categorical
    `slice_columns` present in `test` (missing values form their own slice)."""
    slices: list[Slice] = []
    if TENURE_COLUMN in test.columns:
        edges = [-np.inf, *TENURE_BANDS_DAYS, np.inf]
        names = [f"<{TENURE_BANDS_DAYS[0]}d"]
        names += [f"{a}–{b}d" for a, b in pairwise(TENURE_BANDS_DAYS)]
        names += [f"≥{TENURE_BANDS_DAYS[-1]}d"]
        bands = pd.cut(test[TENURE_COLUMN], edges, right=False, labels=names)
        fixed = [s for s in _value_slices(TENURE_COLUMN, "band", bands) if s.mask.any()]
        slices += fixed if len(fixed) > 1 else _quartile_slices(test, TENURE_COLUMN)
    spend = next((c for c in SPEND_COLUMNS if c in test.columns), None)
    if spend is not None:
        slices += _quartile_slices(test, spend)
    for column in slice_columns:
        if column in test.columns:
            values = test[column].astype("string").fillna("(missing)")
            slices += _value_slices(column, "", values)
    return slices


def _value_slices(column: str, kind: str, values: pd.Series) -> list[Slice]:
    categorical = isinstance(values.dtype, pd.CategoricalDtype)
    order = list(values.cat.categories) if categorical else sorted(values.dropna().unique())
    name = f"{column} {kind}".strip()
    return [Slice(column, name, str(v), (values == v).to_numpy()) for v in order]


def _quartile_slices(test: pd.DataFrame, column: str) -> list[Slice]:
    values = test[column].astype(float)
    codes = pd.qcut(values, QUANTILE_BANDS, labels=False, duplicates="drop").to_numpy()
    slices = []
    for code in np.unique(codes[np.isfinite(codes)]):
        mask = codes == code
        low, high = values[mask].min(), values[mask].max()
        value = f"Q{int(code) + 1} ({low:,.0f}–{high:,.0f})"
        slices.append(Slice(column, f"{column} quartile", value, mask))
    return slices


def slice_table(
    y: np.ndarray,
    scores: np.ndarray,
    predicted: np.ndarray,
    slices: list[Slice],
    overall: dict[str, float],
    config: EvaluationSettings,
) -> pd.DataFrame:
    """Metrics by slice, the gaps to the overall ones and whether the slice is a bias
    finding; slices below `min_slice_rows` rows or with one class are listed unscored."""
    rows = []
    for piece in slices:
        mask = piece.mask
        n, positives = int(mask.sum()), int(y[mask].sum())
        row: dict[str, Any] = {
            "slice": piece.name,
            "value": piece.value,
            "column": piece.column,
            "rows": n,
            "positives": positives,
            "base_rate": positives / n if n else math.nan,
            "selected_share": float(predicted[mask].mean()) if n else math.nan,
            "scored": False,
            "bias_finding": False,
            "note": "",
        }
        if n < config.min_slice_rows:
            row["note"] = f"not scored: {n} rows < {config.min_slice_rows}"
        elif positives in (0, n):
            row["note"] = "not scored: one class only"
        else:
            m = classification_metrics(
                y[mask], scores[mask], config.top_fraction, config.calibration_bins
            )
            row |= {
                "roc_auc": m["roc_auc"],
                "pr_auc": m["pr_auc"],
                "pr_auc_lift": m["pr_auc"] / m["positive_rate"],
                "brier": m["brier"],
                "pr_auc_gap": overall["pr_auc"] - m["pr_auc"],
                "roc_auc_gap": overall["roc_auc"] - m["roc_auc"],
                "scored": True,
            }
            row["bias_finding"] = bool(row["pr_auc_gap"] > config.slice_margin)
        rows.append(row)
    return pd.DataFrame(rows).reindex(columns=SLICE_TABLE_COLUMNS)


def bias_findings(
    slices: pd.DataFrame, overall: dict[str, float], margin: float, features: list[str]
) -> list[str]:
    """One sentence per flagged slice, largest PR-AUC gap first, saying whether the model
    also ranks the slice worse or the gap follows a lower base rate."""
    flagged = slices[slices["bias_finding"]].sort_values("pr_auc_gap", ascending=False)
    base_rate, lift = overall["positive_rate"], overall["pr_auc"] / overall["positive_rate"]
    sentences = []
    for row in flagged.itertuples(index=False):
        if row.roc_auc_gap > margin:
            cause = "the model also ranks this slice worse"
            if row.column in features:
                cause += f" (in part expected: the slice narrows {row.column}, a model input)"
        elif row.base_rate < base_rate:
            cause = "ranking within the slice holds up, so the gap follows its lower base rate"
        else:
            cause = "ranking within the slice is within the margin"
        sentences.append(
            f"{row.slice} {row.value} ({row.rows:,} rows): PR-AUC {row.pr_auc:.3f} is "
            f"{row.pr_auc_gap:.3f} below the overall {overall['pr_auc']:.3f} (margin {margin}); "
            f"base rate {row.base_rate:.1%} vs {base_rate:.1%}, lift {row.pr_auc_lift:.1f} vs "
            f"{lift:.1f}, ROC-AUC {row.roc_auc:.3f} vs {overall['roc_auc']:.3f}: {cause}."
        )
    return sentences
