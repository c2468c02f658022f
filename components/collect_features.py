"""Features, collected: the shards' tables as the partitioned Feast source."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Output

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def collect_features(
    settings_json: str,
    transactions: Input[Dataset],
    data_version: str,
    shard_tables: Input[list[Dataset]],
    shard_results: list[str],
    feature_table: Output[Dataset],
    profile: Output[HTML],
    stats: Output[Metrics],
):
    """In: `transactions`, their `data_version`, every shard's table and facts.

    Out: `feature_table` (a Parquet dataset partitioned by shard; metadata as the features
    step's), `profile`, `stats`. Side effect: the Feast offline source is rewritten, shard by
    shard, and the feature repo applied.
    """
    from pathlib import Path

    from mlstack.config import Settings
    from mlstack.steps.data import collect_features_step

    result = collect_features_step(
        Settings.from_json(settings_json),
        Path(transactions.path),
        data_version,
        [Path(t.path) for t in shard_tables],
        shard_results,
        Path(feature_table.path),
        Path(profile.path),
    )
    feature_table.metadata.update(result.facts())
    for name, value in result.metrics.items():
        stats.log_metric(name, value)
