"""Training set, collected: the shards' training rows as one dataset partitioned by shard."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Output

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def collect_training_set(
    settings_json: str,
    parts: Input[list[Dataset]],
    dataset: Output[Dataset],
    feature_report: Output[HTML],
    stats: Output[Metrics],
):
    """In: every shard's training rows. Out: `dataset` (a folder: the shards' parts as they
    are, ``shard=K/part-0.parquet``, each in the one-shard order; its readers read them in
    shard order), `feature_report` (from a bounded sample), `stats`."""
    from pathlib import Path

    from mlstack.config import Settings
    from mlstack.steps.data import collect_training_set_step

    result = collect_training_set_step(
        Settings.from_json(settings_json),
        [Path(p.path) for p in parts],
        Path(dataset.path),
        Path(feature_report.path),
    )
    dataset.metadata.update(result.facts())
    for name, value in result.metrics.items():
        stats.log_metric(name, value)
