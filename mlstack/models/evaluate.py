"""Evaluation of a model on the test period: the metrics, curves for the KFP UI, metrics by
slice with bias findings, an analysis of false positives and negatives, plots and one HTML
report.

Every score comes from `mlstack.models.metrics`. The confusion matrix, the slices'
"selected" share and the error analysis use one operating point: by default the
`evaluation.top_fraction` of rows with the highest scores (`top_mask`), so the matrix's
precision equals `precision_at_top`; its threshold is the lowest score selected.

Bias flag: a scored slice is a finding when its PR-AUC trails the overall PR-AUC by more
than `evaluation.slice_margin` (the configured rule). PR-AUC moves with the base rate, so
each slice also carries its base rate, lift (PR-AUC / base rate) and ROC-AUC, and each
finding says whether the slice is also ranked worse (ROC-AUC behind by more than the same
margin) or the gap follows a lower base rate.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
import time
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from mlstack.config import EvaluationSettings, Settings
from mlstack.features.definitions import ENTITY, EVENT_TIMESTAMP, attribute_names
from mlstack.features.reports import _figure, _table, _write_page
from mlstack.models.metrics import calibration_bins, classification_metrics, top_mask

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

CATEGORIES = ["no purchase", "purchase"]
MAX_ROC_POINTS = 200  # KFP's ClassificationMetrics.log_roc_curve takes plain lists
MAX_PLOT_POINTS = 400
PNG_DPI = 100
TENURE_COLUMN = "tenure_days"
TENURE_BANDS_DAYS = (90, 180, 365)
SPEND_COLUMNS = ("spend_total", "spend_365d")  # the first one present is cut in quartiles
QUANTILE_BANDS = 4
ERROR_EXAMPLES = 10  # customers listed per error group
ERROR_TABLE_FEATURES = 8  # features listed per error group
SENTENCE_FEATURES = 3
CLEAR_DIFFERENCE = 0.2  # |standardized difference| from which a feature "sets a group apart"
ERROR_SAMPLE_ROWS = 20_000  # rows per group used for the percentile ranks
RANDOM_STATE = 0
EVEN_BINS = 1.1  # bins whose counts differ less than this factor are labelled once
SKEWED_RANGE = 10  # reliability drawn log-log when bin means span more than this factor
PLOT_FILES = {
    "roc": "roc.png",
    "pr": "pr.png",
    "calibration": "calibration.png",
    "lift": "lift.png",
    "confusion_matrix": "confusion_matrix.png",
}
HTML_FILE = "evaluation.html"
JSON_FILE = "evaluation.json"
SLICE_TABLE_COLUMNS = [
    "slice", "value", "column", "rows", "positives", "base_rate", "selected_share", "roc_auc",
    "pr_auc", "pr_auc_lift", "brier", "pr_auc_gap", "roc_auc_gap", "scored", "bias_finding",
    "note",
]  # fmt: skip
# error group, its references (the first ranks the features), highest scores as examples
ERROR_GROUPS = (
    ("false_positives", "fp", ("tn", "tp"), True),
    ("false_negatives", "fn", ("tp", "tn"), False),
)
GROUP_NAMES = {
    "tp": "true positives",
    "fp": "false positives",
    "fn": "false negatives",
    "tn": "true negatives",
}
GROUP_MEANING = {"fp": "selected, did not buy", "fn": "bought, not selected"}
SUMMARY_METRICS = ["roc_auc", "pr_auc", "brier", "calibration_error", "lift_at_top"]


class ProbabilisticClassifier(Protocol):
    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray: ...


@dataclass
class Evaluation:
    """The outcome of `evaluate_model`; `to_dict` is the JSON summary without the curves."""

    name: str
    metrics: dict[str, float]
    roc: dict[str, list[float]]
    confusion: dict[str, Any]
    threshold: float
    slices: pd.DataFrame
    bias_findings: list[str]
    errors: dict[str, Any]
    plots: dict[str, Path]
    html: Path
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(
            {
                "name": self.name,
                "metrics": self.metrics,
                "threshold": self.threshold,
                "confusion": self.confusion,
                "baselines": self.baselines,
                "slices": self.slices.to_dict("records"),
                "bias_findings": self.bias_findings,
                "errors": self.errors,
                "plots": {k: str(v) for k, v in self.plots.items()},
                "html": str(self.html),
            }
        )

    def write_json(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2), encoding="utf-8")
        return path


# -- curves and the operating point ---------------------------------------------------------


def thin(x: np.ndarray, y: np.ndarray, max_points: int) -> np.ndarray:
    """Indices of at most `max_points` points spread evenly along the curve (x, y), in order,
    first and last included."""
    if len(x) <= max_points:
        return np.arange(len(x))
    length = np.concatenate([[0.0], np.cumsum(np.abs(np.diff(x)) + np.abs(np.diff(y)))])
    targets = np.linspace(0.0, length[-1], max_points)[:-1]
    return np.unique(np.append(np.searchsorted(length, targets), len(x) - 1))


def roc_points(
    y: np.ndarray, scores: np.ndarray, max_points: int = MAX_ROC_POINTS
) -> dict[str, list[float]]:
    """ROC curve thinned to at most `max_points` points: fpr (non-decreasing), tpr and the
    score thresholds, all finite (the "select nothing" point gets a threshold just above the
    top score)."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(y, scores)
    top = float(np.max(scores))
    thresholds = np.where(np.isfinite(thresholds), thresholds, np.nextafter(top, np.inf))
    keep = thin(fpr, tpr, max_points)
    return {
        "fpr": fpr[keep].tolist(),
        "tpr": tpr[keep].tolist(),
        "thresholds": thresholds[keep].tolist(),
    }


def operating_point(
    scores: np.ndarray, top_fraction: float, threshold: float | None = None
) -> tuple[np.ndarray, float]:
    """Rows predicted positive and the threshold: `score >= threshold` when one is given,
    else the top `top_fraction` of rows (threshold: the lowest score among them)."""
    if threshold is not None:
        return scores >= threshold, float(threshold)
    selected = top_mask(scores, top_fraction)
    return selected, float(scores[selected].min())


def confusion_matrix(y: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """The 2x2 matrix in KFP's layout: rows are the true class, columns the predicted one."""
    positive = y.astype(bool)
    tp = int((predicted & positive).sum())
    fp = int((predicted & ~positive).sum())
    fn = int((~predicted & positive).sum())
    tn = int((~predicted & ~positive).sum())
    return {"categories": list(CATEGORIES), "matrix": [[tn, fp], [fn, tp]]}


# -- slices ---------------------------------------------------------------------------------


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


# -- false positives and false negatives ---------------------------------------------------


def error_analysis(
    test: pd.DataFrame,
    features: list[str],
    y: np.ndarray,
    scores: np.ndarray,
    predicted: np.ndarray,
    threshold: float,
) -> dict[str, Any]:
    """Who the false positives and false negatives are and what sets them apart.

    False positives are compared with the true negatives (what made the model select them)
    and with the true positives (what it missed to tell them apart); false negatives with
    the true positives and with the true negatives. Per feature: medians and means of the
    groups and the standardized difference of percentile ranks, ranked by the first
    comparison. Examples: the highest-scored false positives, the lowest-scored false
    negatives.
    """
    positive = y.astype(bool)
    groups = {
        "tp": predicted & positive,
        "fp": predicted & ~positive,
        "fn": ~predicted & positive,
        "tn": ~predicted & ~positive,
    }
    numeric = [f for f in features if pd.api.types.is_numeric_dtype(test[f])]
    frame = test[numeric].astype(float)
    ranks = _percentile_ranks(frame, groups)
    result: dict[str, Any] = {
        "threshold": threshold,
        "counts": {k: int(v.sum()) for k, v in groups.items()},
    }
    for key, error, references, highest in ERROR_GROUPS:
        table = _feature_contrast(frame, ranks, groups, error, references)
        top = list(table["feature"][:SENTENCE_FEATURES])
        result[key] = {
            "count": int(groups[error].sum()),
            "group": error,
            "compared_with": list(references),
            "features": table.head(ERROR_TABLE_FEATURES).to_dict("records"),
            "examples": _examples(test, top, scores, groups[error], highest).to_dict("records"),
        }
    result["sentences"] = _error_sentences(result, threshold)
    return result


def _percentile_ranks(frame: pd.DataFrame, groups: dict[str, np.ndarray]) -> pd.DataFrame:
    """Percentile ranks (ties averaged, missing kept) over at most `ERROR_SAMPLE_ROWS` rows
    of each group, so the large true-negative group does not dominate the cost."""
    rng = np.random.default_rng(RANDOM_STATE)
    rows = []
    for mask in groups.values():
        index = np.flatnonzero(mask)
        if len(index) > ERROR_SAMPLE_ROWS:
            index = np.sort(rng.choice(index, ERROR_SAMPLE_ROWS, replace=False))
        rows.append(index)
    return frame.iloc[np.concatenate(rows)].rank(pct=True)


def _std_diff(ranks: pd.DataFrame, group: np.ndarray, reference: np.ndarray) -> pd.Series:
    """Standardized difference of mean percentile rank, group minus reference (0 when a
    side is empty or constant)."""
    a, b = ranks[group[ranks.index]], ranks[reference[ranks.index]]
    spread = np.sqrt((a.var() + b.var()) / 2).replace(0.0, np.nan)
    return ((a.mean() - b.mean()) / spread).fillna(0.0)


def _feature_contrast(
    frame: pd.DataFrame,
    ranks: pd.DataFrame,
    groups: dict[str, np.ndarray],
    error: str,
    references: tuple[str, str],
) -> pd.DataFrame:
    """Per feature: median and mean of the error group and each reference group and the
    standardized difference to each; largest |difference to the first reference| first."""
    involved = (error, *references)
    table = pd.DataFrame({"feature": frame.columns}, index=frame.columns)
    for g in involved:
        table[f"median {g}"] = frame[groups[g]].median()
    for g in involved:
        table[f"mean {g}"] = frame[groups[g]].mean()
    for g in references:
        table[f"d vs {g}"] = _std_diff(ranks, groups[error], groups[g])
    order = table[f"d vs {references[0]}"].abs().sort_values(ascending=False, kind="stable")
    return table.loc[order.index].reset_index(drop=True)


def _examples(
    test: pd.DataFrame, features: list[str], scores: np.ndarray, group: np.ndarray, highest: bool
) -> pd.DataFrame:
    """The `ERROR_EXAMPLES` rows of the group with the highest (or lowest) scores."""
    index = np.flatnonzero(group)
    order = np.argsort(-scores[index] if highest else scores[index], kind="stable")
    chosen = index[order[:ERROR_EXAMPLES]]
    keys = [c for c in (ENTITY, EVENT_TIMESTAMP) if c in test.columns]
    examples = test.iloc[chosen][[*keys, *features]].reset_index(drop=True)
    if EVENT_TIMESTAMP in examples.columns:
        examples[EVENT_TIMESTAMP] = examples[EVENT_TIMESTAMP].dt.strftime("%Y-%m-%d")
    if ENTITY in examples.columns:
        examples[ENTITY] = examples[ENTITY].astype(str)
    examples.insert(len(keys), "score", scores[chosen])
    return examples


def _error_sentences(analysis: dict[str, Any], threshold: float) -> list[str]:
    """The counts at the threshold, then one sentence per error group."""
    c = analysis["counts"]
    selected, purchasers = c["tp"] + c["fp"], c["tp"] + c["fn"]
    sentences = [
        f"At threshold {threshold:.4g}, {c['fp']:,} of the {selected:,} selected rows are false "
        f"positives (precision {c['tp'] / max(selected, 1):.1%}) and {c['fn']:,} of the "
        f"{purchasers:,} purchasers are missed, the false negatives "
        f"(recall {c['tp'] / max(purchasers, 1):.1%})."
    ]
    for key, _, _, _ in ERROR_GROUPS:
        group = analysis[key]
        if group["count"]:
            sentences.append(_group_sentence(group))
    return sentences


def _group_sentence(group: dict[str, Any]) -> str:
    error, (first, second) = group["group"], group["compared_with"]
    rows = group["features"]
    clear = [r for r in rows if abs(r[f"d vs {first}"]) >= CLEAR_DIFFERENCE]
    subject = f"{GROUP_NAMES[error].capitalize()} ({GROUP_MEANING[error]})"
    if not clear:
        return (
            f"{subject} do not differ clearly from the {GROUP_NAMES[first]} on any feature "
            f"(every |d| < {CLEAR_DIFFERENCE})."
        )
    parts = [_contrast(r, error, first) for r in clear[:SENTENCE_FEATURES]]
    text = f"{subject} stand apart from the {GROUP_NAMES[first]} by " + _join(parts)
    best = max(rows, key=lambda r: abs(r[f"d vs {second}"]))
    if abs(best[f"d vs {second}"]) >= CLEAR_DIFFERENCE:
        text += (
            f"; against the {GROUP_NAMES[second]} they were scored alongside, the clearest "
            f"difference is {_contrast(best, error, second)}"
        )
    return text + "."


def _contrast(row: dict[str, Any], group: str, reference: str) -> str:
    """E.g. 'higher orders_365d (median 5 vs 1, d=+1.20)'; means when the medians tie."""
    d = row[f"d vs {reference}"]
    kind = "median"
    if math.isclose(row[f"median {group}"], row[f"median {reference}"]):
        kind = "mean"
    a, b = row[f"{kind} {group}"], row[f"{kind} {reference}"]
    direction = "higher" if d > 0 else "lower"
    return f"{direction} {row['feature']} ({kind} {a:,.3g} vs {b:,.3g}, d={d:+.2f})"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


# -- plots --------------------------------------------------------------------------------


def _curve_figure(
    curves: dict[str, tuple[np.ndarray, np.ndarray, str]],
    point: tuple[float, float],
    kind: str,
    base_rate: float,
) -> Figure:
    """ROC ("roc") or precision-recall ("pr") curves, the candidate first, its operating
    point marked."""
    fig, axes = _figure(size=(5.5, 5))
    ax = axes[0, 0]
    for i, (label, (x, y, legend)) in enumerate(curves.items()):
        ax.plot(x, y, lw=2.2 if i == 0 else 1.3, label=f"{label} ({legend})", zorder=3 - (i > 0))
    if kind == "roc":
        ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="random")
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve")
    else:
        ax.axhline(base_rate, ls="--", color="grey", lw=1, label=f"base rate {base_rate:.1%}")
        ax.set(xlabel="recall", ylabel="precision", title="Precision-recall curve")
    ax.plot(*point, "o", color="black", ms=6, zorder=4, label="operating point")
    ax.set(xlim=(0, 1), ylim=(0, 1.01))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right" if kind == "roc" else "upper right", fontsize=8)
    return fig


def _calibration_figure(y: np.ndarray, scores: np.ndarray, bins: int, ece: float) -> Figure:
    """Reliability diagram on the metric's quantile bins with their row counts (in the title
    when the bins are even, else on each point), over a histogram of the scores."""
    fig, axes = _figure(2, 1, size=(5.5, 6.5))
    ax, hist = axes[0, 0], axes[1, 0]
    hist.hist(scores, bins=50, color="#4c72b0")
    hist.set_yscale("log")
    hist.set(xlabel="score", ylabel="rows (log)", title="Score distribution")
    hist.title.set_fontsize(10)
    if scores.min() < 0 or scores.max() > 1:
        ax.text(0.5, 0.5, "scores are not probabilities", ha="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    observed, predicted, counts = calibration_bins(y, scores, bins)
    low = float(min(observed.min(), predicted.min()))
    high = float(max(observed.max(), predicted.max()))
    logarithmic = low > 0 and high / low > SKEWED_RANGE
    limits = (low / 1.3, high * 1.3) if logarithmic else (0.0, high * 1.08)
    if logarithmic:
        ax.set(xscale="log", yscale="log")
    ax.plot(limits, limits, ls="--", color="grey", lw=1, label="perfectly calibrated")
    ax.plot(predicted, observed, "o-", label="model")
    if counts.max() <= EVEN_BINS * counts.min():
        rows = f"~{int(counts.mean()):,} rows each"
    else:
        rows = "labels = rows"
        for x, obs, n in zip(predicted, observed, counts, strict=True):
            ax.annotate(f"{n:,}", (x, obs), textcoords="offset points", xytext=(4, -11), fontsize=7)
    scale = ", log-log" if logarithmic else ""
    ax.set(
        xlim=limits,
        ylim=limits,
        xlabel="mean predicted probability",
        ylabel="observed purchase rate",
        title=f"Reliability: {len(counts)} quantile bins, {rows}{scale}; ECE {ece:.4f}",
    )
    ax.title.set_fontsize(10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return fig


def _gains(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Share targeted, share of positives captured (highest scores first, ties by position)
    and the lift of each decile."""
    order = np.argsort(-scores, kind="stable")
    hits = y[order]
    captured = np.concatenate([[0.0], np.cumsum(hits) / hits.sum()])
    targeted = np.arange(len(hits) + 1) / len(hits)
    deciles = np.array([part.mean() for part in np.array_split(hits, 10)]) / hits.mean()
    return targeted, captured, deciles


def _lift_figure(y: np.ndarray, models: dict[str, np.ndarray], top_fraction: float) -> Figure:
    """Cumulative gains and lift by score decile for each model."""
    fig, axes = _figure(1, 2, size=(11, 4.5))
    gains_ax, lift_ax = axes[0]
    width = 0.8 / len(models)
    for i, (label, scores) in enumerate(models.items()):
        targeted, captured, deciles = _gains(y, scores)
        keep = thin(targeted, captured, MAX_PLOT_POINTS)
        gains_ax.plot(targeted[keep], captured[keep], lw=2.2 if i == 0 else 1.3, label=label)
        lift_ax.bar(
            np.arange(1, 11) + (i - (len(models) - 1) / 2) * width, deciles, width, label=label
        )
    gains_ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="random")
    gains_ax.axvline(top_fraction, color="black", lw=0.8, ls=":")
    gains_ax.set(
        xlabel="share of customers targeted (highest scores first)",
        ylabel="share of purchasers captured",
        title="Cumulative gains",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    gains_ax.grid(alpha=0.3)
    gains_ax.legend(fontsize=8, loc="lower right")
    lift_ax.axhline(1.0, ls="--", color="grey", lw=1)
    lift_ax.set(
        xlabel="score decile (1 = highest scores)",
        ylabel="lift (decile rate / base rate)",
        title="Lift by decile",
        xticks=range(1, 11),
    )
    lift_ax.grid(alpha=0.3, axis="y")
    lift_ax.legend(fontsize=8)
    return fig


def _confusion_figure(confusion: dict[str, Any], threshold: float, rule: str) -> Figure:
    """The 2x2 matrix with counts and the share of each true class."""
    matrix = np.array(confusion["matrix"])
    shares = matrix / matrix.sum(axis=1, keepdims=True).clip(min=1)
    fig, axes = _figure(size=(5.2, 4.4))
    ax: Axes = axes[0, 0]
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (i, j), n in np.ndenumerate(matrix):
        colour = "white" if shares[i, j] > 0.6 else "black"
        ax.text(j, i, f"{n:,}\n{shares[i, j]:.1%} of row", ha="center", va="center", color=colour)
    labels = confusion["categories"]
    ax.set_xticks([0, 1], labels)
    ax.set_yticks([0, 1], labels)
    ax.set(xlabel="predicted", ylabel="true")
    ax.set_title(f"Confusion matrix: {rule}, threshold {threshold:.4g}", fontsize=9)
    return fig


def _save(fig: Figure, path: Path) -> str:
    """Write the figure as PNG and return the same image as an embedded <img> tag (one
    render: `reports._img` would draw it a second time)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=PNG_DPI)
    path.write_bytes(buffer.getvalue())
    data = base64.b64encode(buffer.getvalue()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


# -- the report ---------------------------------------------------------------------------


def _metrics_frame(models: dict[str, dict[str, float]]) -> pd.DataFrame:
    frame = pd.DataFrame(models).T.rename_axis("model")
    return frame.astype({"rows": int})


def _comparison(
    name: str, models: dict[str, dict[str, float]], top_fraction: float
) -> tuple[pd.DataFrame, list[str]]:
    """Candidate minus each baseline on the summary metrics, and one sentence per baseline."""
    candidate = models[name]
    rows, sentences = {}, []
    for baseline, m in models.items():
        if baseline == name:
            continue
        rows[baseline] = {k: candidate[k] - m[k] for k in SUMMARY_METRICS}
        sentences.append(
            f"{name} vs {baseline}: PR-AUC {candidate['pr_auc']:.3f} vs {m['pr_auc']:.3f} "
            f"({candidate['pr_auc'] - m['pr_auc']:+.3f}), ROC-AUC {candidate['roc_auc']:.3f} vs "
            f"{m['roc_auc']:.3f}, lift in the top {top_fraction:.0%} "
            f"{candidate['lift_at_top']:.2f} vs {m['lift_at_top']:.2f}."
        )
    table = pd.DataFrame(rows).T.rename_axis(f"{name} minus")
    return table, sentences


def _slices_html(slices: pd.DataFrame) -> str:
    """The slice table, findings highlighted."""

    def highlight(row: pd.Series) -> list[str]:
        style = "background:#fde0dd;font-weight:bold" if row["bias_finding"] else ""
        return [style] * len(row)

    return (
        slices.style.set_uuid("slices")
        .apply(highlight, axis=1)
        .format(precision=4, na_rep="–", thousands=",")
        .hide(axis="index")
        .to_html()
    )


def _paragraphs(sentences: list[str]) -> str:
    return "".join(f"<p>{html.escape(s)}</p>" for s in sentences)


def _report(
    evaluation: Evaluation,
    models: dict[str, dict[str, float]],
    images: dict[str, str],
    config: EvaluationSettings,
    rule: str,
) -> Path:
    """Write the HTML report next to the plots."""
    m = evaluation.metrics
    summary = (
        f"<p>{int(m['rows']):,} test rows, base rate {m['positive_rate']:.2%}. Operating point: "
        f"{html.escape(rule)}, threshold {evaluation.threshold:.4g}. "
        f"{len(evaluation.bias_findings)} slice(s) flagged.</p>"
    )
    sections = [("Summary", summary), ("Metrics", _table(_metrics_frame(models)))]
    if len(models) > 1:
        table, sentences = _comparison(evaluation.name, models, config.top_fraction)
        sections.append(("Comparison with baselines", _paragraphs(sentences) + _table(table)))
    matrix = pd.DataFrame(evaluation.confusion["matrix"], CATEGORIES, CATEGORIES)
    sections += [
        ("ROC and precision-recall", images["roc"] + images["pr"]),
        ("Gains and lift", images["lift"]),
        ("Calibration", images["calibration"]),
        ("Confusion matrix", images["confusion_matrix"] + _table(matrix.rename_axis("true"))),
        ("Slices", _slices_section(evaluation, config)),
        ("False positives and false negatives", _errors_section(evaluation.errors)),
    ]
    return _write_page(evaluation.html, f"Evaluation — {evaluation.name}", sections)


def _slices_section(evaluation: Evaluation, config: EvaluationSettings) -> str:
    rule = (
        f"A scored slice is a bias finding when its PR-AUC trails the overall PR-AUC "
        f"({evaluation.metrics['pr_auc']:.3f}) by more than {config.slice_margin} "
        f"(evaluation.slice_margin). PR-AUC moves with the base rate, so each slice also shows "
        f"its base rate, lift (PR-AUC / base rate) and ROC-AUC: a finding whose ROC-AUC is "
        f"within the same margin mostly reflects a lower base rate, not weaker ranking. Slices "
        f"cut from a model input (tenure, spend) narrow that input, so their ROC-AUC is lower "
        f"by construction. Slices with fewer than {config.min_slice_rows} rows or one class "
        f"are listed but not scored."
    )
    findings = evaluation.bias_findings or ["No slice is flagged."]
    items = "".join(f"<li>{html.escape(s)}</li>" for s in findings)
    return f"<p>{html.escape(rule)}</p><ul>{items}</ul>" + _slices_html(evaluation.slices)


def _errors_section(errors: dict[str, Any]) -> str:
    parts = [_paragraphs(errors["sentences"])]
    for key, error, references, highest in ERROR_GROUPS:
        group = errors[key]
        against = " and ".join(GROUP_NAMES[r] for r in references)
        parts.append(
            f"<h3>{GROUP_NAMES[error].capitalize()} ({GROUP_MEANING[error]}): "
            f"{group['count']:,} rows, compared with {against}</h3>"
        )
        features = pd.DataFrame(group["features"])
        parts.append(_table(features, index=False) if len(features) else "<p>none</p>")
        examples = pd.DataFrame(group["examples"])
        order = "highest" if highest else "lowest"
        parts.append(f"<p>The {len(examples)} with the {order} scores:</p>")
        parts.append(_table(examples, index=False) if len(examples) else "")
    return "".join(parts)


# -- entry point ----------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """Plain JSON types: NaN and infinities become None, numpy and pandas scalars unwrap."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _checked_scores(values: np.ndarray, rows: int, what: str) -> np.ndarray:
    scores = np.asarray(values, dtype=float).reshape(-1)
    if len(scores) != rows:
        raise ValueError(f"{what}: {len(scores)} scores for {rows} test rows")
    if not np.isfinite(scores).all():
        raise ValueError(f"{what}: scores contain NaN or infinite values")
    return scores


def evaluate_model(
    model: ProbabilisticClassifier | None,
    test: pd.DataFrame,
    features: list[str],
    label: str,
    settings: Settings,
    out_dir: Path,
    name: str = "model",
    scores: np.ndarray | None = None,
    baselines: dict[str, np.ndarray] | None = None,
    threshold: float | None = None,
) -> Evaluation:
    """Evaluate `model` (or the given `scores`) on the test rows: metrics, ROC points and a
    confusion matrix for the KFP UI, slices and bias findings, false positive / negative
    analysis, five PNG plots, `evaluation.html` and `evaluation.json` in `out_dir`.

    `baselines` maps a name to scores on the same rows; they are drawn on the ROC, PR and
    lift plots and compared with the candidate. `threshold` overrides the operating point
    (default: the top `evaluation.top_fraction` of scores).
    """
    started = time.perf_counter()
    config = settings.evaluation
    missing = sorted({*features, label} - set(test.columns))
    if missing:
        raise ValueError(f"test frame lacks columns {missing}")
    if scores is None:
        if model is None:
            raise ValueError("pass a model or scores")
        scores = model.predict_proba(test[features])[:, 1]
    p = _checked_scores(scores, len(test), name)
    others = {k: _checked_scores(v, len(test), k) for k, v in (baselines or {}).items()}
    if name in others:
        raise ValueError(f"baseline name {name!r} is the candidate's name")
    if test[label].isna().any():
        raise ValueError(f"{label!r} has missing values: evaluate labelled rows only")
    y = test[label].to_numpy().astype(int)
    test = test.reset_index(drop=True)

    metrics = classification_metrics(y, p, config.top_fraction, config.calibration_bins)
    models = {name: metrics} | {
        k: classification_metrics(y, s, config.top_fraction, config.calibration_bins)
        for k, s in others.items()
    }
    predicted, cut = operating_point(p, config.top_fraction, threshold)
    rule = f"score ≥ {threshold:.4g}" if threshold is not None else f"top {config.top_fraction:.0%}"
    confusion = confusion_matrix(y, predicted)
    columns = list(dict.fromkeys([*config.slice_columns, *attribute_names(settings)]))
    slices = slice_table(y, p, predicted, slices_of(test, columns), metrics, config)
    errors = error_analysis(test, features, y, p, predicted, cut)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = {key: out_dir / file for key, file in PLOT_FILES.items()}
    images = _plots(y, {name: p, **others}, models, predicted, confusion, cut, rule, plots, config)
    evaluation = Evaluation(
        name=name,
        metrics=metrics,
        roc=roc_points(y, p),
        confusion=confusion,
        threshold=cut,
        slices=slices,
        bias_findings=bias_findings(slices, metrics, config.slice_margin, features),
        errors=errors,
        plots=plots,
        html=out_dir / HTML_FILE,
        baselines={k: v for k, v in models.items() if k != name},
    )
    _report(evaluation, models, images, config, rule)
    evaluation.write_json(out_dir / JSON_FILE)
    logger.info(
        "evaluated %s on %d rows in %.1fs: PR-AUC %.4f, %d bias findings",
        name,
        len(y),
        time.perf_counter() - started,
        metrics["pr_auc"],
        len(evaluation.bias_findings),
    )
    return evaluation


def _plots(
    y: np.ndarray,
    models: dict[str, np.ndarray],
    metrics: dict[str, dict[str, float]],
    predicted: np.ndarray,
    confusion: dict[str, Any],
    threshold: float,
    rule: str,
    paths: dict[str, Path],
    config: EvaluationSettings,
) -> dict[str, str]:
    """Draw and write the five plots; returns each as an embedded <img> tag."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    candidate = next(iter(models))
    positive = y.astype(bool)
    tpr_at = float((predicted & positive).sum() / positive.sum())
    fpr_at = float((predicted & ~positive).sum() / (~positive).sum())
    precision_at = float((predicted & positive).sum() / max(predicted.sum(), 1))
    roc, pr = {}, {}
    for label, scores in models.items():
        fpr, tpr, _ = roc_curve(y, scores)
        keep = thin(fpr, tpr, MAX_PLOT_POINTS)
        roc[label] = (fpr[keep], tpr[keep], f"AUC {metrics[label]['roc_auc']:.3f}")
        precision, recall, _ = precision_recall_curve(y, scores)
        keep = thin(recall, precision, MAX_PLOT_POINTS)
        pr[label] = (recall[keep], precision[keep], f"AP {metrics[label]['pr_auc']:.3f}")
    base_rate = metrics[candidate]["positive_rate"]
    figures = {
        "roc": _curve_figure(roc, (fpr_at, tpr_at), "roc", base_rate),
        "pr": _curve_figure(pr, (tpr_at, precision_at), "pr", base_rate),
        "calibration": _calibration_figure(
            y, models[candidate], config.calibration_bins, metrics[candidate]["calibration_error"]
        ),
        "lift": _lift_figure(y, models, config.top_fraction),
        "confusion_matrix": _confusion_figure(confusion, threshold, rule),
    }
    return {key: _save(fig, paths[key]) for key, fig in figures.items()}
