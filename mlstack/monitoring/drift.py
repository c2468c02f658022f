"""Drift statistics per column: the fast path the policy reads, and Evidently's HTML report.

Each column is tested with the Evidently stat test configured for its kind (by default the
normed Wasserstein distance for numerical columns and the Jensen-Shannon distance for
categorical ones, Evidently's own choices for large samples). The fast path computes the
same statistics with NumPy on sorted columns and category counts, so a daily check over
100k rows takes about as long as plain scipy tests; `evidently_values` runs Evidently's
preset on the same data (for the report, and for the test that the two agree). Missing and
infinite values are dropped before a test, as Evidently does; a column that is empty or
constant in the window while it varied in the reference is *dead* and counts as drifted.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from scipy.spatial import distance

from mlstack.config import MonitoringSettings
from mlstack.registry.reference import PREDICTION

log = logging.getLogger(__name__)

Kind = Literal["numerical", "categorical"]
FAST_METHODS = ("wasserstein", "jensenshannon")
# Evidently's floor on the reference std in the normed Wasserstein distance
_MIN_STD = 0.001


@dataclass
class ColumnDrift:
    """One column's drift test: statistic, threshold and verdict, with the reason."""

    column: str
    kind: Kind
    method: str
    statistic: float
    threshold: float
    drifted: bool
    reason: str
    reference_missing: float
    current_missing: float

    def to_dict(self) -> dict:
        return asdict(self)


def _values(series: pd.Series, kind: Kind) -> np.ndarray:
    """The testable values of a column: missing and infinite values dropped."""
    if kind == "categorical":
        return series.dropna().to_numpy()
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)
    return values[np.isfinite(values)]


def wasserstein_normed(
    reference: np.ndarray, current: np.ndarray, presorted: bool = False
) -> float:
    """First Wasserstein distance divided by the reference std (ddof 0, at least 0.001);
    both inputs finite and 1-D (and sorted when `presorted`)."""
    ref = reference if presorted else np.sort(reference)
    cur = current if presorted else np.sort(current)
    both = np.concatenate([ref, cur])
    both.sort(kind="mergesort")
    deltas = np.diff(both)
    ref_cdf = np.searchsorted(ref, both[:-1], side="right") / len(ref)
    cur_cdf = np.searchsorted(cur, both[:-1], side="right") / len(cur)
    norm = max(float(np.std(ref)), _MIN_STD)
    return float(np.sum(np.abs(ref_cdf - cur_cdf) * deltas) / norm)


def jensenshannon_categories(reference: np.ndarray, current: np.ndarray) -> float:
    """Jensen-Shannon distance (natural log) of the category frequencies; a category seen
    on one side only has frequency 0 on the other."""
    ref_keys, ref_counts = np.unique(reference.astype(str), return_counts=True)
    cur_keys, cur_counts = np.unique(current.astype(str), return_counts=True)
    keys = np.union1d(ref_keys, cur_keys)
    p = np.zeros(len(keys))
    q = np.zeros(len(keys))
    p[np.searchsorted(keys, ref_keys)] = ref_counts / len(reference)
    q[np.searchsorted(keys, cur_keys)] = cur_counts / len(current)
    return float(distance.jensenshannon(p, q))


def _method(kind: Kind, cfg: MonitoringSettings) -> tuple[str, float]:
    if kind == "categorical":
        return cfg.categorical_method, cfg.categorical_threshold
    return cfg.numerical_method, cfg.numerical_threshold


def column_drift(
    column: str,
    reference: pd.Series,
    current: pd.Series,
    kind: Kind,
    method: str,
    threshold: float,
) -> ColumnDrift:
    """Test one column of the window against the reference (see the module doc)."""
    if method not in FAST_METHODS:
        raise ValueError(f"drift method {method!r} has no fast path; use one of {FAST_METHODS}")
    ref = _values(reference, kind)
    cur = _values(current, kind)
    ref_missing = 1 - len(ref) / max(len(reference), 1)
    cur_missing = 1 - len(cur) / max(len(current), 1)

    def result(statistic: float, drifted: bool, reason: str) -> ColumnDrift:
        return ColumnDrift(
            column, kind, method, statistic, threshold, drifted, reason, ref_missing, cur_missing
        )

    if len(ref) == 0:
        return result(float("nan"), False, "no reference values: not tested")
    if len(cur) == 0:
        return result(float("nan"), True, "dead: no values in the window")
    if method == "wasserstein" and kind != "numerical":
        raise ValueError(f"column {column}: wasserstein needs a numerical column")
    if kind == "numerical":
        ref, cur = np.sort(ref), np.sort(cur)
        ref_constant, cur_constant = ref[0] == ref[-1], cur[0] == cur[-1]
    else:
        ref_constant, cur_constant = bool((ref == ref[0]).all()), bool((cur == cur[0]).all())
    if cur_constant and not ref_constant:
        return result(float("nan"), True, f"dead: constant {cur[0]!r} in the window")
    if method == "wasserstein":
        stat = wasserstein_normed(ref, cur, presorted=True)
    else:
        stat = jensenshannon_categories(ref, cur)
    drifted = bool(stat >= threshold)
    verdict = ">=" if drifted else "<"
    return result(stat, drifted, f"{method} {stat:.3f} {verdict} {threshold}")


def drift_table(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    kinds: dict[str, Kind],
    cfg: MonitoringSettings,
) -> list[ColumnDrift]:
    """Drift of every column in `kinds`; a column missing from the window is dead."""
    missing = [c for c in kinds if c not in reference.columns]
    if missing:
        raise ValueError(f"the reference lacks columns: {', '.join(missing)}")
    out = []
    for column, kind in kinds.items():
        method, threshold = _method(kind, cfg)
        if column not in current.columns:
            out.append(
                ColumnDrift(
                    column,
                    kind,
                    method,
                    float("nan"),
                    threshold,
                    True,
                    "dead: the column is missing from the window",
                    0.0,
                    1.0,
                )
            )
            continue
        out.append(
            column_drift(column, reference[column], current[column], kind, method, threshold)
        )
    return out


def prediction_drift(
    reference: pd.Series, current: pd.Series, cfg: MonitoringSettings
) -> ColumnDrift:
    """Drift of the model's scores (normed Wasserstein, `prediction_threshold`)."""
    return column_drift(
        PREDICTION, reference, current, "numerical", "wasserstein", cfg.prediction_threshold
    )


def evidently_values(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    kinds: dict[str, Kind],
    cfg: MonitoringSettings,
    html_path: Path | None = None,
    json_path: Path | None = None,
) -> dict[str, float]:
    """Run Evidently's DataDriftPreset with the configured tests on the columns that have
    values in both frames; returns each column's statistic, and writes the HTML report
    and Evidently's JSON when paths are given."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    usable = [
        c
        for c in kinds
        if c in current.columns
        and len(_values(current[c], kinds[c]))
        and len(_values(reference[c], kinds[c]))
    ]
    numerical = [c for c in usable if kinds[c] == "numerical"]
    categorical = [c for c in usable if kinds[c] == "categorical"]
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    per_column = {c: cfg.numerical_method for c in numerical} | {
        c: cfg.categorical_method for c in categorical
    }
    thresholds = {c: cfg.numerical_threshold for c in numerical} | {
        c: cfg.categorical_threshold for c in categorical
    }
    if PREDICTION in per_column:
        thresholds[PREDICTION] = cfg.prediction_threshold
    report = Report(
        [
            DataDriftPreset(
                columns=usable,
                per_column_method=per_column,
                per_column_threshold=thresholds,
                drift_share=0.5,
            )
        ]
    )

    def frame(data: pd.DataFrame) -> pd.DataFrame:
        out = data[usable].copy()
        for c in numerical:
            out[c] = pd.to_numeric(out[c], errors="coerce").replace([np.inf, -np.inf], np.nan)
        for c in categorical:
            out[c] = out[c].astype("string")
        return out

    snapshot = report.run(
        Dataset.from_pandas(frame(current), data_definition=definition),
        Dataset.from_pandas(frame(reference), data_definition=definition),
    )
    if html_path is not None:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_html(str(html_path))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_json(str(json_path))
    values: dict[str, float] = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith("ValueDrift"):
            values[config["column"]] = float(metric["value"])
    return values
