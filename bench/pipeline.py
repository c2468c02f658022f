"""`make bench`, the model-lifecycle part: the whole training run, then tuning efficiency.

    python bench/pipeline.py [--json PATH] [--seeds N] [--skip-run --dataset PATH]

1. `mlstack run` from nothing, on the full bundled data with the default trial budget: a
   scratch copy of the project (configs and feature repo; no cache, no MLflow database, no
   Feast data yet), so every step runs. Wall time, and the peak RSS of the whole process
   tree (the KFP local runner and the step it runs, summed, sampled every 50 ms). Targets:
   at most 5 minutes and 4 GB.
2. Tuning efficiency on that run's training set: Optuna studies with the default budget,
   TPE and random search, the same seeds, data, pruner and parallelism. For each study, the
   number of trials until the best value so far comes within 0.005 PR-AUC of the study's
   final best. Shown twice: from each sampler alone (`start_from_defaults` off, seeds
   0..N-1), and as `make run` tunes (trial 0 = the model's defaults, seed 0).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "bench"))

from foundation import PeakRss, project_copy  # noqa: E402

from mlstack.config import Settings  # noqa: E402

TIME_BUDGET_S = 300.0
MEMORY_BUDGET_MB = 4096.0
WITHIN = 0.005  # "close to the final best": PR-AUC
FINE = 0.001  # a finer view, since CDNOW's validation PR-AUC varies little over the space


def timed_run(settings: Settings, log_path: Path) -> dict[str, Any]:
    """`mlstack run` on `settings.root` as a subprocess: wall time, tree peak RSS, step times."""
    cli = Path(sys.executable).with_name("mlstack")
    config = settings.root / "configs" / "cdnow.yaml"
    command = [
        str(cli),
        "--config",
        str(config),
        "--set",
        f"root={settings.root}",
        "--set",
        f"source.uri={settings.source.uri}",
        "run",
        "--note",
        "bench: the whole training run from nothing",
    ]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    started = time.perf_counter()
    with (
        log_path.open("w") as log,
        subprocess.Popen(
            command, cwd=settings.root, stdout=log, stderr=subprocess.STDOUT, env=env
        ) as proc,
        PeakRss(proc.pid) as rss,
    ):
        code = proc.wait()
    seconds = time.perf_counter() - started
    text = log_path.read_text(errors="replace")
    if code != 0:
        raise SystemExit(f"mlstack run failed ({code}); its log: {log_path}\n{text[-3000:]}")
    steps = {}
    for line in text.splitlines():
        if ": done in " in line and "step " in line:
            name, _, rest = line.split("step ", 1)[1].partition(": done in ")
            steps[name] = float(rest.split()[0])
    return {"seconds": seconds, "peak_mb": rss.tree_mb(), "steps": steps, "log": str(log_path)}


def trials_to_within(values: list[float | None], within: float = WITHIN) -> int | None:
    """1-based count of trials (in start order) until the best completed value so far is
    within `within` of the final best; None when no trial completed."""
    done = [v for v in values if v is not None]
    if not done:
        return None
    target = max(done) - within
    best = float("-inf")
    for count, value in enumerate(values, start=1):
        if value is not None:
            best = max(best, value)
        if best >= target:
            return count
    return None  # unreachable: the final best is reached at the latest


def run_studies(settings: Settings, dataset: Path, seeds: int) -> list[dict[str, Any]]:
    from mlstack.steps.model import TuningObjective
    from mlstack.tuning.local import COMPLETE, run_study

    objective = TuningObjective(settings, dataset)
    plans = [(algo, seed, False) for seed in range(seeds) for algo in ("tpe", "random")]
    plans += [("tpe", 0, True), ("random", 0, True)]
    rows = []
    for algorithm, seed, from_defaults in plans:
        tuning = settings.tuning.model_copy(
            update={"algorithm": algorithm, "seed": seed, "start_from_defaults": from_defaults}
        )
        started = time.perf_counter()
        study = run_study(tuning, objective)
        values = [t["value"] if t["state"] == COMPLETE else None for t in study.trials]
        row = {
            "algorithm": algorithm,
            "seed": seed,
            "start": "defaults" if from_defaults else "sampler",
            "trials": len(study.trials),
            "pruned": study.n_pruned,
            "best": study.best_value,
            "trials_to_within": trials_to_within(values),
            "trials_to_fine": trials_to_within(values, FINE),
            "seconds": time.perf_counter() - started,
            "values": values,
        }
        rows.append(row)
        print(
            f"  {algorithm:<6} seed {seed} start {row['start']:<8} best {row['best']:.4f} "
            f"within {WITHIN} after {row['trials_to_within']}, within {FINE} after "
            f"{row['trials_to_fine']} of {row['trials']} trials "
            f"({row['pruned']} pruned, {row['seconds']:.0f} s)",
            flush=True,
        )
    return rows


def summarize(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        f"| start | algorithm | studies | trials to within {WITHIN} (each) | mean "
        f"| to within {FINE} (each) | mean best |",
        "|---|---|---|---|---|---|---|",
    ]
    for start in ("sampler", "defaults"):
        for algorithm in ("tpe", "random"):
            group = [r for r in rows if r["start"] == start and r["algorithm"] == algorithm]
            if not group:
                continue
            counts = [r["trials_to_within"] for r in group]
            mean = sum(counts) / len(counts)
            fine = ", ".join(str(r["trials_to_fine"]) for r in group)
            best = sum(r["best"] for r in group) / len(group)
            each = ", ".join(str(c) for c in counts)
            lines.append(
                f"| {start} | {algorithm} | {len(group)} | {each} | {mean:.1f} | {fine} "
                f"| {best:.4f} |"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per sampler (default 3)")
    parser.add_argument(
        "--trials", type=int, help="trial budget of the tuning studies (default: the config's)"
    )
    parser.add_argument("--skip-run", action="store_true", help="only the tuning part")
    parser.add_argument("--run-only", action="store_true", help="only the timed run")
    parser.add_argument("--dataset", type=Path, help="training set for --skip-run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    report: dict[str, Any] = {}
    checks: dict[str, bool] = {}
    with project_copy() as settings:
        if args.trials:
            tuning = settings.tuning.model_copy(update={"max_trials": args.trials})
            settings = settings.model_copy(update={"tuning": tuning})
        dataset = args.dataset
        if not args.skip_run:
            print("mlstack run from nothing on the full bundled data (default trial budget):")
            log_path = PROJECT / "artifacts" / "bench" / "pipeline_run.log"
            log_path.parent.mkdir(parents=True, exist_ok=True)
            run = timed_run(settings, log_path)
            report["run"] = run
            for name, seconds in run["steps"].items():
                print(f"  {name:<14} {seconds:7.1f} s")
            print(f"  {'wall':<14} {run['seconds']:7.1f} s, peak RSS {run['peak_mb']:.0f} MiB")
            checks[f"wall time <= {TIME_BUDGET_S:.0f} s"] = run["seconds"] <= TIME_BUDGET_S
            checks[f"peak RSS <= {MEMORY_BUDGET_MB:.0f} MiB"] = run["peak_mb"] <= MEMORY_BUDGET_MB
            found = sorted(settings.artifacts_dir.glob("kfp/*/training-set/dataset"))
            dataset = found[-1] if found else None
            if dataset is not None:  # kept for bench/roc_ceiling.py
                shutil.copyfile(dataset, log_path.with_name("training_set.parquet"))
        if args.run_only:
            dataset = None
        elif dataset is None or not Path(dataset).is_file():
            raise SystemExit("no training set: run without --skip-run, or pass --dataset")
        if dataset is not None:
            budget = settings.tuning.max_trials
            print(f"\ntuning efficiency ({budget} trials each, same data, pruner, parallelism):")
            report["tuning"] = run_studies(settings, Path(dataset), args.seeds)
            print("\n" + "\n".join(summarize(report["tuning"])))
    if checks:
        print("\ntargets:")
        for name, ok in checks.items():
            print(f"  {'met ' if ok else 'MISSED'} {name}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
