"""The evaluation's HTML page: metrics, the comparison with the baselines, the figures, the
confusion matrix, slices with their bias findings, and the false positive / negative
analysis."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pandas as pd

from mlstack.config import EvaluationSettings
from mlstack.models.curves import CATEGORIES
from mlstack.models.error_analysis import (
    ERROR_GROUPS,
    GROUP_MEANING,
    GROUP_NAMES,
    join_words,
)
from mlstack.models.evaluation import Evaluation
from mlstack.reports.page import write_page
from mlstack.reports.tables import bullets, frame_table, highlighted_table, paragraphs

SUMMARY_METRICS = ["roc_auc", "pr_auc", "brier", "calibration_error", "lift_at_top"]


def write_evaluation_page(
    evaluation: Evaluation,
    models: dict[str, dict[str, float]],
    images: dict[str, str],
    config: EvaluationSettings,
    rule: str,
) -> Path:
    """Write the page to `evaluation.html`. `models` holds the metrics of the candidate and
    each baseline; `images` the embedded <img> tag of each figure; `rule` names the
    operating point."""
    m = evaluation.metrics
    summary = (
        f"<p>{int(m['rows']):,} test rows, base rate {m['positive_rate']:.2%}. Operating point: "
        f"{html.escape(rule)}, threshold {evaluation.threshold:.4g}. "
        f"{len(evaluation.bias_findings)} slice(s) flagged.</p>"
    )
    sections = [("Summary", summary), ("Metrics", frame_table(_metrics_frame(models)))]
    if len(models) > 1:
        table, sentences = _comparison(evaluation.name, models, config.top_fraction)
        sections.append(("Comparison with baselines", paragraphs(sentences) + frame_table(table)))
    matrix = pd.DataFrame(evaluation.confusion["matrix"], CATEGORIES, CATEGORIES)
    sections += [
        ("ROC and precision-recall", images["roc"] + images["pr"]),
        ("Gains and lift", images["lift"]),
        ("Calibration", images["calibration"]),
        ("Confusion matrix", images["confusion_matrix"] + frame_table(matrix.rename_axis("true"))),
        ("Slices", _slices_section(evaluation, config)),
        ("False positives and false negatives", _errors_section(evaluation.errors)),
    ]
    return write_page(evaluation.html, f"Evaluation — {evaluation.name}", sections)


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
    slices = evaluation.slices
    return (
        paragraphs([rule])
        + bullets(findings)
        + highlighted_table(slices, slices["bias_finding"].to_numpy(dtype=bool), "slices")
    )


def _errors_section(errors: dict[str, Any]) -> str:
    parts = [paragraphs(errors["sentences"])]
    for key, error, references, highest in ERROR_GROUPS:
        group = errors[key]
        against = " and ".join(GROUP_NAMES[r] for r in references)
        sampled = [g for g in (error, *references) if errors["described"][g] < errors["counts"][g]]
        described = ""
        if sampled:
            names = join_words([GROUP_NAMES[g] for g in sampled])
            size = errors["described"][sampled[0]]  # a sampled group's rows: the sample's size
            described = f" (medians and means of {size:,}-row samples of the {names})"
        parts.append(
            f"<h3>{GROUP_NAMES[error].capitalize()} ({GROUP_MEANING[error]}): "
            f"{group['count']:,} rows, compared with {against}{described}</h3>"
        )
        features = pd.DataFrame(group["features"])
        parts.append(frame_table(features, index=False) if len(features) else "<p>none</p>")
        examples = pd.DataFrame(group["examples"])
        order = "highest" if highest else "lowest"
        parts.append(f"<p>The {len(examples)} with the {order} scores:</p>")
        parts.append(frame_table(examples, index=False) if len(examples) else "")
    return "".join(parts)
