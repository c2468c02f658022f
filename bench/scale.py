"""`make bench-scale`: wall time and peak memory of each step of a training and scoring run
against the number of customers, with 1, 2 and 8 shards, and a log-log picture of it.

    python bench/scale.py [--scales 1,10,100] [--shards 1,2,8] [--steps ...] [--trials 3]
                          [--work DIR] [--memory-gib 20] [--check-equal]
                          [--with PATH] [--json PATH] [--png PATH]

For each scale (a multiple of CDNOW's 23,570 customers) `mlstack synth` writes a log of that
many customers, drawn from CDNOW's histories under new ids (kept in `--work` and reused).
For each shard count a scratch copy of the project (configs and feature repo; MLflow on
SQLite under it) then runs the steps one after another, each in a fresh process, so each
step's figures are its own: ingest, validate, features, training set, tune (`--trials`
trials, the configured row budget `split.train_rows`), train, baselines, evaluate (the
report and the gate's decision on every test row, logged to the run), register, materialize,
batch score. Register logs the trained challenger to the run, registers it and makes it
champion whatever the gate decided (`foundation.make_champion`), so that batch scoring has a
model to load. Materialize writes the local online store
(SQLite, whose one writer at a time the shards take turns for); `materialize_redis` loads
the same rows into Redis, which takes the shards' writes side by side, in the cluster's
Feast configuration (`feature_store.cluster.yaml`): a redis-server of the step's own on
loopback (stopped after), and a registry of its own, so that its interval is not already
recorded by the SQLite step.

Per step: the wall time of the step's function and of its whole process (imports included),
and, sampled every 50 ms from here (`foundation.PeakRss`, psutil), the peak RSS of the
step's process, of its largest descendant (a shard worker, or any process it starts) and of
the tree summed (every process at one sample); the JSON has each process's peak.

A run that would not fit is not started: before each per-customer step, its peak at the
previous scale with the same shard count (the larger of the step's process and its largest
worker), grown in proportion to the customers, is checked against `--memory-gib` (default:
this machine's available memory less 2 GiB), and a step projected past it is recorded as
skipped with the projection, as are the steps after it. Tune, train, baselines and register
fit on the row budget, so their memory is not projected from the customers; every step is watched
instead: a step whose process tree is seen past `--memory-gib` is killed. A step that fails
(killed for memory, say) is recorded with why and its peaks (its stderr kept beside its
run), and the steps after it are skipped.

`--with PATH` adds the rows of an earlier run's JSON (same machine, other scales) to the
projections, the slopes and the picture, so a 100x run can be set against a 10x one
without running 10x again.

With `--check-equal` (for small scales: it reads both tables whole here) the feature table
and the training set of every shard count are checked equal, row for row in the documented
order (`mlstack.features.shards.ORDER`, to `assert_frame_equal`'s tolerance), to the first
shard count's at the same scale.

The log-log slope of time against customers between the two largest scales that ran is
reported for every step and shard count: 1.0 is linear, the issue's target is 1.1 or less
from 10x to 100x. Figures go to artifacts/bench/scale.json, the picture to
artifacts/bench/scale.png.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from foundation import (  # noqa: E402  (bench/foundation.py)
    MEMORY_HEADER,
    copy_project,
    make_champion,
    measure,
    memory_cells,
)

CDNOW_CUSTOMERS = 23_570
STEPS = (
    "ingest",
    "validate",
    "features",
    "training_set",
    "tune",
    "train",
    "baselines",
    "evaluate",
    "register",
    "materialize",
    "materialize_redis",
    "batch_score",
)
# fit on the row budget: their memory is not projected from the customers
BUDGETED = ("tune", "train", "baselines", "register")
OUT = PROJECT / "artifacts" / "bench"
GIB = 2**30


def customers_at(scale: float) -> int:
    return round(CDNOW_CUSTOMERS * scale)


# -- in the child: one step ------------------------------------------------------------------


def overrides_for(root: Path, log: Path, shards: int, trials: int) -> list[str]:
    return [
        f"root={root}",
        f"source.uri={log}",
        "cache=false",
        f"features.shards={shards}",
        f"tuning.max_trials={trials}",
    ]


def settings_for(root: Path, log: Path, shards: int, trials: int):
    from mlstack.config import load_settings

    return load_settings(root / "configs" / "cdnow.yaml", overrides_for(root, log, shards, trials))


def redis_settings(root: Path, log: Path, shards: int, trials: int, connection: str):
    """The bench's settings in the cluster's Feast configuration (`feature_store.cluster.yaml`:
    Redis online) with the Redis server at `connection` and a registry of its own."""
    from mlstack.config import load_settings

    return load_settings(
        root / "configs" / "cdnow.yaml",
        [
            *overrides_for(root, log, shards, trials),
            "feast.config_file=feature_store.cluster.yaml",
            f"feast.registry={root / 'feature_repo' / 'data' / 'registry-redis.db'}",
            f"feast.redis={connection}",
        ],
    )


@contextmanager
def redis_server(folder: Path) -> Iterator[tuple[str, Any]]:
    """A redis-server of its own on a free loopback port, stopped after; yields Feast's
    connection string and a client."""
    import redis
    import serving  # bench/serving.py: the server helpers

    port = serving.free_port()
    process = serving.start_redis(port, folder / "redis.log")
    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        yield f"127.0.0.1:{port}", client
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=30)


def run_step(root: Path, log: Path, shards: int, trials: int, name: str) -> dict[str, Any]:
    """`name` on the project at `root` (outputs under root/out, each step's result beside
    them as `<step>.json`); its figures."""
    from mlstack.steps import data
    from mlstack.steps.results import FeatureTable, Ingested, Lineage, RunStarted, TrainingSet

    settings, out = settings_for(root, log, shards, trials), root / "out"
    raw, clean = out / "transactions.parquet", out / "clean.parquet"
    # the training set's path is passed on as it is: a file, or a folder of shards
    table, dataset = out / "features", out / "training_set"
    best_fit, challenger = out / "best_fit.joblib", out / "challenger.joblib"
    baselines = out / "baselines.joblib"

    def result(step: str, kind):
        return kind.from_json((out / f"{step}.json").read_text())

    extra: dict[str, Any] = {}
    started, ended = time.perf_counter(), None
    if name == "ingest":
        done = data.ingest_step(settings, raw)
        extra = {"purchases": done.rows}
    elif name == "validate":
        done = data.validate_step(
            settings, raw, result("ingest", Ingested), out / "validation.html", clean
        )
    elif name == "features":
        version = result("ingest", Ingested).data_version
        done = data.features_step(settings, clean, version, table, out / "profile.html")
        extra = {"feature_rows": done.metrics["feature_rows"]}
    elif name == "training_set":
        done = data.training_set_step(settings, clean, table, dataset, out / "training.html")
        extra = {"training_rows": done.training_rows}
    elif name == "tune":
        from mlstack.steps import model  # here: the data steps' processes need not import it

        features, training = result("features", FeatureTable), result("training_set", TrainingSet)
        lineage = Lineage(
            data_version=features.data_version,
            feature_version=features.feature_version,
            feature_service=training.feature_service,
            training_rows=training.training_rows,
        )
        run = model.start_run_step(settings, "bench/scale.py", lineage)
        (out / "run.json").write_text(run.to_json())
        started = time.perf_counter()  # the tune step alone
        done = model.tune_step(settings, dataset, str(dataset), run.run_id, best_fit)
        extra = {"trials": done.metrics["trials"], "best_value": done.metrics["best_value"]}
        extra |= {"fit_rows": done.rows.train_after} if done.rows else {}
    elif name == "train":
        from mlstack.steps import model

        run_id = result("run", RunStarted).run_id
        done = model.train_step(settings, dataset, best_fit, challenger, run_id)
        extra = {"challenger": done.challenger}
        extra |= {"final_fit_rows": done.rows.final_after} if done.rows else {}
    elif name == "baselines":
        from mlstack.steps import model

        run_id = result("run", RunStarted).run_id
        done = model.baselines_step(settings, dataset, baselines, run_id)
        extra = {"baselines": sorted(done.baselines)}
    elif name == "evaluate":
        from mlstack.steps import gate

        run_id = result("run", RunStarted).run_id
        report = out / "evaluation.html"
        done = gate.evaluate_step(settings, dataset, challenger, baselines, report, run_id)
        decision = done.gate.decision
        extra = {"test_pr_auc": done.metrics["pr_auc"], "gate_promote": decision.promote}
    elif name == "register":
        import joblib
        import pyarrow.dataset as ds

        from mlstack.features.definitions import feature_names

        columns = feature_names(settings)
        example = ds.dataset(dataset, format="parquet").head(5, columns=columns).to_pandas()
        version = make_champion(
            settings, joblib.load(challenger), example, result("run", RunStarted).run_id
        )
        done, extra = None, {"version": version}
    elif name == "materialize":
        done = data.materialize_step(settings, table)
    elif name == "materialize_redis":
        from mlstack.features import store

        with redis_server(out) as (connection, client):
            on_redis = redis_settings(root, log, shards, trials, connection)
            store.apply(on_redis)  # a registry of its own: nothing materialized yet
            started = time.perf_counter()
            done = data.materialize_step(on_redis, table)
            ended = time.perf_counter()
            memory = client.info("memory")["used_memory"]
            extra = {"redis_keys": client.dbsize(), "redis_mb": memory / 2**20}
    elif name == "batch_score":
        from mlstack.steps.scoring import score_step

        scored = score_step(settings, None, out / "scores")
        done, extra = None, {"scored": scored.rows, "model_version": scored.model_version}
    else:
        raise ValueError(f"unknown step {name!r}: one of {', '.join(STEPS)}")
    wall = (ended or time.perf_counter()) - started
    if done is not None:
        (out / f"{name}.json").write_text(done.to_json())
    return {"wall_s": wall, **extra}


# -- in the parent ---------------------------------------------------------------------------


def synth_log(work: Path, scale: float) -> tuple[Path, float | None]:
    """The log of `scale` x CDNOW's customers under `work` (written once); the seconds it
    took to write, or None when it was already there."""
    folder = work / f"data-{scale:g}x"
    log = folder / "cdnow_synth.txt.gz"
    if log.exists():
        return log, None
    started = time.perf_counter()
    subprocess.run(
        [
            str(Path(sys.executable).with_name("mlstack")),
            "synth",
            "--customers",
            str(customers_at(scale)),
            "--seed",
            "0",
            "--out",
            str(folder),
            "--no-line-items",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return log, time.perf_counter() - started


def child(
    root: Path, log: Path, shards: int, trials: int, name: str, limit_mb: float
) -> dict[str, Any]:
    """The step's figures with its process tree's peaks, or with {"failed": why} (a step
    killed for memory, by the system or past `limit_mb`, is a figure too)."""
    command = [sys.executable, __file__, "--child", str(root), str(log), str(shards)]
    run = measure(
        [*command, str(trials), name],
        limit=int(limit_mb * 2**20),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    peaks = run.peaks.figures() | {"process_s": run.seconds}
    if run.peaks.over_limit:
        return {"failed": f"killed: its processes passed {limit_mb:,.0f} MB", **peaks}
    if run.returncode != 0:
        (root.parent / f"{root.name}-{name}.stderr").write_text(run.stderr)
        last = (run.stderr.strip().splitlines() or [""])[-1]
        signal = f"killed by signal {-run.returncode}" if run.returncode < 0 else ""
        return {"failed": signal or last[-200:] or f"exit {run.returncode}", **peaks}
    return json.loads(run.stdout.strip().splitlines()[-1]) | peaks


def largest_mb(row: dict[str, Any]) -> float:
    """The larger of the step's process and its largest worker."""
    return max(row["peak_rss_mb"], row["worker_peak_rss_mb"] or 0.0)


def projected_mb(rows: list[dict], scale: float, shards: int, name: str) -> float | None:
    """The step's peak at the largest smaller scale that ran with `shards`, grown in
    proportion to the customers (the larger of the step process and a shard worker); None
    for the steps on the row budget."""
    if name in BUDGETED:
        return None
    earlier = [
        r
        for r in rows
        if r["shards"] == shards and r["step"] == name and r["scale"] < scale and "wall_s" in r
    ]
    if not earlier:
        return None
    last = max(earlier, key=lambda r: r["scale"])
    return largest_mb(last) * scale / last["scale"]


def group_of(row: dict, per_shard: bool) -> int:
    """The row's group: its shard count, or (`per_shard`) its customers a shard."""
    return round(row["customers"] / row["shards"]) if per_shard else row["shards"]


def group_title(group: int, per_shard: bool) -> str:
    if per_shard:
        return f"{group:,} customers a shard"
    return f"{group} shard{'s' if group > 1 else ''}"


def ran(rows: list[dict], group: int, name: str, per_shard: bool = False) -> list[dict]:
    """The rows of `name` in `group` (`group_of`) that ran, smallest scale first."""
    found = [
        r for r in rows if group_of(r, per_shard) == group and r["step"] == name and "wall_s" in r
    ]
    return sorted(found, key=lambda r: r["scale"])


def slopes(rows: list[dict], per_shard: bool = False) -> list[dict]:
    """Per step and shard count (or customers a shard): the log-log slope of time against
    customers between the two largest scales that ran."""
    found = []
    for group in sorted({group_of(r, per_shard) for r in rows}):
        for name in STEPS:
            done = ran(rows, group, name, per_shard)
            if len(done) < 2:
                continue
            a, b = done[-2], done[-1]
            slope = math.log(b["wall_s"] / a["wall_s"]) / math.log(b["customers"] / a["customers"])
            found.append(
                {
                    "step": name,
                    "group": group_title(group, per_shard),
                    "shards": [a["shards"], b["shards"]],
                    "from": a["scale"],
                    "to": b["scale"],
                    "slope": slope,
                }
            )
    return found


def plot(rows: list[dict], path: Path, per_shard: bool = False) -> None:
    """Per shard count (or customers a shard), a panel of time and one of the tree's peak
    against customers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({group_of(r, per_shard) for r in rows})
    figure, axes = plt.subplots(
        2, len(groups), figsize=(max(5 * len(groups), 8), 8), squeeze=False, sharex=True
    )
    markers = "os^vD<>ph*"
    for column, group in enumerate(groups):
        for n, name in enumerate(STEPS):
            done = ran(rows, group, name, per_shard)
            if not done:
                continue
            customers = [r["customers"] for r in done]
            style = {"marker": markers[n % len(markers)], "label": name}
            axes[0][column].loglog(customers, [r["wall_s"] for r in done], **style)
            axes[1][column].loglog(customers, [r["tree_peak_rss_mb"] for r in done], **style)
        axes[0][column].set_title(group_title(group, per_shard))
        axes[1][column].set_xlabel("customers")
        for ax in axes[:, column]:
            ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("wall time of the step (s)")
    axes[1][0].set_ylabel("peak RSS of the step's process tree (MB)")
    axes[0][-1].legend(fontsize=8)
    figure.suptitle("Time and memory per step against customers\n(log-log: a slope of 1 is linear)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def table(rows: list[dict]) -> str:
    lines = [
        f"{'scale':>6}{'customers':>11}{'shards':>7}  {'step':<18}{'wall s':>9}{'process s':>10}"
        f"{MEMORY_HEADER}"
    ]
    for r in rows:
        head = f"{r['scale']:>5g}x{r['customers']:>11,}{r['shards']:>7}  {r['step']:<18}"
        if "wall_s" in r:
            lines.append(f"{head}{r['wall_s']:>9.1f}{r['process_s']:>10.1f}{memory_cells(r)}")
        elif "peak_rss_mb" in r:  # failed: the peaks it reached
            lines.append(f"{head}{'-':>9}{r['process_s']:>10.1f}{memory_cells(r)}  {r['skipped']}")
        else:
            lines.append(f"{head}  {r['skipped']}")
    return "\n".join(lines)


def equal_to(first: Path, other: Path, shards: int) -> dict[str, Any]:
    """Whether the run at `other` (with `shards`) has the feature table and the training set
    of the run at `first`, row for row in the documented order, to `assert_frame_equal`'s
    tolerance (the shards sum amounts in another order: the last bits differ); why not."""
    import pandas as pd

    from mlstack.features.shards import in_order

    found: dict[str, Any] = {"shards": shards}
    for name in ("features", "training_set"):
        one = in_order(pd.read_parquet(first / "out" / name))
        many = in_order(pd.read_parquet(other / "out" / name)[list(one.columns)])
        try:
            pd.testing.assert_frame_equal(many, one)
            found[name] = True
        except AssertionError as err:
            found[name] = False
            found[f"{name}_why"] = " ".join(str(err).split())[:300]
    return found


def main() -> int:
    import psutil

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="1,10,100", help="multiples of CDNOW's customers")
    parser.add_argument("--shards", default="1,2,8", help="shard counts")
    parser.add_argument("--steps", default=",".join(STEPS), help="the steps, in order")
    parser.add_argument("--trials", type=int, default=3, help="tuning trials (tuning.max_trials)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/mlstack-bench-scale"))
    parser.add_argument("--memory-gib", type=float, help="the memory a step may project to")
    parser.add_argument(
        "--check-equal", action="store_true", help="compare the tables across shard counts"
    )
    parser.add_argument(
        "--with", dest="earlier", type=Path, help="an earlier run's JSON: its rows count too"
    )
    parser.add_argument(
        "--per-shard",
        action="store_true",
        help="slopes and panels by customers a shard, not by shard count (with --with: a "
        "10x run with 8 shards against a 100x run with 80)",
    )
    parser.add_argument("--json", type=Path, default=OUT / "scale.json")
    parser.add_argument("--png", type=Path, default=OUT / "scale.png")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)  # root log shards trials step
    args = parser.parse_args()
    if args.child:
        root, log, shards, trials, name = args.child
        print(json.dumps(run_step(Path(root), Path(log), int(shards), int(trials), name)))
        return 0

    scales = sorted(float(s) for s in args.scales.split(","))
    counts = sorted(int(s) for s in args.shards.split(","))
    steps = [s for s in args.steps.split(",") if s]
    unknown = sorted(set(steps) - set(STEPS))
    if unknown or any(s <= 0 for s in scales) or any(k < 1 for k in counts) or args.trials < 1:
        parser.error(
            f"steps are {', '.join(STEPS)}; scales > 0; shards, trials >= 1 (got {unknown})"
        )
    budget_mb = 1024 * (args.memory_gib or (psutil.virtual_memory().available / GIB - 2))
    args.work.mkdir(parents=True, exist_ok=True)
    for path in (args.json, args.png):
        path.parent.mkdir(parents=True, exist_ok=True)
    earlier = json.loads(args.earlier.read_text())["rows"] if args.earlier else []
    rows: list[dict[str, Any]] = [r for r in earlier if r["scale"] not in scales]
    synth_s: dict[str, float | None] = {}
    equal: list[dict[str, Any]] = []
    print(table([]), flush=True)
    for scale in scales:
        log, took = synth_log(args.work, scale)
        synth_s[f"{scale:g}"] = took
        kept = None  # the first shard count's run, with --check-equal
        for shards in counts:
            root = args.work / f"run-{scale:g}x-{shards}"
            shutil.rmtree(root, ignore_errors=True)
            copy_project(root)
            blocked = None
            for name in steps:
                row = {
                    "scale": scale,
                    "customers": customers_at(scale),
                    "shards": shards,
                    "step": name,
                }
                projection = projected_mb(rows, scale, shards, name)
                if blocked is None and projection is not None and projection > budget_mb:
                    blocked = (
                        f"skipped: {name} projected at {projection / 1024:.1f} GiB, over "
                        f"{budget_mb / 1024:.0f} GiB"
                    )
                if blocked is not None:
                    row["skipped"] = blocked
                else:
                    row |= child(root, log, shards, args.trials, name, budget_mb)
                    if "failed" in row:
                        row["skipped"] = f"failed: {row.pop('failed')}"
                        blocked = f"skipped: {name} failed"
                rows.append(row)
                print(table([row]).splitlines()[-1], flush=True)
            if args.check_equal and kept is not None:
                equal.append({"scale": scale, **equal_to(kept, root, shards)})
                print(f"equal to {kept.name}: {equal[-1]}", flush=True)
            if args.check_equal and kept is None:
                kept = root
            else:
                shutil.rmtree(root)
        if kept is not None:
            shutil.rmtree(kept)
    print()
    print(table(rows))
    found = slopes(rows, args.per_shard)
    print()
    for s in found:
        a, b = s["shards"]
        print(
            f"slope of {s['step']}, {s['group']} ({a} and {b} shards), "
            f"{s['from']:g}x to {s['to']:g}x: {s['slope']:.2f}"
        )
    plot(rows, args.png, args.per_shard)
    report = {
        "rows": rows,
        "slopes": found,
        "synth_s": synth_s,
        "cores": os.cpu_count(),
        "trials": args.trials,
        "equal": equal,
        "with": str(args.earlier) if args.earlier else None,
    }
    args.json.write_text(json.dumps(report, indent=2))
    print(f"figures: {args.json}; picture: {args.png}")
    return 0 if all(e["features"] and e["training_set"] for e in equal) else 1


if __name__ == "__main__":
    sys.exit(main())
