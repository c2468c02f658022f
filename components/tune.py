"""Tune: the configured search space, through Optuna locally or a Katib Experiment."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def tune(
    settings_json: str,
    dataset: Input[Dataset],
    run_id: str,
    best_fit: Output[Model],
    stats: Output[Metrics],
):
    """In: the training set. Out: `best_fit` (joblib: the tuned model kind, its best
    parameters and, tuned locally, the best trial's fit on train, which training reuses;
    its metadata holds the parameters, which the summary reads), `stats` (best value, trials,
    pruned, failed). In cluster mode the Katib trials read the training set from the
    artifact's URI.
    """
    from pathlib import Path

    from mlstack.config import Settings
    from mlstack.steps.model import tune_step

    result = tune_step(
        Settings.from_json(settings_json),
        Path(dataset.path),
        dataset.uri,
        run_id,
        Path(best_fit.path),
    )
    best_fit.metadata.update(result.facts())
    for name, value in result.metrics.items():
        stats.log_metric(name, value)
