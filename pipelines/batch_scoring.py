"""The batch-scoring pipeline: score every active customer with the champion at a date.

It runs the same feature lookup (the Feast feature service) and model code as the server;
`mlstack score --at DATE` runs the same step without KFP.

With `features.shards` > 1 the compiled pipeline (the cluster's) fans out by customer shard:
ParallelFor(shards: score a shard, its features joined against its partition) -> scores,
collected in customer-id order into the one-shard step's outputs. Run locally
(`fan_out=False`) the pipeline keeps its one `score` task, and that step scores the shards
as processes: the KFP local runner (kfp 2.16) runs a ParallelFor's iterations only after
every task outside the loop, so the collecting task would run before the shards it collects
(see `pipelines/training.py`).
"""

from pathlib import Path

from kfp import dsl

from components.collect_scores import collect_scores
from components.score import score
from components.score_shard import score_shard
from mlstack.config import Settings
from pipelines.profile import config_version as version_of
from pipelines.run import compile_pipeline, init_local_runner
from pipelines.tasks import configure_step, place

PIPELINE_NAME = "mlstack-batch-scoring"


def build_batch_scoring_pipeline(settings: Settings, fan_out: bool = True):  # -> GraphComponent
    """The batch-scoring pipeline carrying `settings` as its profile. `fan_out`: with
    `features.shards` > 1, one task per shard through `dsl.ParallelFor` (compiled for a
    cluster); else the shards run as processes inside the one step (the local runner)."""
    shards = settings.features.shards if fan_out else 1

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Purchase propensity of every active customer at a snapshot date, scored "
        "by the champion; Parquet and CSV for downstream systems.",
    )
    def batch_scoring_pipeline(
        snapshot_date: str = "",
        model_alias: str = settings.serving.model_alias,
        config_version: str = version_of(settings.to_json()),
    ) -> str:
        """Score every active customer at a snapshot date.

        Args:
            snapshot_date: YYYY-MM-DD; empty for the latest snapshot.
            model_alias: The registry alias of the model that scores.
            config_version: The hash of the settings this pipeline was compiled with.

        Returns:
            The model version that scored.
        """
        configured = configure_step(
            settings, config_version, model_alias=model_alias, snapshot_date=snapshot_date
        )
        cfg = configured.output
        if shards > 1:
            scored = by_shard(settings, cfg, snapshot_date, shards)
        else:
            scored = place(
                score(settings_json=cfg, snapshot_date=snapshot_date),
                settings,
                display_name="score customers",
                cache=False,  # reads the registry alias and the online features: both move
            )
        return scored.outputs["Output"]

    return batch_scoring_pipeline


def by_shard(settings: Settings, cfg, snapshot_date, shards: int):  # -> the collecting task
    """Scoring fanned out over the shards (`dsl.ParallelFor`), collected (`dsl.Collected`)
    by a task with the one-shard task's outputs."""
    with dsl.ParallelFor(items=list(range(shards))) as shard:
        part = place(
            score_shard(settings_json=cfg, snapshot_date=snapshot_date, shard=shard),
            settings,
            display_name="score a shard",
            cache=False,  # reads the registry alias and the offline features: both move
        )
    return place(
        collect_scores(
            settings_json=cfg,
            parts=dsl.Collected(part.outputs["part"]),
            results=dsl.Collected(part.outputs["Output"]),
        ),
        settings,
        display_name="score customers",
        cache=False,  # writes the scores folder
    )


def compile_batch_scoring(settings: Settings, out_dir: Path) -> Path:
    """Write the batch-scoring pipeline as KFP IR YAML (`batch_scoring.yaml`)."""
    return compile_pipeline(
        build_batch_scoring_pipeline, PIPELINE_NAME, settings, Path(out_dir) / "batch_scoring.yaml"
    )


def run_batch_scoring_locally(settings: Settings, snapshot_date: str = "") -> str:
    """Run the pipeline with the KFP local runner; returns the model version that scored.
    Sharded, the one `score` step scores the shards as processes (`fan_out=False`)."""
    init_local_runner(settings)
    task = build_batch_scoring_pipeline(settings, fan_out=False)(snapshot_date=snapshot_date)
    return task.outputs["Output"]
