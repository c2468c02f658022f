"""Summarize: one page on what the run did, for the KFP UI and the terminal."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Model, Output

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def summarize(
    settings_json: str,
    transactions: Input[Dataset],
    validation_stats: Input[Metrics],
    validation_report: Input[HTML],
    feature_table: Input[Dataset],
    feature_stats: Input[Metrics],
    profile: Input[HTML],
    dataset: Input[Dataset],
    dataset_stats: Input[Metrics],
    feature_report: Input[HTML],
    materialized_until: str,
    run_id: str,
    baselines: Input[Model],
    tuning_stats: Input[Metrics],
    best_fit: Input[Model],
    challenger: Input[Model],
    test_metrics: Input[Metrics],
    evaluation_report: Input[HTML],
    evaluation_json: str,
    registration_json: str,
    summary: Output[Markdown],
) -> str:
    """In: every step's metrics and artifacts. Out: `summary` (Markdown). Returns it as JSON."""
    from pathlib import Path

    from mlstack.config import Settings
    from mlstack.steps.results import (
        Baselines,
        FeatureTable,
        GateOutcome,
        Registered,
        Trained,
        TrainingSet,
        Tuned,
        Validated,
    )
    from mlstack.steps.summary import MlflowRun, RunSummary, model_section

    def with_metrics(facts: dict, stats) -> dict:  # a step's facts and its metrics, again
        return {**facts, "metrics": dict(stats.metadata)}

    settings = Settings.from_json(settings_json)
    gate = GateOutcome.model_validate_json(evaluation_json)
    best_params = Tuned.from_facts(best_fit.metadata).best_params
    tuning = {**tuning_stats.metadata, "best_params": best_params}
    run = RunSummary(
        data=Validated.model_validate(with_metrics(transactions.metadata, validation_stats)),
        features=FeatureTable.model_validate(with_metrics(feature_table.metadata, feature_stats)),
        dataset=TrainingSet.model_validate(with_metrics(dataset.metadata, dataset_stats)),
        reports={
            "validation": validation_report.path,
            "profile": profile.path,
            "features": feature_report.path,
            "evaluation": evaluation_report.path,
            "evaluation plots": gate.report_dir,
            "training set": dataset.path,
        },
        materialized_until=materialized_until,
        models=model_section(
            settings.tuning.objective,
            Baselines.from_facts(baselines.metadata),
            tuning,
            Trained.from_facts(challenger.metadata),
            gate,
            dict(test_metrics.metadata),
            Registered.model_validate_json(registration_json),
        ),
        mlflow=MlflowRun(
            run_id=run_id,
            experiment=settings.mlflow.experiment,
            tracking_uri=settings.mlflow.tracking_uri,
        ),
    )
    Path(summary.path).write_text(run.markdown())
    return run.to_json()
