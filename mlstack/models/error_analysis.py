"""Who the false positives and false negatives are, what sets them apart, in sentences."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from mlstack.features.definitions import ENTITY, EVENT_TIMESTAMP
from mlstack.models.parts import Part, rows_at

ERROR_EXAMPLES = 10  # customers listed per error group
ERROR_TABLE_FEATURES = 8  # features listed per error group
SENTENCE_FEATURES = 3
CLEAR_DIFFERENCE = 0.2  # |standardized difference| from which a feature "sets a group apart"
ERROR_SAMPLE_ROWS = 20_000  # rows per group used for the percentile ranks
ERROR_STAT_ROWS = 250_000  # rows per group whose medians and means are given (a sample past it)
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
    test: Part,
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
    groups (of a random sample of `ERROR_STAT_ROWS` rows of a larger group) and the
    standardized difference of percentile ranks, ranked by the first comparison. Examples:
    the highest-scored false positives, the lowest-scored false negatives. Only the rows
    these need are read from `test`.
    """
    positive = y.astype(bool)
    groups = {
        "tp": predicted & positive,
        "fp": predicted & ~positive,
        "fn": ~predicted & positive,
        "tn": ~predicted & ~positive,
    }
    members = {g: np.flatnonzero(mask) for g, mask in groups.items()}
    ranked_rng = np.random.default_rng(RANDOM_STATE)
    described_rng = np.random.default_rng(RANDOM_STATE + 1)
    ranked = {g: _sample(rows, ERROR_SAMPLE_ROWS, ranked_rng) for g, rows in members.items()}
    described = {g: _sample(rows, ERROR_STAT_ROWS, described_rng) for g, rows in members.items()}
    examples = {
        error: _example_rows(scores, members[error], highest)
        for _, error, _, highest in ERROR_GROUPS
    }
    keys = [c for c in (ENTITY, EVENT_TIMESTAMP) if c in test.columns]
    needed = np.unique(np.concatenate([*ranked.values(), *described.values(), *examples.values()]))
    rows = rows_at(test, needed, [*keys, *features])
    numeric = [f for f in features if pd.api.types.is_numeric_dtype(rows[f])]
    frame = rows[numeric].astype(float)
    # percentile ranks (ties averaged, missing kept) over the groups' rank samples together
    ranks = frame.loc[np.concatenate(list(ranked.values()))].rank(pct=True)
    result: dict[str, Any] = {
        "threshold": threshold,
        "counts": {k: int(v.sum()) for k, v in groups.items()},
        "described": {k: len(v) for k, v in described.items()},
    }
    for key, error, references, _ in ERROR_GROUPS:
        table = _feature_contrast(frame, ranks, groups, described, error, references)
        top = list(table["feature"][:SENTENCE_FEATURES])
        result[key] = {
            "count": int(groups[error].sum()),
            "group": error,
            "compared_with": list(references),
            "features": table.head(ERROR_TABLE_FEATURES).to_dict("records"),
            "examples": _examples(rows, keys, top, scores, examples[error]).to_dict("records"),
        }
    result["sentences"] = _error_sentences(result, threshold)
    return result


def _sample(rows: np.ndarray, most: int, rng: np.random.Generator) -> np.ndarray:
    """`rows`, or `most` of them drawn at random (in order) when there are more."""
    if len(rows) <= most:
        return rows
    return np.sort(rng.choice(rows, most, replace=False))


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
    described: dict[str, np.ndarray],
    error: str,
    references: tuple[str, str],
) -> pd.DataFrame:
    """Per feature: median and mean of the error group and each reference group (their
    `described` rows) and the standardized difference to each; largest |difference to the
    first reference| first."""
    involved = (error, *references)
    table = pd.DataFrame({"feature": frame.columns}, index=frame.columns)
    for g in involved:
        table[f"median {g}"] = frame.loc[described[g]].median()
    for g in involved:
        table[f"mean {g}"] = frame.loc[described[g]].mean()
    for g in references:
        table[f"d vs {g}"] = _std_diff(ranks, groups[error], groups[g])
    order = table[f"d vs {references[0]}"].abs().sort_values(ascending=False, kind="stable")
    return table.loc[order.index].reset_index(drop=True)


def _example_rows(scores: np.ndarray, members: np.ndarray, highest: bool) -> np.ndarray:
    """Positions of the group's `ERROR_EXAMPLES` rows with the highest (or lowest) scores."""
    order = np.argsort(-scores[members] if highest else scores[members], kind="stable")
    return members[order[:ERROR_EXAMPLES]]


def _examples(
    rows: pd.DataFrame,
    keys: list[str],
    features: list[str],
    scores: np.ndarray,
    chosen: np.ndarray,
) -> pd.DataFrame:
    """The chosen rows' keys, score and `features`."""
    examples = rows.loc[chosen, [*keys, *features]].reset_index(drop=True)
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
    sampled = [g for g, n in analysis["described"].items() if n < c[g]]
    if sampled:
        names = join_words([f"{c[g]:,} {GROUP_NAMES[g]}" for g in sampled])
        sentences.append(
            f"Medians and means below are of a random sample of {ERROR_STAT_ROWS:,} rows each "
            f"of the {names}."
        )
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
    text = f"{subject} stand apart from the {GROUP_NAMES[first]} by " + join_words(parts)
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


def join_words(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
