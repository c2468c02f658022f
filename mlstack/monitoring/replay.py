"""Replay the data's timeline week by week as if it were live, under three policies.

Features are computed once for the whole timeline: they are point-in-time, so the snapshot
of week t uses only transactions at or before t, exactly what a weekly feature job would
have written then. Each week t, for every policy:

- the policy's live model scores the customers of snapshot t (what the server would serve);
- labels of the snapshots whose horizon has passed by t mature, and the realised
  performance of the predictions made then is known;
- the drift check compares snapshot t and its scores with the live model's reference and
  the policy decides (drift policy), or the calendar decides (fixed schedule), or nothing
  happens (never);
- a retrain fits the configured model kind (`tuning.model`, default parameters) on every
  labelled row known at t, the training set's stride applied, and serves from week t + 1.

The full training pipeline (tuning, baselines, evaluation, registry) is not run per
retrain: a replay compares policies, so each retrain is one fast fit of the same model.
Performance per week is the PR-AUC of the live model on that week's snapshot, once its
labels have matured; compute is the wall time of the fits a policy asked for.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from mlstack.config import Settings
from mlstack.config.data import FeatureSettings
from mlstack.config.operations import MonitoringSettings
from mlstack.data.clean import read_clean
from mlstack.features.build import build_features, build_labels
from mlstack.features.definitions import ENTITY, EVENT_TIMESTAMP, feature_names, label_name
from mlstack.models.candidates import make_model
from mlstack.monitoring.check import assess, realised_performance
from mlstack.monitoring.drift import PREDICTION
from mlstack.registry.reference import build_reference

log = logging.getLogger(__name__)

POLICIES = ("never", "schedule", "drift")


@dataclass
class _Fit:
    model: Any
    reference: pd.DataFrame
    trained_at: pd.Timestamp
    seconds: float
    rows: int


@dataclass
class _PolicyState:
    fit: _Fit
    retrains: list[pd.Timestamp] = field(default_factory=list)
    compute_seconds: float = 0.0
    pending: bool = False


@dataclass
class ReplayResult:
    """Weekly rows (one per week and policy), the summary per policy and the output files."""

    weekly: pd.DataFrame
    summary: pd.DataFrame
    files: dict[str, Path]
    seconds: float

    def markdown(self) -> str:
        lines = [
            "| policy | retrains | mean weekly PR-AUC | pooled PR-AUC | fit compute (s) |",
            "|---|---|---|---|---|",
        ]
        for name, row in self.summary.iterrows():
            lines.append(
                f"| {name} | {int(row['retrains'])} | {row['mean_pr_auc']:.4f} | "
                f"{row['pooled_pr_auc']:.4f} | {row['compute_seconds']:.1f} |"
            )
        return "\n".join(lines)


def load_timeline(settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The transaction log (ingested as the pipeline does) and the labelled feature table
    of every snapshot (labels only where the horizon fits inside the log)."""
    transactions = read_clean(settings)
    features = build_features(transactions, settings)
    labels = build_labels(transactions, features[[ENTITY, EVENT_TIMESTAMP]], settings)
    table = features.merge(labels, on=[ENTITY, EVENT_TIMESTAMP], how="left")
    return transactions, table


def _matured(dates: list, at: pd.Timestamp, features: FeatureSettings) -> list:
    horizon = pd.Timedelta(days=features.horizon_days)
    known = [d for d in dates if d + horizon <= at]
    if not known:
        raise ValueError(f"no labelled snapshot has matured by {at:%Y-%m-%d}: start later")
    return known


def known_rows(
    table: pd.DataFrame, by_date: dict, dates: list, at: pd.Timestamp, settings: Settings
) -> pd.DataFrame:
    """Every row of the snapshots the reference may come from at `at` (labels matured)."""
    count = settings.monitoring.reference_snapshots
    known = _matured(dates, at, settings.features)
    known = known if count is None else known[-count:]
    return table.iloc[np.concatenate([by_date[d] for d in known])]


def training_rows(
    table: pd.DataFrame, by_date: dict, dates: list, at: pd.Timestamp, settings: Settings
) -> pd.DataFrame:
    """The rows a retrain at `at` may use: snapshots whose label horizon has passed by `at`
    (every `split.train_snapshot_stride`-th, counted back from the newest), at most
    `monitoring.replay_max_train_rows` of them (a seeded sample)."""
    known = _matured(dates, at, settings.features)[::-1][:: settings.split.train_snapshot_stride][
        ::-1
    ]
    rows = table.iloc[np.concatenate([by_date[d] for d in known])]
    cap = settings.monitoring.replay_max_train_rows
    return rows.sample(n=cap, random_state=0) if len(rows) > cap else rows


def _fit(
    table: pd.DataFrame, by_date: dict, dates: list, at: pd.Timestamp, settings: Settings
) -> _Fit:
    """Fit the configured model kind on the rows known at `at`; keep its reference."""
    rows = training_rows(table, by_date, dates, at, settings)
    features, label = feature_names(settings), label_name(settings.features)
    started = time.perf_counter()
    model = make_model(settings.tuning.model, {}, features)
    model.fit(rows[features], rows[label].to_numpy().astype(int))
    seconds = time.perf_counter() - started
    # the reference comes from the whole newest snapshots, not from the training sample
    reference = build_reference(model, known_rows(table, by_date, dates, at, settings), settings)
    reference = reference.frame
    return _Fit(model, reference, at, seconds, len(rows))


def _pr_auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y, p)) if len(np.unique(y)) == 2 else float("nan")


def run_replay(
    settings: Settings,
    out_dir: Path,
    weeks: int | None = None,
    progress: bool = True,
) -> ReplayResult:
    """Replay the timeline from `monitoring.replay_start` under the three policies; write
    the weekly table (CSV), the summary (Markdown, JSON), the decisions and the plot."""
    from tqdm.auto import tqdm

    started = time.perf_counter()
    cfg = settings.monitoring
    features, label = feature_names(settings), label_name(settings.features)
    horizon = pd.Timedelta(days=settings.features.horizon_days)
    _, table = load_timeline(settings)
    when = pd.to_datetime(table[EVENT_TIMESTAMP], utc=True)
    table = table.assign(**{EVENT_TIMESTAMP: when})
    by_date = {d: idx for d, idx in table.groupby(EVENT_TIMESTAMP).indices.items()}
    dates = sorted(by_date)
    start = pd.Timestamp(cfg.replay_start, tz="UTC")
    timeline = [d for d in dates if d >= start and table.loc[by_date[d], label].notna().all()]
    limit = weeks if weeks is not None else cfg.replay_weeks
    if limit is not None:
        timeline = timeline[:limit]
    if not timeline:
        raise ValueError(f"no labelled week from {start:%Y-%m-%d} on: move replay_start earlier")

    cache: dict[pd.Timestamp, _Fit] = {}
    # one thread per fit: on a shared machine OpenMP threads mostly wait on each other
    limits = threadpool_limits(1)

    def fit_at(at: pd.Timestamp) -> _Fit:
        if at not in cache:
            cache[at] = _fit(table, by_date, dates, at, settings)
        return cache[at]

    first = fit_at(timeline[0])
    states = {name: _PolicyState(first) for name in POLICIES}
    rows: list[dict[str, Any]] = []
    decisions: list[dict[str, Any]] = []
    scored: dict[tuple[str, pd.Timestamp], np.ndarray] = {}
    bar = tqdm(timeline, desc="replay", unit="week", disable=not progress)
    for i, week in enumerate(bar):
        bar.set_postfix_str(f"{week:%Y-%m-%d}")
        snapshot = table.iloc[by_date[week]]
        y = snapshot[label].to_numpy().astype(int)
        for name, state in states.items():
            if state.pending:  # a retrain asked for last week serves from this week
                state.pending = False
            p = state.fit.model.predict_proba(snapshot[features])[:, 1]
            scored[(name, week)] = p
            row: dict[str, Any] = {
                "week": week,
                "policy": name,
                "model_trained_at": state.fit.trained_at,
                "pr_auc": _pr_auc(y, p),
                "rows": len(y),
                "positive_rate": float(y.mean()),
                "retrained": False,
            }
            if name == "drift":
                current = snapshot[features].assign(**{PREDICTION: p})
                matured = [d for d in timeline[: i + 1] if d + horizon <= week]
                performance = None
                if matured:
                    m = matured[-1]
                    ym = table.loc[by_date[m], label].to_numpy().astype(int)
                    pm = scored[(name, m)]

                    performance = realised_performance(pm, ym, settings.evaluation)
                result = assess(
                    state.fit.reference,
                    current,
                    settings,
                    performance=performance,
                    days_since_training=(week - state.fit.trained_at).days,
                )
                row["drifted_share"] = result.drifted_share
                row["prediction_drift"] = (
                    result.prediction.statistic if result.prediction else float("nan")
                )
                row["action"] = result.decision.action
                decisions.append(
                    {
                        "week": week.isoformat(),
                        **result.decision.to_dict(),
                        "drifted": [c.column for c in result.features if c.drifted],
                    }
                )
                retrain = result.decision.action == "retrain"
            elif name == "schedule":
                retrain = (i + 1) % cfg.replay_schedule_weeks == 0
            else:
                retrain = False
            if retrain and i + 1 < len(timeline):
                new = fit_at(week)
                state.fit = new
                state.retrains.append(week)
                state.compute_seconds += new.seconds
                state.pending = True
                row["retrained"] = True
            rows.append(row)
    limits.restore_original_limits()
    weekly = pd.DataFrame(rows)
    summary = _summarise(weekly, states, scored, table, by_date, timeline, label)
    files = _write(out_dir, weekly, summary, decisions, states, settings.monitoring)
    seconds = time.perf_counter() - started
    result = ReplayResult(weekly, summary, files, seconds)
    (out_dir / "summary.md").write_text(
        f"{result.markdown()}\n\n{len(timeline)} weeks from {timeline[0]:%Y-%m-%d} to "
        f"{timeline[-1]:%Y-%m-%d}; {len(cache)} distinct fits; replay took {seconds:.0f} s.\n"
    )
    files["summary_md"] = out_dir / "summary.md"
    return result


def _summarise(
    weekly: pd.DataFrame,
    states: dict[str, _PolicyState],
    scored: dict,
    table: pd.DataFrame,
    by_date: dict,
    timeline: list,
    label: str,
) -> pd.DataFrame:
    out = {}
    for name, state in states.items():
        mine = weekly[weekly["policy"] == name]
        y = np.concatenate([table.loc[by_date[w], label].to_numpy().astype(int) for w in timeline])
        p = np.concatenate([scored[(name, w)] for w in timeline])
        out[name] = {
            "retrains": len(state.retrains),
            "mean_pr_auc": float(mine["pr_auc"].mean()),
            "pooled_pr_auc": _pr_auc(y, p),
            "compute_seconds": state.compute_seconds,
            "weeks": len(mine),
        }
    return pd.DataFrame(out).T


def _quarters(weekly: pd.DataFrame) -> pd.DataFrame:
    """Mean weekly PR-AUC per calendar quarter and policy."""
    frame = weekly.assign(
        period=pd.to_datetime(weekly["week"]).dt.tz_localize(None).dt.to_period("Q").astype(str)
    )
    return frame.pivot_table(index="period", columns="policy", values="pr_auc", aggfunc="mean")


def _write(
    out_dir: Path,
    weekly: pd.DataFrame,
    summary: pd.DataFrame,
    decisions: list[dict[str, Any]],
    states: dict[str, _PolicyState],
    monitoring: MonitoringSettings,
) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "weekly": out_dir / "weekly.csv",
        "summary": out_dir / "summary.json",
        "periods": out_dir / "periods.csv",
        "decisions": out_dir / "decisions.jsonl",
        "plot": out_dir / "timeline.png",
    }
    weekly.to_csv(files["weekly"], index=False)
    _quarters(weekly).to_csv(files["periods"])
    payload = {
        "policies": summary.to_dict(orient="index"),
        "retrain_weeks": {n: [w.isoformat() for w in s.retrains] for n, s in states.items()},
        "policy_settings": monitoring.policy.model_dump(),
    }
    files["summary"].write_text(json.dumps(payload, indent=2, default=str))
    files["decisions"].write_text("".join(json.dumps(d, default=str) + "\n" for d in decisions))
    _plot(weekly, states, files["plot"])
    return files


def _plot(weekly: pd.DataFrame, states: dict[str, _PolicyState], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    colours = {"never": "tab:gray", "schedule": "tab:blue", "drift": "tab:red"}
    for name in POLICIES:
        mine = weekly[weekly["policy"] == name]
        weeks = pd.to_datetime(mine["week"]).dt.tz_localize(None)
        top.plot(
            weeks,
            mine["pr_auc"],
            label=f"{name} ({len(states[name].retrains)} retrains)",
            color=colours[name],
        )
    for week in states["drift"].retrains:
        for axis in (top, bottom):
            axis.axvline(week.tz_localize(None), color="tab:red", alpha=0.25, linestyle="--")
    top.set_ylabel("weekly PR-AUC (matured labels)")
    top.legend(loc="lower left")
    top.set_title("Replay: PR-AUC by policy; dashed lines: drift-triggered retrains")
    drift = weekly[weekly["policy"] == "drift"]
    weeks = pd.to_datetime(drift["week"]).dt.tz_localize(None)
    bottom.plot(weeks, drift["drifted_share"], label="share of drifted features", color="tab:red")
    bottom.plot(
        weeks,
        drift["prediction_drift"],
        label="prediction drift (normed Wasserstein)",
        color="tab:purple",
    )
    bottom.set_ylabel("drift of the live model's window")
    bottom.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
