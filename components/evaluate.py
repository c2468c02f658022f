"""Evaluate: the challenger on the test period against the baselines and the champion."""

from kfp import dsl
from kfp.dsl import HTML, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def evaluate(
    settings_json: str,
    dataset: Input[Dataset],
    challenger: Input[Model],
    baselines: Input[Model],
    run_id: str,
    metrics: Output[Metrics],
    curves: Output[ClassificationMetrics],
    report: Output[HTML],
) -> str:
    """In: the training set, the challenger and the baselines. Out: `metrics` (test ROC-AUC,
    PR-AUC, Brier, calibration, lift), `curves` (ROC curve and confusion matrix for the KFP
    UI), `report` (plots, slices, bias findings, false positives/negatives).

    Returns the gate decision as JSON: promote or not, and why.
    """
    from pathlib import Path

    from mlstack.config import Settings
    from mlstack.steps.gate import evaluate_step

    result = evaluate_step(
        Settings.from_json(settings_json),
        Path(dataset.path),
        Path(challenger.path),
        Path(baselines.path),
        Path(report.path),
        run_id,
    )
    for name, value in result.metrics.items():
        if value == value:  # KFP metrics reject NaN
            metrics.log_metric(name, value)
    roc, confusion = result.roc, result.confusion
    curves.log_roc_curve(roc.fpr, roc.tpr, roc.thresholds)
    curves.log_confusion_matrix(confusion.categories, confusion.matrix)
    return result.gate.model_dump_json()
