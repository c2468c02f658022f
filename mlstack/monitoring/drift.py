"""Drift statistics per column: the fast path the policy reads, and Evidently's HTML report.

Each column is tested with the Evidently stat test configured for its kind (by default the
normed Wasserstein distance for numerical columns and the Jensen-Shannon distance for
categorical ones, Evidently's own choices for large samples). The fast path computes the
same statistics with NumPy from each column's value -> count table (the exact ECDF, or the
category counts: `mlstack.monitoring.statistics`), which shards compute from their own rows
and merge exactly, so a daily check over 100k rows takes about as long as plain scipy tests
and its numbers do not depend on the shard count; `evidently_values` runs Evidently's preset
on rows (for the report, and for the test that the two agree). Missing and infinite values
are dropped before a test, as Evidently does; a column that is empty or constant in the
window while it varied in the reference is *dead* and counts as drifted.
"""

from __future__ import annotations

import html
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial import distance

from mlstack.config import MonitoringSettings
from mlstack.monitoring.statistics import (
    ColumnStats,
    Kind,
    column_stats,
    union_points,
    window_stats,
)
from mlstack.registry.reference import PREDICTION

log = logging.getLogger(__name__)

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


def wasserstein_of(reference: ColumnStats, current: ColumnStats) -> float:
    """First Wasserstein distance of two value -> count tables divided by the reference
    std (ddof 0, at least 0.001): the area between the two ECDFs, over the distinct values
    of both."""
    points = union_points(reference.values, current.values)
    gaps = np.diff(points)
    between = np.abs(reference.cdf_at(points[:-1]) - current.cdf_at(points[:-1]))
    norm = max(reference.std(), _MIN_STD)
    return float(np.sum(between * gaps) / norm)


def jensenshannon_of(reference: ColumnStats, current: ColumnStats) -> float:
    """Jensen-Shannon distance (natural log) of two category -> count tables; a category
    seen on one side only has frequency 0 on the other."""
    keys = union_points(reference.values, current.values)
    p = np.zeros(len(keys))
    q = np.zeros(len(keys))
    p[np.searchsorted(keys, reference.values)] = reference.counts / reference.n
    q[np.searchsorted(keys, current.values)] = current.counts / current.n
    return float(distance.jensenshannon(p, q))


def wasserstein_normed(reference: np.ndarray, current: np.ndarray) -> float:
    """`wasserstein_of` two arrays of finite values."""
    return wasserstein_of(
        column_stats(pd.Series(reference), "numerical"),
        column_stats(pd.Series(current), "numerical"),
    )


def jensenshannon_categories(reference: np.ndarray, current: np.ndarray) -> float:
    """`jensenshannon_of` two arrays of categories."""
    return jensenshannon_of(
        column_stats(pd.Series(reference), "categorical"),
        column_stats(pd.Series(current), "categorical"),
    )


def _method(kind: Kind, cfg: MonitoringSettings) -> tuple[str, float]:
    if kind == "categorical":
        return cfg.categorical_method, cfg.categorical_threshold
    return cfg.numerical_method, cfg.numerical_threshold


def drift_of(
    column: str, reference: ColumnStats, current: ColumnStats, method: str, threshold: float
) -> ColumnDrift:
    """Test one column of the window against the reference, from their statistics (see
    the module doc)."""
    if method not in FAST_METHODS:
        raise ValueError(f"drift method {method!r} has no fast path; use one of {FAST_METHODS}")
    kind = reference.kind
    if current.kind != kind:
        raise ValueError(f"column {column}: {current.kind} in the window, {kind} in the reference")

    def result(statistic: float, drifted: bool, reason: str) -> ColumnDrift:
        return ColumnDrift(
            column,
            kind,
            method,
            statistic,
            threshold,
            drifted,
            reason,
            reference.missing_share,
            current.missing_share,
        )

    if reference.n == 0:
        return result(float("nan"), False, "no reference values: not tested")
    if current.n == 0:
        return result(float("nan"), True, "dead: no values in the window")
    if method == "wasserstein" and kind != "numerical":
        raise ValueError(f"column {column}: wasserstein needs a numerical column")
    if current.constant and not reference.constant:
        return result(float("nan"), True, f"dead: constant {current.values[0]!r} in the window")
    if method == "wasserstein":
        stat = wasserstein_of(reference, current)
    else:
        stat = jensenshannon_of(reference, current)
    drifted = bool(stat >= threshold)
    verdict = ">=" if drifted else "<"
    return result(stat, drifted, f"{method} {stat:.3f} {verdict} {threshold}")


def column_drift(
    column: str,
    reference: pd.Series,
    current: pd.Series,
    kind: Kind,
    method: str,
    threshold: float,
) -> ColumnDrift:
    """`drift_of` two columns' rows."""
    return drift_of(
        column, column_stats(reference, kind), column_stats(current, kind), method, threshold
    )


def drift_table_of(
    reference: dict[str, ColumnStats],
    current: dict[str, ColumnStats],
    kinds: dict[str, Kind],
    cfg: MonitoringSettings,
) -> list[ColumnDrift]:
    """Drift of every column in `kinds`, from the statistics of the reference and of the
    window; a column missing from the window is dead."""
    missing = [c for c in kinds if c not in reference]
    if missing:
        raise ValueError(f"the reference lacks columns: {', '.join(missing)}")
    out = []
    for column, kind in kinds.items():
        method, threshold = _method(kind, cfg)
        if column not in current:
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
        out.append(drift_of(column, reference[column], current[column], method, threshold))
    return out


def drift_table(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    kinds: dict[str, Kind],
    cfg: MonitoringSettings,
) -> list[ColumnDrift]:
    """`drift_table_of` two frames' rows."""
    missing = [c for c in kinds if c not in reference.columns]
    if missing:
        raise ValueError(f"the reference lacks columns: {', '.join(missing)}")
    ref = window_stats(reference, kinds, "reference", 0).columns
    cur = window_stats(current, kinds, "window", 0).columns
    return drift_table_of(ref, cur, kinds, cfg)


def prediction_drift(
    reference: ColumnStats, current: ColumnStats, cfg: MonitoringSettings
) -> ColumnDrift:
    """Drift of the model's scores (normed Wasserstein, `prediction_threshold`)."""
    return drift_of(PREDICTION, reference, current, "wasserstein", cfg.prediction_threshold)


def evidently_values(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    kinds: dict[str, Kind],
    cfg: MonitoringSettings,
    html_path: Path | None = None,
    json_path: Path | None = None,
    note: str | None = None,
) -> dict[str, float]:
    """Run Evidently's DataDriftPreset with the configured tests on the columns that have
    values in both frames; returns each column's statistic, and writes the HTML report
    (with `note` at the top of the page) and Evidently's JSON when paths are given."""
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
        if note:
            _add_note(html_path, note)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_json(str(json_path))
    values: dict[str, float] = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith("ValueDrift"):
            values[config["column"]] = float(metric["value"])
    return values


def _add_note(html_path: Path, note: str) -> None:
    """Put `note` at the top of the report's page (Evidently has no place for free text)."""
    page = html_path.read_text()
    banner = (
        f'<p style="font-family:sans-serif;padding:8px;background:#fff3cd">{html.escape(note)}</p>'
    )
    body = re.search(r"<body[^>]*>", page)
    at = body.end() if body else 0
    html_path.write_text(page[:at] + banner + page[at:])
