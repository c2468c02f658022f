"""Training set: labels for every (customer, snapshot), features joined by Feast."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Output

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def training_set(
    settings_json: str,
    transactions: Input[Dataset],
    feature_table: Input[Dataset],
    dataset: Output[Dataset],
    feature_report: Output[HTML],
    stats: Output[Metrics],
):
    """In: `transactions` (for labels) and the `feature_table` (for entity rows).

    Out: `dataset` (Parquet: customer_id, snapshot_date, label, features, from Feast's
    point-in-time join through the feature service; with `features.shards` > 1 a folder
    partitioned by shard), `feature_report`, `stats`.
    """
    from pathlib import Path

    from mlstack.config import Settings
    from mlstack.steps.data import training_set_step

    result = training_set_step(
        Settings.from_json(settings_json),
        Path(transactions.path),
        Path(feature_table.path),
        Path(dataset.path),
        Path(feature_report.path),
    )
    dataset.metadata.update(result.facts())
    for name, value in result.metrics.items():
        stats.log_metric(name, value)
