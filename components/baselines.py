"""Baselines: the recency heuristic and an L1 logistic regression, for every comparison."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def baselines(
    settings_json: str,
    dataset: Input[Dataset],
    run_id: str,
    models: Output[Model],
    stats: Output[Metrics],
):
    """In: the training set. Out: `models` (joblib: name -> fitted model; metadata holds
    validation and test metrics and the features L1 drops), `stats`."""
    from pathlib import Path

    from mlstack.config import Settings
    from mlstack.steps.model import baselines_step

    result = baselines_step(
        Settings.from_json(settings_json), Path(dataset.path), Path(models.path), run_id
    )
    models.metadata.update(result.facts())
    for name, value in result.metrics.items():
        stats.log_metric(name, value)
