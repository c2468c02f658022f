"""Register: the model the gate chose into the MLflow registry; `champion` only if it passed."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def register(
    settings_json: str,
    dataset: Input[Dataset],
    challenger: Input[Model],
    baselines: Input[Model],
    test_metrics: Input[Metrics],
    evaluation_json: str,
    run_id: str,
) -> str:
    """In: the challenger, the baselines, the challenger's test metrics and the evaluation's
    gate decision (which names the model to register: the challenger or a baseline).

    Returns the registered version and its aliases as JSON.
    """
    from pathlib import Path

    from mlstack.config import Settings
    from mlstack.steps.gate import register_step
    from mlstack.steps.results import GateOutcome

    result = register_step(
        Settings.from_json(settings_json),
        Path(dataset.path),
        Path(challenger.path),
        Path(baselines.path),
        GateOutcome.model_validate_json(evaluation_json).decision,
        dict(test_metrics.metadata),
        run_id,
    )
    return result.model_dump_json(exclude={"metrics"})
