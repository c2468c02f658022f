"""Features and the training set by customer shard: 1 shard against N, on the bundled data.

    python bench/shards.py [--shards 4] [--json PATH]

Ingests and validates the full bundled log once, then runs the features step and the
training-set step (`mlstack.steps.data`, uncached) with one shard and with N, each setting
in a fresh process. Reports, per step, the wall time, the step process's peak RSS and the
largest shard worker's peak RSS (`RUSAGE_CHILDREN`: the workers are the step's children),
and checks that the N-shard feature table and training set equal the one-shard ones, row
for row, in the documented order (`mlstack.features.shards.ORDER`), and the one-shard
feature version.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

import pandas as pd  # noqa: E402
from foundation import copy_project  # noqa: E402  (bench/foundation.py)

from mlstack.config import Settings, load_settings  # noqa: E402

ONE_SHARD_VERSION = "1b01447add9ec477"  # the clean CDNOW feature table at 34059e3 (before shards)


def settings_for(root: Path, shards: int) -> Settings:
    return load_settings(
        PROJECT / "configs" / "cdnow.yaml",
        [
            f"root={root}",
            f"source.uri={PROJECT / 'data' / 'cdnow_master.txt.gz'}",
            "cache=false",
            f"features.shards={shards}",
        ],
    )


def peak_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # KiB on Linux


def run_step(root: Path, shards: int, name: str) -> dict:
    """In this process: the features or the training-set step with `shards` (the clean log
    is root/out/clean.parquet); its figures."""
    from mlstack.steps import data

    settings, out = settings_for(root, shards), root / "out"
    clean, table = out / "clean.parquet", out / f"features-{shards}"
    started = time.perf_counter()
    if name == "features":
        result = data.features_step(settings, clean, "v", table, out / "p.html")
        extra = {"feature_version": result.feature_version}
    else:
        dataset = out / f"dataset-{shards}.parquet"
        data.training_set_step(settings, clean, table, dataset, out / "f.html")
        extra = {}
    return {
        "wall_s": time.perf_counter() - started,
        "peak_rss_mb": peak_mb(resource.RUSAGE_SELF),
        "worker_peak_rss_mb": peak_mb(resource.RUSAGE_CHILDREN),
        **extra,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)  # root, shards, step
    args = parser.parse_args()
    if args.child:
        root, shards, name = args.child
        print(json.dumps(run_step(Path(root), int(shards), name)))
        return

    from mlstack.features.shards import in_order, partition
    from mlstack.steps import data

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        copy_project(root)
        settings, out = settings_for(root, 1), root / "out"
        ingested = data.ingest_step(settings, out / "tx.parquet")
        data.validate_step(
            settings, out / "tx.parquet", ingested, out / "v.html", out / "clean.parquet"
        )
        figures = {}
        for shards in (1, args.shards):
            for name in ("features", "training_set"):
                done = subprocess.run(
                    [sys.executable, __file__, "--child", str(root), str(shards), name],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                result = json.loads(done.stdout.strip().splitlines()[-1])
                figures.setdefault(shards, {})[name] = result
        one = pd.read_parquet(out / "features-1")
        parts = [
            pd.read_parquet(partition(out / f"features-{args.shards}", k))
            for k in range(args.shards)
        ]
        pd.testing.assert_frame_equal(in_order(pd.concat(parts, ignore_index=True)), one)
        pd.testing.assert_frame_equal(
            pd.read_parquet(out / f"dataset-{args.shards}.parquet"),
            pd.read_parquet(out / "dataset-1.parquet"),
        )
        equal = {
            "feature_rows": len(one),
            "training_rows": len(pd.read_parquet(out / "dataset-1.parquet")),
            "one_shard_version_unchanged": figures[1]["features"]["feature_version"]
            == ONE_SHARD_VERSION,
        }
    print(f"{'step':<14}{'shards':>7}{'wall s':>9}{'step MB':>10}{'worker MB':>11}")
    for shards, steps in figures.items():
        for name, f in steps.items():
            worker = f["worker_peak_rss_mb"] if shards > 1 else float("nan")
            print(
                f"{name:<14}{shards:>7}{f['wall_s']:>9.1f}{f['peak_rss_mb']:>10.0f}{worker:>11.0f}"
            )
    print(f"equal, row for row: {equal}")
    if args.json:
        args.json.write_text(json.dumps({"figures": figures, "equal": equal}, indent=2))


if __name__ == "__main__":
    main()
