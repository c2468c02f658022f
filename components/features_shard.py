"""Features of one shard: its customers' point-in-time features and labels."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def features_shard(
    settings_json: str, shards_log: Input[Dataset], shard: int, shard_table: Output[Dataset]
) -> str:
    """In: the log split by shard, and which `shard`. Out: `shard_table` (Parquet: the
    shard's feature rows); returns the shard's facts (rows, version, label counts) as JSON."""
    from pathlib import Path

    from mlstack.config import Settings
    from mlstack.steps.data import features_shard_step

    return features_shard_step(
        Settings.from_json(settings_json), Path(shards_log.path), shard, Path(shard_table.path)
    )
