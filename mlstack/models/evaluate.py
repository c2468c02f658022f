"""Evaluation of a model on the test period: the metrics, curves for the KFP UI, metrics by
slice with bias findings, an analysis of false positives and negatives, plots and one HTML
report, each made by its own module; this one checks the input and runs them in order.

Every score comes from `mlstack.models.metrics`. The operating point is described in
`mlstack.models.curves`, the bias rule in `mlstack.models.slices`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from mlstack.config import Settings
from mlstack.features.definitions import attribute_names
from mlstack.models.curves import confusion_matrix, operating_point, roc_points
from mlstack.models.error_analysis import error_analysis
from mlstack.models.evaluation import Evaluation
from mlstack.models.evaluation_page import write_evaluation_page
from mlstack.models.figures import evaluation_figures
from mlstack.models.metrics import classification_metrics
from mlstack.models.parts import Part, columns_of, labels_of, scores_of
from mlstack.models.slices import (
    SPEND_COLUMNS,
    TENURE_COLUMN,
    bias_findings,
    slice_table,
    slices_of,
)
from mlstack.reports.figures import save_and_embed

logger = logging.getLogger(__name__)

PNG_DPI = 100
PLOT_FILES = {
    "roc": "roc.png",
    "pr": "pr.png",
    "calibration": "calibration.png",
    "lift": "lift.png",
    "confusion_matrix": "confusion_matrix.png",
}
HTML_FILE = "evaluation.html"
JSON_FILE = "evaluation.json"


class ProbabilisticClassifier(Protocol):
    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray: ...


def _checked_scores(values: np.ndarray, rows: int, what: str) -> np.ndarray:
    scores = np.asarray(values, dtype=float).reshape(-1)
    if len(scores) != rows:
        raise ValueError(f"{what}: {len(scores)} scores for {rows} test rows")
    if not np.isfinite(scores).all():
        raise ValueError(f"{what}: scores contain NaN or infinite values")
    return scores


def evaluate_model(
    model: ProbabilisticClassifier | None,
    test: Part,
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

    `test` is a frame or a part streamed from its file: of its columns, only the label and
    the slices' are held whole; the error analysis reads the rows it describes.
    `baselines` maps a name to scores on the same rows; they are drawn on the ROC, PR and
    lift plots and compared with the candidate. `threshold` overrides the operating point
    (default: the top `evaluation.top_fraction` of scores).
    """
    started = time.perf_counter()
    config = settings.evaluation
    missing = sorted({*features, label} - set(test.columns))
    if missing:
        raise ValueError(f"test frame lacks columns {missing}")
    if isinstance(test, pd.DataFrame):
        test = test.reset_index(drop=True)
    if scores is None:
        if model is None:
            raise ValueError("pass a model or scores")
        scores = scores_of(model, test[features] if isinstance(test, pd.DataFrame) else test)
    p = _checked_scores(scores, len(test), name)
    others = {k: _checked_scores(v, len(test), k) for k, v in (baselines or {}).items()}
    if name in others:
        raise ValueError(f"baseline name {name!r} is the candidate's name")
    labels = labels_of(test, label)
    if pd.isna(labels).any():
        raise ValueError(f"{label!r} has missing values: evaluate labelled rows only")
    y = labels.astype(int)

    metrics = classification_metrics(y, p, config.top_fraction, config.calibration_bins)
    models = {name: metrics} | {
        k: classification_metrics(y, s, config.top_fraction, config.calibration_bins)
        for k, s in others.items()
    }
    predicted, cut = operating_point(p, config.top_fraction, threshold)
    rule = f"score ≥ {threshold:.4g}" if threshold is not None else f"top {config.top_fraction:.0%}"
    confusion = confusion_matrix(y, predicted)
    columns = list(dict.fromkeys([*config.slice_columns, *attribute_names(settings.source)]))
    by = [c for c in dict.fromkeys([TENURE_COLUMN, *SPEND_COLUMNS, *columns]) if c in test.columns]
    slices = slice_table(y, p, predicted, slices_of(columns_of(test, by), columns), metrics, config)
    errors = error_analysis(test, features, y, p, predicted, cut)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = {key: out_dir / file for key, file in PLOT_FILES.items()}
    figures = evaluation_figures(
        y, {name: p, **others}, models, predicted, confusion, cut, rule, config
    )
    images = {key: save_and_embed(fig, plots[key], PNG_DPI) for key, fig in figures.items()}
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
    write_evaluation_page(evaluation, models, images, config, rule)
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
