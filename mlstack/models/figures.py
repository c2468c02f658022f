"""The five figures of an evaluation: ROC and precision-recall curves, reliability over
the score distribution, cumulative gains with lift by decile, and the confusion matrix."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from mlstack.config import EvaluationSettings
from mlstack.models.curves import (
    MAX_PLOT_POINTS,
    Curve,
    gains,
    operating_rates,
    plot_curves,
    thin,
)
from mlstack.models.metrics import calibration_bins
from mlstack.reports.figures import new_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

EVEN_BINS = 1.1  # bins whose counts differ less than this factor are labelled once
SKEWED_RANGE = 10  # reliability drawn log-log when bin means span more than this factor


def evaluation_figures(
    y: np.ndarray,
    models: dict[str, np.ndarray],
    metrics: dict[str, dict[str, float]],
    predicted: np.ndarray,
    confusion: dict[str, Any],
    threshold: float,
    rule: str,
    config: EvaluationSettings,
) -> dict[str, Figure]:
    """The five figures by key: "roc", "pr", "calibration", "lift", "confusion_matrix".
    `models` maps each name to its scores, the candidate first; `predicted` marks the rows
    selected at the operating point (`rule`, `threshold`)."""
    candidate = next(iter(models))
    at = operating_rates(y, predicted)
    roc, pr = plot_curves(y, models, metrics)
    base_rate = metrics[candidate]["positive_rate"]
    return {
        "roc": curve_figure(roc, (at["fpr"], at["tpr"]), "roc", base_rate),
        "pr": curve_figure(pr, (at["tpr"], at["precision"]), "pr", base_rate),
        "calibration": calibration_figure(
            y, models[candidate], config.calibration_bins, metrics[candidate]["calibration_error"]
        ),
        "lift": lift_figure(y, models, config.top_fraction),
        "confusion_matrix": confusion_figure(confusion, threshold, rule),
    }


def curve_figure(
    curves: dict[str, Curve],
    point: tuple[float, float],
    kind: str,
    base_rate: float,
) -> Figure:
    """ROC ("roc") or precision-recall ("pr") curves, the candidate first, its operating
    point marked."""
    fig, axes = new_figure(size=(5.5, 5))
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


def calibration_figure(y: np.ndarray, scores: np.ndarray, bins: int, ece: float) -> Figure:
    """Reliability diagram on the metric's quantile bins with their row counts (in the title
    when the bins are even, else on each point), over a histogram of the scores."""
    fig, axes = new_figure(2, 1, size=(5.5, 6.5))
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


def lift_figure(y: np.ndarray, models: dict[str, np.ndarray], top_fraction: float) -> Figure:
    """Cumulative gains and lift by score decile for each model."""
    fig, axes = new_figure(1, 2, size=(11, 4.5))
    gains_ax, lift_ax = axes[0]
    width = 0.8 / len(models)
    for i, (label, scores) in enumerate(models.items()):
        targeted, captured, deciles = gains(y, scores)
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


def confusion_figure(confusion: dict[str, Any], threshold: float, rule: str) -> Figure:
    """The 2x2 matrix with counts and the share of each true class."""
    matrix = np.array(confusion["matrix"])
    shares = matrix / matrix.sum(axis=1, keepdims=True).clip(min=1)
    fig, axes = new_figure(size=(5.2, 4.4))
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
