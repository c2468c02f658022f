"""Validate: schema and quality rules; an error-severity failure stops the pipeline."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Output

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def validate(
    settings_json: str, transactions: Input[Dataset], report: Output[HTML], stats: Output[Metrics]
):
    """In: the ingested `transactions` (their metadata carries the ingest counts).

    Out: `report` (HTML; a JSON twin sits beside it), `stats` (rules passed/failed).
    Raises `DataValidationError`, naming each failed rule and its row count, on an error.
    """
    from pathlib import Path

    from mlstack.config import Settings
    from mlstack.steps.data import validate_step

    result = validate_step(
        Settings.from_json(settings_json),
        Path(transactions.path),
        dict(transactions.metadata),
        Path(report.path),
    )
    for name, value in result.metrics.items():
        stats.log_metric(name, value)
