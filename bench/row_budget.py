"""Tuning and training on a row budget: peak memory with and without `split.train_rows`.

    python bench/row_budget.py [--copies 4] [--budget 500000] [--trials 2]
                               [--training-set PATH] [--before-root DIR] [--json PATH]

Makes a training set `copies` times CDNOW's by resampling customers: each copy draws CDNOW's
customers with replacement (seeded) and gives every draw a new id, so each copy has CDNOW's
mix of histories and the whole keeps the one-shard order (customer, then snapshot). The
CDNOW training set is `--training-set` (e.g. a run's `artifacts/kfp/<run>/training-set/
dataset`) or, without it, built here by the ingest, validate, features and training-set
steps. Then, each in a fresh process: the MLflow run, the tune step (`--trials` trials) and
the train step, uncached, with no budget and with `--budget` rows; with `--before-root`
(a checkout from before the budget existed) that code too, which reads the whole file.
Reports per setting the rows fit on, wall time, the peak RSS of the process and of its tree
(sampled every 50 ms, `foundation.PeakRss`) and the challenger's validation and test figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
CODE = Path(os.environ.get("ROW_BUDGET_CODE", PROJECT))  # the child's mlstack: see --before-root
sys.path.insert(0, str(CODE))
sys.path.insert(1, str(PROJECT / "bench"))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from foundation import copy_project, measure  # noqa: E402  (bench/foundation.py)

from mlstack.config import Settings, load_settings  # noqa: E402

ENTITY = "customer_id"


def settings_for(root: Path, budget: str, trials: int) -> Settings:
    overrides = [
        f"root={root}",
        f"source.uri={PROJECT / 'data' / 'cdnow_master.txt.gz'}",
        "cache=false",
        f"tuning.max_trials={trials}",
    ]
    if budget != "absent":  # the code before the budget has no such key
        overrides.append(f"split.train_rows={'null' if budget == 'none' else budget}")
    # the config of the code that runs: the code before the budget forbids its key
    return load_settings(CODE / "configs" / "cdnow.yaml", overrides)


def cdnow_training_set(root: Path) -> Path:
    """CDNOW's training set, made by the pipeline's data steps."""
    from mlstack.steps import data

    settings, out = settings_for(root, "none", 1), root / "out"
    ingested = data.ingest_step(settings, out / "tx.parquet")
    data.validate_step(
        settings, out / "tx.parquet", ingested, out / "v.html", out / "clean.parquet"
    )
    data.features_step(settings, out / "clean.parquet", "v", out / "features", out / "p.html")
    dataset = out / "cdnow.parquet"
    data.training_set_step(
        settings, out / "clean.parquet", out / "features", dataset, out / "f.html"
    )
    return dataset


def resample(source: Path, copies: int, out: Path) -> int:
    """`copies` draws of the source's customers with replacement, new ids; rows written."""
    table = pq.read_table(source)
    ids = table.column(ENTITY).to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])  # rows are by customer
    ends = np.r_[starts[1:], len(ids)]
    width = len(str(len(starts)))
    rows = 0
    with pq.ParquetWriter(out, table.schema) as writer:
        for copy in range(copies):
            drawn = np.random.default_rng(copy).integers(0, len(starts), len(starts))
            lengths = ends[drawn] - starts[drawn]
            take = np.repeat(starts[drawn] - np.cumsum(np.r_[0, lengths[:-1]]), lengths)
            take += np.arange(lengths.sum())
            new_ids = np.repeat([f"{copy:03d}{j:0{width}d}" for j in range(len(drawn))], lengths)
            part = table.take(pa.array(take))
            part = part.set_column(
                part.schema.get_field_index(ENTITY), ENTITY, pa.array(new_ids, pa.string())
            )
            writer.write_table(part)
            rows += part.num_rows
    return rows


def run_child(root: Path, dataset: Path, budget: str, trials: int) -> dict:
    """In this process: the MLflow run, tune and train on `dataset`; the figures."""
    from mlstack.steps import model
    from mlstack.steps.results import Lineage

    settings = settings_for(root, budget, trials)
    out = root / "out" / f"run-{budget}"
    lineage = Lineage(
        data_version="bench", feature_version="bench", feature_service="bench", training_rows=0
    )
    started = time.perf_counter()
    run_id = model.start_run_step(settings, "row budget bench", lineage).run_id
    tuned = model.tune_step(settings, dataset, str(dataset), run_id, out / "best_fit")
    tune_s = time.perf_counter() - started
    trained = model.train_step(settings, dataset, out / "best_fit", out / "model", run_id)
    best = trained.candidates[trained.challenger]
    rows = getattr(trained, "rows", None)
    return {
        "budget": budget,
        "tune_s": tune_s,
        "wall_s": time.perf_counter() - started,
        "rows": rows.model_dump() if rows is not None else None,
        "best_value": tuned.metrics.get("best_value"),
        "challenger": trained.challenger,
        "validation_pr_auc": best.validation["pr_auc"],
        "test_pr_auc": best.test["pr_auc"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--budget", type=int, default=500_000)
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--training-set", type=Path)
    parser.add_argument("--before-root", type=Path)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)  # root, dataset, budget, trials
    args = parser.parse_args()
    if args.child:
        root, dataset, budget, trials = args.child
        print(json.dumps(run_child(Path(root), Path(dataset), budget, int(trials))))
        return

    with tempfile.TemporaryDirectory(prefix="mlstack-bench-") as tmp:
        root = Path(tmp)
        copy_project(root)
        source = args.training_set or cdnow_training_set(root)
        dataset = root / "out" / f"training-{args.copies}x.parquet"
        dataset.parent.mkdir(parents=True, exist_ok=True)
        rows = resample(source, args.copies, dataset)
        print(f"training set: {rows:,} rows ({args.copies} resampled copies of CDNOW's)")
        runs = [(CODE, "none"), (CODE, str(args.budget))]
        if args.before_root:
            runs.insert(0, (args.before_root, "absent"))
        figures = []
        for code, budget in runs:
            run = measure(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    str(root),
                    str(dataset),
                    budget,
                    str(args.trials),
                ],
                stdout=subprocess.PIPE,  # the figures; the child's log goes to stderr
                env={**os.environ, "ROW_BUDGET_CODE": str(code), "PYTHONPATH": str(code)},
            )
            if run.returncode:
                raise SystemExit(f"the run with split.train_rows={budget} failed")
            found = run.result()
            found["code"] = "before" if budget == "absent" else "budget"
            figures.append(found)
            print(json.dumps(found))
    print(
        f"{'code':<8}{'split.train_rows':>17}{'fit rows':>11}{'final fit':>11}{'tune s':>8}"
        f"{'tune+train s':>14}{'peak MB':>9}{'tree MB':>9}{'val PR-AUC':>12}{'test PR-AUC':>13}"
    )
    for f in figures:
        fit = f["rows"]["train_after"] if f["rows"] else float("nan")
        final = f["rows"]["final_after"] if f["rows"] else float("nan")
        print(
            f"{f['code']:<8}{f['budget']:>17}{fit:>11,}{final:>11,}{f['tune_s']:>8.0f}"
            f"{f['wall_s']:>14.0f}{f['peak_rss_mb']:>9.0f}{f['tree_peak_rss_mb']:>9.0f}"
            f"{f['validation_pr_auc']:>12.4f}"
            f"{f['test_pr_auc']:>13.4f}"
        )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
