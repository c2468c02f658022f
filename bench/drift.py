"""Benchmark: one drift check over 100k rows x 20 features, side by side with plain scipy
tests on the same columns and Evidently's preset, each measured in this run.

The floor is `scipy.stats.ks_2samp` on every column (what a plain script would run); the
check is `mlstack.monitoring.drift.drift_table` (the normed Wasserstein distance the policy
reads, the same statistic as in Evidently's report), and the same from four shards'
statistics merged (in this process: the arithmetic a sharded check adds). Target: within
1.5x of the floor and under 10 s.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd
from scipy import stats

from mlstack.config import load_settings
from mlstack.monitoring.drift import drift_table, drift_table_of, evidently_values
from mlstack.monitoring.statistics import merge_windows, window_stats

ROWS = 100_000
COLUMNS = 20
REPEATS = 3


def frames(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ref = {}
    cur = {}
    for i in range(COLUMNS):
        if i % 2:
            ref[f"f{i}"] = rng.lognormal(1, 0.6, ROWS)
            cur[f"f{i}"] = rng.lognormal(1 + 0.02 * i, 0.6, ROWS)
        else:
            ref[f"f{i}"] = rng.poisson(2 + i, ROWS).astype(float)
            cur[f"f{i}"] = rng.poisson(2 + i + 0.1 * i, ROWS).astype(float)
    return pd.DataFrame(ref), pd.DataFrame(cur)


def best_of(fn, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> int:
    settings = load_settings()
    ref, cur = frames()
    kinds = dict.fromkeys(ref.columns, "numerical")

    def scipy_floor() -> None:
        for c in ref.columns:
            stats.ks_2samp(ref[c].to_numpy(), cur[c].to_numpy())

    def check() -> None:
        drift_table(ref, cur, kinds, settings.monitoring)

    def by_shards(shards: int = 4) -> None:
        # each shard's statistics of a quarter of the rows, merged: the sharded check's
        # arithmetic, here in one process
        parts = [window_stats(cur.iloc[k::shards], kinds, "w", 0, k, shards) for k in range(shards)]
        reference = window_stats(ref, kinds, "reference", 0).columns
        drift_table_of(reference, merge_windows(parts, shards).columns, kinds, settings.monitoring)

    def scipy_wasserstein() -> None:
        for c in ref.columns:
            stats.wasserstein_distance(ref[c].to_numpy(), cur[c].to_numpy())

    floor = best_of(scipy_floor)
    ours = best_of(check)
    sharded = best_of(by_shards)
    wasser = best_of(scipy_wasserstein)
    started = time.perf_counter()
    evidently_values(ref, cur, kinds, settings.monitoring)
    evidently = time.perf_counter() - started
    ratio = ours / floor
    print(f"drift check, {ROWS:,} rows x {COLUMNS} features (best of {REPEATS}; Evidently once)")
    print(f"  scipy ks_2samp per column (floor)     {floor:7.3f} s   1.00x")
    print(f"  scipy wasserstein_distance per column {wasser:7.3f} s   {wasser / floor:.2f}x")
    print(f"  mlstack drift_table (policy numbers)  {ours:7.3f} s   {ratio:.2f}x")
    print(f"  ... from 4 shards' statistics, merged {sharded:7.3f} s   {sharded / floor:.2f}x")
    print(f"  Evidently DataDriftPreset (report)    {evidently:7.3f} s   {evidently / floor:.2f}x")
    ok = ratio <= 1.5 and ours < 10
    print(f"  target: <= 1.5x the floor and < 10 s: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
