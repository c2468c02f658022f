"""Training set of one shard: its labelled rows joined by Feast against its partition."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def training_set_shard(
    settings_json: str,
    shards_log: Input[Dataset],
    feature_table: Input[Dataset],
    shard: int,
    part: Output[Dataset],
) -> int:
    """In: the log split by shard, the partitioned `feature_table`, which `shard`.

    Out: `part` (Parquet: the shard's training rows); returns their number.
    """
    from pathlib import Path

    from mlstack.config import Settings
    from mlstack.steps.data import training_set_shard_step

    return training_set_shard_step(
        Settings.from_json(settings_json),
        Path(shards_log.path),
        Path(feature_table.path),
        shard,
        Path(part.path),
    )
