"""Train: every candidate as an sklearn Pipeline; the best on validation is the challenger."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def train(
    settings_json: str,
    dataset: Input[Dataset],
    best_fit: Input[Model],
    run_id: str,
    challenger: Output[Model],
    stats: Output[Metrics],
):
    """In: the training set and tuning's `best_fit` (the tuned parameters, and the fit on
    train that goes with them when tuning ran locally). Out: `challenger` (joblib sklearn
    Pipeline on raw feature columns; metadata: kind, parameters, every candidate's metrics),
    `stats` (validation objective of each candidate)."""
    from pathlib import Path

    from mlstack.config import Settings
    from mlstack.steps.model import train_step

    result = train_step(
        Settings.from_json(settings_json),
        Path(dataset.path),
        Path(best_fit.path),
        Path(challenger.path),
        run_id,
    )
    challenger.metadata.update(result.facts())
    for name, value in result.metrics.items():
        stats.log_metric(name, value)
