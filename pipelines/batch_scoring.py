"""The batch-scoring pipeline: score every active customer with the champion at a date.

It runs the same feature lookup (the Feast feature service) and model code as the server;
`mlstack score --at DATE` runs the same step without KFP.
"""

from pathlib import Path

from kfp import dsl

from components.score import score
from mlstack.config import Settings
from pipelines.profile import config_version as version_of
from pipelines.run import compile_pipeline, init_local_runner
from pipelines.tasks import configure_step, place

PIPELINE_NAME = "mlstack-batch-scoring"


def build_batch_scoring_pipeline(settings: Settings):  # -> kfp GraphComponent
    """The batch-scoring pipeline carrying `settings` as its profile."""

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
        scored = place(
            score(settings_json=configured.output, snapshot_date=snapshot_date),
            settings,
            display_name="score customers",
            cache=False,  # reads the registry alias and the online features: both move
        )
        return scored.outputs["Output"]

    return batch_scoring_pipeline


def compile_batch_scoring(settings: Settings, out_dir: Path) -> Path:
    """Write the batch-scoring pipeline as KFP IR YAML (`batch_scoring.yaml`)."""
    return compile_pipeline(
        build_batch_scoring_pipeline, PIPELINE_NAME, settings, Path(out_dir) / "batch_scoring.yaml"
    )


def run_batch_scoring_locally(settings: Settings, snapshot_date: str = "") -> str:
    """Run the pipeline with the KFP local runner; returns the model version that scored."""
    init_local_runner(settings)
    task = build_batch_scoring_pipeline(settings)(snapshot_date=snapshot_date)
    return task.outputs["Output"]
