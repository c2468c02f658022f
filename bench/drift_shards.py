"""The drift check's window by customer shard: 1 shard against N, on a synthetic feature
table of CDNOW's shape at scale (default 100x: 2.36M customers).

    python bench/drift_shards.py [--customers 2360000] [--snapshots 8] [--shards 4]

Writes, block of customers by block, a feature table of `--snapshots` weekly snapshots
(every customer in every snapshot, rows in the documented order) twice, as one file and
partitioned by shard, and a transaction log (3 purchases a customer) for the matured labels.
Then, each setting in a fresh process, does what a check does after planning: splits the
log by shard (N shards), reads the window's snapshot and the matured one shard by shard,
scores them with a small model, reduces them to statistics, merges and assesses. Reports
the wall time and, sampled every 50 ms (`foundation.PeakRss`), the peak RSS of the check's
process, of its largest shard worker and of the tree summed, and checks that every drift
statistic, flag, the prediction drift and the realised performance are equal.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
sys.path.insert(0, str(PROJECT / "bench"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from foundation import MEMORY_HEADER, measure, memory_cells  # noqa: E402

from mlstack.config import Settings, load_settings  # noqa: E402

CDNOW_CUSTOMERS = 23_570
BLOCK = 200_000  # customers generated at a time
LAST = pd.Timestamp("1998-02-27", tz="UTC")  # the window's snapshot; matured: 4 weeks before


def settings_for(root: Path, shards: int) -> Settings:
    return load_settings(
        PROJECT / "configs" / "cdnow.yaml", [f"root={root}", f"features.shards={shards}"]
    )


def block(settings: Settings, first: int, count: int, snapshots: int, seed: int) -> pd.DataFrame:
    """Customers first .. first + count - 1 at every snapshot, in (customer, snapshot) order:
    counts for int features; for float features amounts with cents and, every other one,
    ratios at full precision (every value distinct: the largest value -> count tables)."""
    from mlstack.features.definitions import ENTITY, EVENT_TIMESTAMP, feature_list

    rng = np.random.default_rng(seed)
    rows = count * snapshots
    ids = np.repeat([f"{i:08d}" for i in range(first, first + count)], snapshots)
    when = pd.DatetimeIndex([LAST - pd.Timedelta(weeks=w) for w in range(snapshots)][::-1])
    data: dict[str, object] = {ENTITY: ids, EVENT_TIMESTAMP: np.tile(when, count)}
    for i, feature in enumerate(feature_list(settings)):
        if feature.kind == "int":
            data[feature.name] = rng.poisson(2 + i % 7, rows)
        else:
            values = rng.lognormal(2 + 0.1 * (i % 5), 0.8, rows)
            values = np.round(values, 2) if i % 2 else values
            values[rng.random(rows) < 0.05] = np.nan
            data[feature.name] = values
    return pd.DataFrame(data)


def write_data(settings: Settings, out: Path, customers: int, snapshots: int, shards: int):
    """The table as one file and by shard, and the log; the model and the reference."""
    from mlstack.features.definitions import ENTITY, feature_names
    from mlstack.features.shards import partition, shard_of
    from mlstack.features.store import source_schema

    schema = source_schema(settings)
    one = pq.ParquetWriter(out / "table.parquet", schema)
    parts = []
    for k in range(shards):
        partition(out / "table", k).parent.mkdir(parents=True, exist_ok=True)
        parts.append(pq.ParquetWriter(partition(out / "table", k), schema))
    logs = pq.ParquetWriter(
        out / "log.parquet",
        pa.schema(
            [
                (ENTITY, pa.string()),
                ("timestamp", pa.timestamp("ns")),
                ("amount", pa.float64()),
                ("quantity", pa.int64()),
            ]
        ),
    )
    reference = None
    for n, first in enumerate(range(0, customers, BLOCK)):
        frame = block(settings, first, min(BLOCK, customers - first), snapshots, seed=n)
        one.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False))
        shard = shard_of(frame[ENTITY], shards)
        for k, writer in enumerate(parts):
            rows = frame[shard == k]
            writer.write_table(pa.Table.from_pandas(rows, schema=schema, preserve_index=False))
        rng = np.random.default_rng(1000 + n)
        ids = frame[ENTITY].unique()
        lines = pd.DataFrame(
            {
                ENTITY: np.repeat(ids, 3),
                "timestamp": pd.Timestamp("1997-01-01")
                + pd.to_timedelta(rng.integers(0, 545, 3 * len(ids)), unit="D"),
                "amount": np.round(rng.lognormal(3, 0.7, 3 * len(ids)), 2),
                "quantity": rng.integers(1, 5, 3 * len(ids)),
            }
        )
        logs.write_table(pa.Table.from_pandas(lines, preserve_index=False))
        if reference is None:  # an older snapshot's rows: the training reference
            reference = frame.groupby(ENTITY).nth(0).head(settings.monitoring.reference_rows)
    for writer in [one, *parts, logs]:
        writer.close()
    import mlflow.sklearn

    from mlstack.models.candidates import make_model
    from mlstack.registry.tracking import SKOPS_TRUSTED_TYPES

    features = feature_names(settings)
    rng = np.random.default_rng(7)
    label = (rng.random(len(reference)) < 0.2).astype(int)
    model = make_model("gradient_boosting", {"max_iter": 20}, features).fit(reference, label)
    mlflow.sklearn.save_model(
        model,
        str(out / "model"),
        serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
        skops_trusted_types=list(SKOPS_TRUSTED_TYPES),
    )
    reference = reference.assign(probability=model.predict_proba(reference[features])[:, 1])
    reference.to_parquet(out / "reference.parquet", index=False)


def run_check(out: Path, shards: int) -> dict:
    """In this process: what `run_check` does once the champion and the window are known."""
    from mlstack.features.history import naive_utc
    from mlstack.features.shards import partition, split_by_shard
    from mlstack.monitoring.check import assess_statistics, realised_performance, statistics_of
    from mlstack.monitoring.window import WindowPlan, window_statistics

    settings = settings_for(out, shards)
    started = time.perf_counter()
    lines = pd.read_parquet(out / "log.parquet")
    last = naive_utc(lines["timestamp"]).max().isoformat()
    if shards > 1:  # as `plan_window` does
        for k, part in enumerate(split_by_shard(lines, shards)):
            partition(out / f"log-{shards}", k).parent.mkdir(parents=True, exist_ok=True)
            part.to_parquet(partition(out / f"log-{shards}", k), index=False)
        lines = None
    horizon = pd.Timedelta(days=settings.features.horizon_days)
    end = LAST + pd.Timedelta(days=2)
    plan = WindowPlan(
        source="snapshots",
        start=(end - pd.Timedelta(days=7)).isoformat(),
        end=end.isoformat(),
        matured_start=(end - pd.Timedelta(days=7) - horizon).isoformat(),
        matured_end=(end - horizon).isoformat(),
        snapshot=LAST.isoformat(),
        matured_snapshot=(LAST - pd.Timedelta(weeks=4)).isoformat(),
        table=str(out / ("table.parquet" if shards == 1 else "table")),
        model=str(out / "model"),
        log_dir=str(out / f"log-{shards}") if shards > 1 else None,
        last_timestamp=last,
        sample_rows=settings.monitoring.reference_rows,
    )
    window = window_statistics(settings, plan, lines)
    reference = statistics_of(pd.read_parquet(out / "reference.parquet"), settings, "reference")
    performance = realised_performance(window.scores, window.labels, settings.evaluation)
    result = assess_statistics(reference, window, settings, performance=performance)
    return {
        "wall_s": time.perf_counter() - started,
        "rows": window.rows,
        "labelled": len(window.labels),
        "assessment": json.loads(json.dumps(result.to_dict(), default=str)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100 * CDNOW_CUSTOMERS)
    parser.add_argument("--snapshots", type=int, default=8)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--data", type=Path, help="keep the data here (reused when present)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)  # out, shards
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_check(Path(args.child[0]), int(args.child[1]))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = args.data or Path(tmp)
        if not (out / "reference.parquet").exists():
            out.mkdir(parents=True, exist_ok=True)
            started = time.perf_counter()
            settings = settings_for(out, args.shards)
            write_data(settings, out, args.customers, args.snapshots, args.shards)
            print(f"data written in {time.perf_counter() - started:.0f} s")
        figures = {}
        for shards in (1, args.shards):
            command = [sys.executable, __file__, "--child", str(out), str(shards)]
            run = measure(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            if run.returncode:
                raise SystemExit(f"the check with {shards} shards failed:\n{run.stderr[-3000:]}")
            figures[shards] = run.result()
    one, many = figures[1], figures[args.shards]
    equal = one["assessment"] == many["assessment"]
    print(
        f"drift check, {args.customers:,} customers x {args.snapshots} snapshots "
        f"({one['rows']:,} window rows, {one['labelled']:,} matured labelled rows)"
    )
    print(f"{'shards':>7}{'wall s':>9}{MEMORY_HEADER}")
    for shards, f in figures.items():
        print(f"{shards:>7}{f['wall_s']:>9.1f}{memory_cells(f)}")
    print(f"every statistic, flag, prediction drift and performance equal: {equal}")
    print(f"decision: {one['assessment']['decision']}")
    sys.exit(0 if equal else 1)


if __name__ == "__main__":
    main()
