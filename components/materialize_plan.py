"""Materialization plan: what every shard loads into the online store (features.shards > 1)."""

from kfp import dsl
from kfp.dsl import Dataset, Input

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def materialize_plan(settings_json: str, feature_table: Input[Dataset]) -> str:
    """In: the partitioned `feature_table` (its last snapshot bounds the run). Returns the
    plan (JSON): the intervals the registry says come next, and that bound."""
    from pathlib import Path

    from mlstack.config import Settings
    from mlstack.steps.online import plan_step

    return plan_step(Settings.from_json(settings_json), Path(feature_table.path))
