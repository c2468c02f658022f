"""Validate: schema, cleaning rules and limits; a `stop` stops the pipeline here."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Output

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def validate(
    settings_json: str,
    transactions: Input[Dataset],
    clean: Output[Dataset],
    report: Output[HTML],
    stats: Output[Metrics],
):
    """In: the ingested `transactions` (their metadata carries the data version).

    Out: `clean` (the rows the policies keep, returns marked, sorted by customer and time;
    metadata holds the rows read and kept, the rows dropped by rule and the returns),
    `report` (HTML; a JSON twin sits beside it), `stats`. Raises `DataValidationError`,
    naming each rule that stops the run with its row count, before anything downstream.
    """
    from pathlib import Path

    from mlstack.config import Settings
    from mlstack.steps.data import validate_step
    from mlstack.steps.results import Ingested

    result = validate_step(
        Settings.from_json(settings_json),
        Path(transactions.path),
        Ingested.from_facts(transactions.metadata),
        Path(report.path),
        Path(clean.path),
    )
    clean.metadata.update(result.facts())
    for name, value in result.metrics.items():
        stats.log_metric(name, value)
