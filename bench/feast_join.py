"""Feast's point-in-time join against a plain pandas `merge_asof` of the same rows.

    python bench/feast_join.py [--rows N] [--repeat K] [--variants all] [--cdnow PATH]

Builds a feature table (synthetic by default: ~23.5k customers x 75 weekly snapshots, the
real columns; or the real one from a CDNOW file) and entity rows for the same
(customer, snapshot) pairs with a label, then times each variant in its own subprocess:
wall and CPU time of the call (median of `--repeat` runs, interleaved, after a 10-row
warm-up call so one-time imports are not counted) and its peak memory (the process's peak
RSS during the call minus its RSS before it). `merge_asof` is the reference; `feast` is
`mlstack.features.store.training_set`, the path training uses. Other benchmarks can
import `bench_join`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from mlstack.config import Settings, load_settings
from mlstack.features.definitions import (
    ENTITY,
    EVENT_TIMESTAMP,
    FEATURE_VIEW,
    feature_list,
    feature_names,
    label_name,
)

PROJECT = Path(__file__).resolve().parents[1]
CUSTOMERS = 23_570
SNAPSHOTS = 75
REFERENCE = "merge_asof"


@dataclass(frozen=True)
class Variant:
    description: str
    ttl_days: int | None = None  # None: the repo's TTL
    offline_store: str = "duckdb"
    naive: bool = False  # entity_rows as given, .to_df(), rows in Feast's order
    heavy: bool = False  # needs GBs at full size: run only when named


VARIANTS: dict[str, Variant] = {
    REFERENCE: Variant("pandas merge_asof, by customer, backward, tolerance = TTL"),
    "feast": Variant("training_set(): DuckDB store, keys-only entity_df, to_arrow"),
    "feast_to_df": Variant("DuckDB store, whole entity_rows, .to_df()", naive=True),
    "feast_ttl_6d": Variant("training_set(), TTL 6 days", ttl_days=6),
    "feast_ttl_30d": Variant("training_set(), TTL 30 days", ttl_days=30),
    "feast_ttl_365d": Variant("training_set(), TTL 365 days", ttl_days=365, heavy=True),
    "feast_file": Variant(
        "training_set(), file (dask) offline store", offline_store="file", heavy=True
    ),
}
DEFAULT_VARIANTS = (REFERENCE, "feast")


def _heavy() -> list[str]:
    return [name for name, v in VARIANTS.items() if v.heavy]


# -- data --------------------------------------------------------------------------------


def synthetic_tables(
    settings: Settings, customers: int = CUSTOMERS, snapshots: int = SNAPSHOTS, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A feature table shaped like the real one, and labelled entity rows for its keys.

    Customers join in the first quarter of the snapshot grid, as in CDNOW, and then have a
    row at every later snapshot; values are random, ~10% of float values are missing.
    """
    rng = np.random.default_rng(seed)
    ids = pd.array([f"{i:05d}" for i in range(1, customers + 1)], dtype="string")
    grid = pd.date_range("1997-02-01", periods=snapshots, freq="7D", tz="UTC")
    first = rng.integers(0, max(snapshots // 4, 1), customers)
    code = np.repeat(np.arange(customers), snapshots - first)
    snap = np.arange(len(code)) - np.repeat(
        np.cumsum(snapshots - first) - snapshots, snapshots - first
    )
    columns: dict[str, Any] = {ENTITY: ids.take(code), EVENT_TIMESTAMP: grid.take(snap)}
    for feature in feature_list(settings):
        if feature.kind == "int":
            columns[feature.name] = rng.integers(0, 400, len(code))
        else:
            values = rng.gamma(2.0, 30.0, len(code))
            values[rng.random(len(code)) < 0.1] = np.nan
            columns[feature.name] = values
    features = pd.DataFrame(columns)
    entity_rows = features[[ENTITY, EVENT_TIMESTAMP]].assign(
        **{label_name(settings.features): rng.integers(0, 2, len(features))}
    )
    return features, entity_rows


def cdnow_tables(path: Path, settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The real feature table and labelled entity rows, built from a CDNOW file."""
    from mlstack.data.clean import read_clean
    from mlstack.features.build import build_features, build_labels

    source = settings.source.model_copy(update={"uri": str(path)})
    transactions = read_clean(settings.model_copy(update={"source": source}))
    features = build_features(transactions, settings)
    return features, build_labels(transactions, features[[ENTITY, EVENT_TIMESTAMP]], settings)


# -- the two joins -----------------------------------------------------------------------


def merge_asof_join(
    features: pd.DataFrame, entity_rows: pd.DataFrame, settings: Settings, tolerance: timedelta
) -> pd.DataFrame:
    """The reference point-in-time join, with `training_set`'s columns and row order."""
    label = label_name(settings.features)
    left = entity_rows[[ENTITY, EVENT_TIMESTAMP, label]].reset_index(drop=True)
    left = left.assign(_row=np.arange(len(left))).sort_values(EVENT_TIMESTAMP, kind="stable")
    right = features[[ENTITY, EVENT_TIMESTAMP, *feature_names(settings)]].sort_values(
        EVENT_TIMESTAMP, kind="stable"
    )
    joined = pd.merge_asof(
        left,
        right,
        on=EVENT_TIMESTAMP,
        by=ENTITY,
        direction="backward",
        tolerance=pd.Timedelta(tolerance),
    )
    return joined.sort_values("_row").drop(columns="_row").reset_index(drop=True)


def _feast_call(variant: Variant, settings: Settings) -> Callable[[pd.DataFrame], pd.DataFrame]:
    from mlstack.features import store as feature_store

    config_file = None
    if variant.offline_store != "duckdb":
        config_file = _variant_config(settings, variant.offline_store)
    store = feature_store.open_store(settings, config_file)
    view = store.get_feature_view(FEATURE_VIEW)
    ttl = timedelta(days=variant.ttl_days) if variant.ttl_days else _repo_ttl(settings)
    if view.ttl != ttl:
        view.ttl = ttl
        store.apply([view])
    if not variant.naive:
        return lambda rows: feature_store.training_set(store, rows, settings)
    service = store.get_feature_service(settings.feast.feature_service)
    return lambda rows: store.get_historical_features(entity_df=rows, features=service).to_df()


def _variant_config(settings: Settings, offline_store: str) -> str:
    """A copy of the repo's feature_store.yaml with another offline store; its file name."""
    repo = settings.feast.repo_path
    config = yaml.safe_load((repo / settings.feast.config_file).read_text())
    config["offline_store"] = {"type": offline_store}
    name = f"feature_store.{offline_store}.yaml"
    (repo / name).write_text(yaml.safe_dump(config))
    return name


# -- measuring, one subprocess per run ---------------------------------------------------


def _rss_kb() -> tuple[int, int]:
    """Current and peak resident set size of this process, in KiB."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return int(status["VmRSS"].split()[0]), int(status["VmHWM"].split()[0])


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class Measurement:
    seconds: float  # wall time
    cpu_seconds: float  # user + system time of all the process's threads
    peak_mb: float  # peak RSS during the call minus RSS before it, MiB
    result: pd.DataFrame


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _measure(call: Callable[[], pd.DataFrame]) -> Measurement:
    """Time and peak memory of one call, and its result."""
    exact = _reset_peak_rss()
    start_rss, _ = _rss_kb()
    start_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start_cpu = _cpu_seconds()
    started = time.perf_counter()
    result = call()
    seconds = time.perf_counter() - started
    cpu_seconds = _cpu_seconds() - start_cpu
    if exact:
        peak_kb = _rss_kb()[1] - start_rss
    else:  # peak since process start: an underestimate if loading peaked higher
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start_peak
    return Measurement(seconds, cpu_seconds, peak_kb / 1024, result)


def _fingerprint(result: pd.DataFrame, settings: Settings) -> str:
    """A hash of the feature values in row order, blind to int/float dtype differences."""
    values = result[feature_names(settings)].astype("float64")
    return hex(int(pd.util.hash_pandas_object(values, index=False).sum()) & (2**64 - 1))


def _worker(name: str, workdir: Path) -> None:
    settings = _workdir_settings(workdir)
    entity_rows = pd.read_parquet(workdir / "entity_rows.parquet")
    variant = VARIANTS[name]
    if name == REFERENCE:
        features = pd.read_parquet(workdir / "features.parquet")
        tolerance = _repo_ttl(settings)

        def run(rows: pd.DataFrame) -> pd.DataFrame:
            return merge_asof_join(features, rows, settings, tolerance)
    else:
        run = _feast_call(variant, settings)
    warm_up = _measure(lambda: run(entity_rows.head(10)))
    measured = _measure(lambda: run(entity_rows))
    report = {
        "seconds": measured.seconds,
        "cpu_seconds": measured.cpu_seconds,
        "peak_mb": measured.peak_mb,
        "warm_up_seconds": warm_up.seconds,
        "rows": len(measured.result),
        "fingerprint": None if variant.naive else _fingerprint(measured.result, settings),
    }
    (workdir / f"result-{name}.json").write_text(json.dumps(report))


def _repo_ttl(settings: Settings) -> timedelta:
    from mlstack.features.store import declared_view

    ttl = declared_view(settings).ttl
    if ttl is None:
        raise ValueError("the feature view has no TTL")
    return ttl


# -- the workdir: a project copy holding the inputs --------------------------------------


def _workdir_settings(workdir: Path) -> Settings:
    return load_settings(workdir / "configs" / "cdnow.yaml", overrides={"root": str(workdir)})


def _worker_env(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLSTACK_FEAST_DATA_DIR"}
    env["MLSTACK_CONFIG"] = str(workdir / "configs" / "cdnow.yaml")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT), env.get("PYTHONPATH")]))
    return env


def _prepare(
    workdir: Path, features: pd.DataFrame, entity_rows: pd.DataFrame, settings: Settings
) -> None:
    """Copy the feature repo and these settings into workdir, write the inputs, apply."""
    shutil.copytree(
        settings.feast.repo_path,
        workdir / "feature_repo",
        ignore=shutil.ignore_patterns("data", "__pycache__", "feature_store.*.yaml"),
    )
    config = settings.model_dump(mode="json", exclude={"root"})
    config["artifacts_dir"] = "artifacts"
    config["feast"]["repo_path"] = "feature_repo"
    (workdir / "configs").mkdir()
    (workdir / "configs" / "cdnow.yaml").write_text(yaml.safe_dump(config))
    features.to_parquet(workdir / "features.parquet", index=False)
    entity_rows.to_parquet(workdir / "entity_rows.parquet", index=False)
    _run_worker("prepare", workdir, timeout=600)


def _prepare_worker(workdir: Path) -> None:
    from mlstack.features import store as feature_store

    settings = _workdir_settings(workdir)
    feature_store.write_source(pd.read_parquet(workdir / "features.parquet"), settings)
    feature_store.apply(settings)


def _run_worker(name: str, workdir: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", name, str(workdir)]
    done = subprocess.run(
        command,
        env=_worker_env(workdir),
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"benchmark worker {name!r} failed:\n{done.stderr[-4000:]}")
    return done


def _run_once(name: str, workdir: Path, timeout: float) -> dict[str, Any] | None:
    """One measurement in a fresh process; None if it timed out."""
    try:
        _run_worker(name, workdir, timeout)
    except subprocess.TimeoutExpired:
        return None
    return json.loads((workdir / f"result-{name}.json").read_text())


def _summary(name: str, runs: list[dict[str, Any] | None], timeout: float) -> dict[str, Any]:
    done = [r for r in runs if r is not None]
    if len(done) < len(runs):
        return {"description": VARIANTS[name].description, "timeout": timeout}
    seconds = [r["seconds"] for r in done]
    return {
        "description": VARIANTS[name].description,
        "seconds": statistics.median(seconds),
        "seconds_runs": seconds,
        "cpu_seconds": statistics.median(r["cpu_seconds"] for r in done),
        "peak_mb": max(r["peak_mb"] for r in done),
        "warm_up_seconds": statistics.median(r["warm_up_seconds"] for r in done),
        "rows": done[0]["rows"],
        "fingerprint": done[0]["fingerprint"],
    }


def bench_join(
    features: pd.DataFrame,
    entity_rows: pd.DataFrame,
    settings: Settings,
    variants: tuple[str, ...] = DEFAULT_VARIANTS,
    repeat: int = 1,
    timeout: float = 900,
) -> dict[str, Any]:
    """Time and peak memory of each variant's point-in-time join of `entity_rows`.

    Runs are interleaved across variants, so load on the machine hits them alike. Returns
    the row counts, a per-variant dict (`seconds`: median wall time, `seconds_runs`,
    `cpu_seconds`: median, `peak_mb`: the largest, `warm_up_seconds`, `ratio` of medians to
    `merge_asof`, `same_result` as `merge_asof`) and `feast_vs_merge_asof`, the ratio the
    target is about.
    """
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise ValueError(f"unknown variants {sorted(unknown)}; known: {sorted(VARIANTS)}")
    names = [REFERENCE, *[v for v in variants if v != REFERENCE]]
    runs: dict[str, list[dict[str, Any] | None]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="feast-join-") as tmp:
        workdir = Path(tmp)
        _prepare(workdir, features, entity_rows, settings)
        for _ in range(repeat):
            for name in names:
                if None not in runs[name]:
                    runs[name].append(_run_once(name, workdir, timeout))
    results = {name: _summary(name, runs[name], timeout) for name in names}
    reference = results[REFERENCE]
    for result in results.values():
        if "seconds" in result and "seconds" in reference:
            result["ratio"] = result["seconds"] / reference["seconds"]
            result["same_result"] = (
                None
                if result["fingerprint"] is None
                else result["fingerprint"] == reference["fingerprint"]
            )
    return {
        "entity_rows": len(entity_rows),
        "feature_rows": len(features),
        "features": len(feature_names(settings)),
        "variants": results,
        "feast_vs_merge_asof": results.get("feast", {}).get("ratio"),
    }


def format_report(report: dict[str, Any]) -> str:
    """The benchmark figures as a plain-text table."""
    lines = [
        f"point-in-time join: {report['entity_rows']:,} entity rows x "
        f"{report['feature_rows']:,} feature rows, {report['features']} features",
        f"{'variant':<16} {'seconds':>8} {'x ref':>6} {'cpu s':>7} {'peak MiB':>9} {'same':>5}"
        "  what",
    ]
    for name, r in report["variants"].items():
        if "timeout" in r:
            lines.append(f"{name:<16} {'timeout':>8} {'':>33}  {r['description']}")
            continue
        same = {True: "yes", False: "NO", None: "n/a"}[r["same_result"]]
        lines.append(
            f"{name:<16} {r['seconds']:>8.2f} {r['ratio']:>6.2f} {r['cpu_seconds']:>7.2f} "
            f"{r['peak_mb']:>9.0f} "
            f"{same:>5}  {r['description']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, help="feature rows (default ~1.5M)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per variant (median)")
    parser.add_argument(
        "--variants",
        default=",".join(DEFAULT_VARIANTS),
        help=f"comma list of {list(VARIANTS)}, or 'all' (all but {_heavy()}: GBs at full size)",
    )
    parser.add_argument("--cdnow", type=Path, help="build the real tables from this CDNOW file")
    parser.add_argument("--config", type=Path, default=PROJECT / "configs" / "cdnow.yaml")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per run")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--worker", nargs=2, metavar=("NAME", "WORKDIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        name, workdir = args.worker
        (_prepare_worker if name == "prepare" else lambda w: _worker(name, w))(Path(workdir))
        return 0

    settings = load_settings(args.config, overrides={"root": str(PROJECT)})
    if args.cdnow:
        features, entity_rows = cdnow_tables(args.cdnow, settings)
    else:
        per_customer = SNAPSHOTS - (SNAPSHOTS // 4 - 1) / 2
        customers = max(round(args.rows / per_customer), 1) if args.rows else CUSTOMERS
        features, entity_rows = synthetic_tables(settings, customers=customers)
    if args.variants == "all":
        variants = tuple(name for name in VARIANTS if name not in _heavy())
    else:
        variants = tuple(args.variants.split(","))
    report = bench_join(features, entity_rows, settings, variants, args.repeat, args.timeout)
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
