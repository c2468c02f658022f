"""Ingest: raw transaction log (any fsspec URI) -> normalised Parquet, in the log's order."""

from kfp import dsl
from kfp.dsl import Dataset, Metrics, Output

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def ingest(settings_json: str, transactions: Output[Dataset], stats: Output[Metrics]) -> str:
    """Reads `source.uri` by the column mapping in the settings.

    Out: `transactions` (Parquet; metadata holds the data version and the row count),
    `stats`. Returns the data version (a content hash).
    """
    from pathlib import Path

    from mlstack.config import Settings
    from mlstack.steps.data import ingest_step

    result = ingest_step(Settings.from_json(settings_json), Path(transactions.path))
    transactions.metadata.update(result.facts())
    for name, value in result.metrics.items():
        stats.log_metric(name, value)
    return result.data_version
