"""Batch scoring as a step: one table, or by customer shard (`features.shards` > 1).

With one shard it is `serving.batch.score_customers`, as it always was. With more, each
shard scores its own customers (`serving.batch_shards`) and the parts are collected into
the same files. Where the shards run: locally, processes inside this step
(`sharded.in_processes`, ``min(shards, cores)`` at a time; the model version resolved once
for all of them); on a cluster, one pod per shard through `dsl.ParallelFor` in the compiled
batch-scoring pipeline, which calls `score_shard_step` and `collect_scores_step`.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pandas as pd

from mlstack.config import Settings
from mlstack.features.shards import partition
from mlstack.serving import model as served
from mlstack.serving.batch import ScoreResult, score_customers, snapshot_at
from mlstack.serving.batch_shards import ShardScores, collect_scores, score_shard
from mlstack.steps import configure_logging, step
from mlstack.steps.sharded import in_processes


def score_step(
    settings: Settings, at: str | pd.Timestamp | None = None, out_dir: Path | None = None
) -> ScoreResult:
    """Score every active customer at `at` (default: the latest snapshot) with the served
    model; write `snapshot_date=YYYY-MM-DD/scores.{parquet,csv}` under `out_dir`."""
    shards = settings.features.shards
    if shards == 1:
        return score_customers(settings, at, out_dir)
    snapshot_at(at)  # a date that does not parse fails here, before any process starts
    ref = served.resolve(settings)  # once: every shard scores with the same version
    with tempfile.TemporaryDirectory(prefix="mlstack-scores-") as tmp:
        results = in_processes(
            score_worker,
            shards,
            settings.to_json(),
            at,
            ref,
            Path(tmp),
            preload=served.LOAD_MODULES,
        )
        parts = [partition(Path(tmp), k) for k in range(shards)]
        return collect_scores(settings, parts, [ShardScores.from_json(r) for r in results], out_dir)


def score_worker(
    shard: int, settings_json: str, at: str | pd.Timestamp | None, ref: served.ModelRef, parts: Path
) -> str:
    configure_logging()
    settings = Settings.from_json(settings_json)
    return score_shard(settings, shard, at, partition(parts, shard), ref).to_json()


# -- the steps of the compiled pipeline's shards (features.shards > 1, on a cluster) -------


@step
def score_shard_step(settings: Settings, at: str | None, shard: int, out_path: Path) -> str:
    """Score one shard's active customers into `out_path`; its result, JSON."""
    return score_shard(settings, shard, at, out_path).to_json()


@step
def collect_scores_step(settings: Settings, parts: list[Path], results: list[str]) -> ScoreResult:
    """The shards' scores as the one-shard files, under `serving.batch_output_dir`."""
    return collect_scores(settings, parts, [ShardScores.from_json(r) for r in results], None)


def export(result: ScoreResult, parquet: Path, csv: Path) -> None:
    """Copy the written scores to a component's output artifacts."""
    for source, target in ((result.parquet, parquet), (result.csv, csv)):
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
