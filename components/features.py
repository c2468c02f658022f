"""Features: the point-in-time customer x snapshot table, written as the Feast source."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Output

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def features(
    settings_json: str,
    transactions: Input[Dataset],
    data_version: str,
    feature_table: Output[Dataset],
    profile: Output[HTML],
    stats: Output[Metrics],
):
    """In: validated `transactions` and their `data_version`.

    Out: `feature_table` (Parquet; metadata holds the feature version and snapshot range),
    `profile` (the data profile report), `stats`. Side effect: the Feast offline source is
    rewritten and the feature repo applied.
    """
    from pathlib import Path

    from mlstack.config import Settings
    from mlstack.steps.data import features_step

    result = features_step(
        Settings.from_json(settings_json),
        Path(transactions.path),
        data_version,
        Path(feature_table.path),
        Path(profile.path),
    )
    feature_table.metadata.update(result.facts())
    for name, value in result.metrics.items():
        stats.log_metric(name, value)
