"""`make bench-scale`: wall time and peak memory of each per-customer step against the number
of customers, with 1, 2 and 8 shards, and a log-log picture of it.

    python bench/scale.py [--scales 1,10,100] [--shards 1,2,8] [--steps ...]
                          [--work DIR] [--memory-gib 20] [--json PATH] [--png PATH]

For each scale (a multiple of CDNOW's 23,570 customers) `mlstack synth` writes a log of that
many customers, drawn from CDNOW's histories under new ids (kept in `--work` and reused).
For each shard count a scratch copy of the project (configs and feature repo) then runs the
steps one after another, each in a fresh process, so each step's figures are its own:
ingest, validate, features, training set, materialize. Per step: the wall time, the peak RSS
of the step's process and the peak RSS of its largest shard worker (`RUSAGE_CHILDREN`; the
shard workers are the step's children).

A run that would not fit is not started: before each step, its peak at the previous scale
with the same shard count, grown in proportion to the customers, is checked against
`--memory-gib` (default: this machine's available memory less 2 GiB), and a step projected
past it is recorded as skipped with the projection, as are the steps after it. A step that
fails (killed for memory, say) is recorded with why (its stderr kept beside its run), and
the steps after it are skipped.

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
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from foundation import copy_project  # noqa: E402  (bench/foundation.py)

CDNOW_CUSTOMERS = 23_570
STEPS = ("ingest", "validate", "features", "training_set", "materialize")
OUT = PROJECT / "artifacts" / "bench"
GIB = 2**30


def customers_at(scale: float) -> int:
    return round(CDNOW_CUSTOMERS * scale)


# -- in the child: one step ------------------------------------------------------------------


def settings_for(root: Path, log: Path, shards: int):
    from mlstack.config import load_settings

    return load_settings(
        root / "configs" / "cdnow.yaml",
        [f"root={root}", f"source.uri={log}", "cache=false", f"features.shards={shards}"],
    )


def run_step(root: Path, log: Path, shards: int, name: str) -> dict[str, Any]:
    """`name` on the project at `root` (outputs under root/out); its figures."""
    from mlstack.steps import data
    from mlstack.steps.results import Ingested

    settings, out = settings_for(root, log, shards), root / "out"
    raw, clean = out / "transactions.parquet", out / "clean.parquet"
    table, dataset = out / "features", out / "dataset.parquet"
    started = time.perf_counter()
    if name == "ingest":
        ingested = data.ingest_step(settings, raw)
        (out / "ingested.json").write_text(ingested.to_json())
        extra = {"purchases": ingested.rows}
    elif name == "validate":
        ingested = Ingested.from_json((out / "ingested.json").read_text())
        data.validate_step(settings, raw, ingested, out / "validation.html", clean)
        extra = {}
    elif name == "features":
        ingested = Ingested.from_json((out / "ingested.json").read_text())
        built = data.features_step(settings, clean, ingested.data_version, table, out / "p.html")
        extra = {"feature_rows": built.metrics["feature_rows"]}
    elif name == "training_set":
        result = data.training_set_step(settings, clean, table, dataset, out / "t.html")
        extra = {"training_rows": result.training_rows}
    elif name == "materialize":
        data.materialize_step(settings, table)
        extra = {}
    else:
        raise ValueError(f"unknown step {name!r}: one of {', '.join(STEPS)}")
    return {
        "wall_s": time.perf_counter() - started,
        "step_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        **extra,
    }


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


def child(root: Path, log: Path, shards: int, name: str) -> dict[str, Any]:
    """The step's figures, or {"failed": why} (a step killed for memory is a figure too)."""
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(root), str(log), str(shards), name],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        (root.parent / f"{root.name}-{name}.stderr").write_text(done.stderr)
        last = (done.stderr.strip().splitlines() or [""])[-1]
        signal = f"killed by signal {-done.returncode}" if done.returncode < 0 else ""
        return {"failed": signal or last[-200:] or f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def projected_mb(rows: list[dict], scale: float, shards: int, name: str) -> float | None:
    """The step's peak at the largest smaller scale that ran with `shards`, grown in
    proportion to the customers (the larger of the step process and a shard worker)."""
    earlier = [
        r
        for r in rows
        if r["shards"] == shards and r["step"] == name and r["scale"] < scale and "wall_s" in r
    ]
    if not earlier:
        return None
    last = max(earlier, key=lambda r: r["scale"])
    return max(last["step_peak_mb"], last["worker_peak_mb"]) * scale / last["scale"]


def slopes(rows: list[dict]) -> list[dict]:
    """Per step and shard count: the log-log slope of time against customers between the two
    largest scales that ran."""
    found = []
    for shards in sorted({r["shards"] for r in rows}):
        for name in STEPS:
            ran = sorted(
                (r for r in rows if r["shards"] == shards and r["step"] == name and "wall_s" in r),
                key=lambda r: r["scale"],
            )
            if len(ran) < 2:
                continue
            a, b = ran[-2], ran[-1]
            slope = math.log(b["wall_s"] / a["wall_s"]) / math.log(b["customers"] / a["customers"])
            found.append(
                {
                    "step": name,
                    "shards": shards,
                    "from": a["scale"],
                    "to": b["scale"],
                    "slope": slope,
                }
            )
    return found


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = sorted({r["shards"] for r in rows})
    figure, axes = plt.subplots(1, len(counts), figsize=(5 * len(counts), 4.5), squeeze=False)
    for ax, shards in zip(axes[0], counts, strict=True):
        for name in STEPS:
            ran = sorted(
                (r for r in rows if r["shards"] == shards and r["step"] == name and "wall_s" in r),
                key=lambda r: r["customers"],
            )
            if ran:
                ax.loglog(
                    [r["customers"] for r in ran], [r["wall_s"] for r in ran], "o-", label=name
                )
        ax.set_title(f"{shards} shard{'s' if shards > 1 else ''}")
        ax.set_xlabel("customers")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("wall time (s)")
    axes[0][-1].legend(fontsize=8)
    figure.suptitle("Time per step against customers (log-log; a slope of 1 is linear)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def table(rows: list[dict]) -> str:
    lines = [
        f"{'scale':>6}{'customers':>11}{'shards':>7}  {'step':<13}{'wall s':>9}"
        f"{'step MB':>9}{'worker MB':>10}"
    ]
    for r in rows:
        head = f"{r['scale']:>5g}x{r['customers']:>11,}{r['shards']:>7}  {r['step']:<13}"
        if "wall_s" in r:
            worker = f"{r['worker_peak_mb']:>10.0f}" if r["shards"] > 1 else f"{'-':>10}"
            lines.append(f"{head}{r['wall_s']:>9.1f}{r['step_peak_mb']:>9.0f}{worker}")
        else:
            lines.append(f"{head}  {r['skipped']}")
    return "\n".join(lines)


def main() -> int:
    import psutil

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="1,10,100", help="multiples of CDNOW's customers")
    parser.add_argument("--shards", default="1,2,8", help="shard counts")
    parser.add_argument("--steps", default=",".join(STEPS), help="the steps, in order")
    parser.add_argument("--work", type=Path, default=Path("/tmp/mlstack-bench-scale"))
    parser.add_argument("--memory-gib", type=float, help="the memory a step may project to")
    parser.add_argument("--json", type=Path, default=OUT / "scale.json")
    parser.add_argument("--png", type=Path, default=OUT / "scale.png")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)  # root, log, shards, step
    args = parser.parse_args()
    if args.child:
        root, log, shards, name = args.child
        print(json.dumps(run_step(Path(root), Path(log), int(shards), name)))
        return 0

    scales = sorted(float(s) for s in args.scales.split(","))
    counts = sorted(int(s) for s in args.shards.split(","))
    steps = [s for s in args.steps.split(",") if s]
    unknown = sorted(set(steps) - set(STEPS))
    if unknown or any(s <= 0 for s in scales) or any(k < 1 for k in counts):
        parser.error(f"steps are {', '.join(STEPS)}; scales > 0; shards >= 1 (got {unknown})")
    budget_mb = 1024 * (args.memory_gib or (psutil.virtual_memory().available / GIB - 2))
    args.work.mkdir(parents=True, exist_ok=True)
    OUT.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    synth_s: dict[str, float | None] = {}
    for scale in scales:
        log, took = synth_log(args.work, scale)
        synth_s[f"{scale:g}"] = took
        for shards in counts:
            root = args.work / f"run-{scale:g}x-{shards}"
            subprocess.run(["rm", "-rf", str(root)], check=True)
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
                    row |= child(root, log, shards, name)
                    if "failed" in row:
                        row["skipped"] = f"failed: {row.pop('failed')}"
                        blocked = f"skipped: {name} failed"
                rows.append(row)
                print(table([row]).splitlines()[-1], flush=True)
            subprocess.run(["rm", "-rf", str(root)], check=True)
    print()
    print(table(rows))
    found = slopes(rows)
    print()
    for s in found:
        print(
            f"slope of {s['step']} with {s['shards']} shard{'s' if s['shards'] > 1 else ''}, "
            f"{s['from']:g}x to {s['to']:g}x: {s['slope']:.2f}"
        )
    plot(rows, args.png)
    args.json.write_text(
        json.dumps(
            {"rows": rows, "slopes": found, "synth_s": synth_s, "cores": os.cpu_count()},
            indent=2,
        )
    )
    print(f"figures: {args.json}; picture: {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
