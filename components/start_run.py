"""Start run: this pipeline run's MLflow run, with its note and the data lineage."""

from kfp import dsl
from kfp.dsl import Dataset, Input

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def start_run(
    settings_json: str,
    note: str,
    transactions: Input[Dataset],
    feature_table: Input[Dataset],
    dataset: Input[Dataset],
) -> str:
    """In: the data, feature and training-set artifacts (their metadata is the lineage) and
    the run's `note` (its hypothesis). Returns the MLflow run id the later steps log into."""
    from mlstack.config import Settings
    from mlstack.steps.model import start_run_step
    from mlstack.steps.results import FeatureTable, Lineage, TrainingSet, Validated

    training = TrainingSet.from_facts(dataset.metadata)
    lineage = Lineage(
        data_version=Validated.from_facts(transactions.metadata).data_version,
        feature_version=FeatureTable.from_facts(feature_table.metadata).feature_version,
        feature_service=training.feature_service,
        training_rows=training.training_rows,
    )
    result = start_run_step(Settings.from_json(settings_json), note, lineage)
    return result.run_id
