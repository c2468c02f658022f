"""Scores of one shard: its active customers, their features joined against its partition."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def score_shard(settings_json: str, snapshot_date: str, shard: int, part: Output[Dataset]) -> str:
    """In: the settings, a snapshot date (YYYY-MM-DD; empty: the latest snapshot) and which
    `shard`. Out: `part` (Parquet: the shard's customer_id, probability, model_version,
    snapshot_date; no rows when none is active); returns the shard's facts as JSON."""
    from pathlib import Path

    from mlstack.config import Settings
    from mlstack.steps.scoring import score_shard_step

    return score_shard_step(
        Settings.from_json(settings_json), snapshot_date or None, shard, Path(part.path)
    )
