"""Who the false positives and false negatives are, what sets them apart, in sentences."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from mlstack.features.definitions import ENTITY, EVENT_TIMESTAMP

ERROR_EXAMPLES = 10  # customers listed per error group
ERROR_TABLE_FEATURES = 8  # features listed per error group
SENTENCE_FEATURES = 3
CLEAR_DIFFERENCE = 0.2  # |standardized difference| from which a feature "sets a group apart"
ERROR_SAMPLE_ROWS = 20_000  # rows per group used for the percentile ranks
RANDOM_STATE = 0
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
