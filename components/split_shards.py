"""Split by shard: the clean log's lines of each customer shard (features.shards > 1)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def split_shards(settings_json: str, transactions: Input[Dataset], shards_log: Output[Dataset]):
    """In: validated `transactions`. Out: `shards_log`, a folder partitioned by shard
    (shard=K/part-0.parquet) with the whole log's facts every shard needs (facts.json)."""
    from pathlib import Path

    from mlstack.config import Settings
    from mlstack.steps.data import split_shards_step

    split_shards_step(
        Settings.from_json(settings_json).features, Path(transactions.path), Path(shards_log.path)
    )
