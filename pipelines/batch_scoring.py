"""The batch-scoring pipeline: score every active customer with the champion at a date.

It runs the same feature lookup (the Feast feature service) and model code as the server;
`mlstack score --at DATE` runs the same step without KFP.
"""

from pathlib import Path

from kfp import dsl

from components.score import score
from mlstack.config import Settings

PIPELINE_NAME = "mlstack-batch-scoring"


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="Purchase propensity of every active customer at a snapshot date, scored by "
    "the champion; Parquet and CSV for downstream systems.",
)
def batch_scoring_pipeline(settings_json: str, snapshot_date: str = "") -> str:
    """`snapshot_date` YYYY-MM-DD, empty for the latest snapshot. Returns the model version."""
    scored = score(settings_json=settings_json, snapshot_date=snapshot_date)
    scored.set_display_name("score customers")
    return scored.outputs["Output"]


def compile_batch_scoring(settings: Settings, out_dir: Path) -> Path:
    """Write the batch-scoring pipeline as KFP IR YAML for the configured image."""
    from pipelines.run import compile_pipeline

    return compile_pipeline(
        batch_scoring_pipeline, PIPELINE_NAME, settings, Path(out_dir) / "batch_scoring.yaml"
    )


def run_batch_scoring_locally(settings: Settings, snapshot_date: str = "") -> str:
    """Run the pipeline with the KFP local runner; returns the model version that scored."""
    from pipelines.run import init_local_runner

    init_local_runner(settings)
    task = batch_scoring_pipeline(settings_json=settings.to_json(), snapshot_date=snapshot_date)
    return task.outputs["Output"]
