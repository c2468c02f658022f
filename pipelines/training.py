"""The training pipeline: raw transactions to a registered, gated model.

ingest -> validate -> features -> training set (+ materialize) -> MLflow run -> baselines
-> tune -> train -> evaluate -> register -> summary
"""

from kfp import dsl

from components.baselines import baselines
from components.evaluate import evaluate
from components.features import features
from components.ingest import ingest
from components.materialize import materialize
from components.register import register
from components.start_run import start_run
from components.summarize import summarize
from components.train import train
from components.training_set import training_set
from components.tune import tune
from components.validate import validate

PIPELINE_NAME = "mlstack-training"


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="Purchase propensity: data, point-in-time features in Feast, baselines, "
    "tuning, training, evaluation, gate, MLflow registry.",
)
def training_pipeline(settings_json: str, note: str = "") -> str:
    """`settings_json` is the full resolved settings (`Settings.to_json()`); `note` is the
    hypothesis of this run, stored with its MLflow run. Returns the run summary as JSON."""
    cfg = settings_json
    ingested = ingest(settings_json=cfg).set_display_name("ingest")
    data = ingested.outputs["transactions"]
    checked = validate(settings_json=cfg, transactions=data).set_display_name("validate")
    built = (
        features(settings_json=cfg, transactions=data, data_version=ingested.outputs["Output"])
        .set_display_name("features")
        .after(checked)
    )
    table = built.outputs["feature_table"]
    labelled = training_set(
        settings_json=cfg, transactions=data, feature_table=table
    ).set_display_name("training set")
    dataset = labelled.outputs["dataset"]
    online = materialize(settings_json=cfg, feature_table=table).set_display_name("materialize")

    run = start_run(
        settings_json=cfg, note=note, transactions=data, feature_table=table, dataset=dataset
    ).set_display_name("mlflow run")
    run_id = run.output
    base = baselines(settings_json=cfg, dataset=dataset, run_id=run_id).set_display_name(
        "baselines"
    )
    tuned = tune(settings_json=cfg, dataset=dataset, run_id=run_id).set_display_name("tune")
    trained = train(
        settings_json=cfg, dataset=dataset, params_json=tuned.outputs["Output"], run_id=run_id
    ).set_display_name("train")
    challenger = trained.outputs["challenger"]
    evaluated = evaluate(
        settings_json=cfg,
        dataset=dataset,
        challenger=challenger,
        baselines=base.outputs["models"],
        run_id=run_id,
    ).set_display_name("evaluate")
    registered = register(
        settings_json=cfg,
        dataset=dataset,
        challenger=challenger,
        test_metrics=evaluated.outputs["metrics"],
        evaluation_json=evaluated.outputs["Output"],
        run_id=run_id,
    ).set_display_name("register")

    summary = summarize(
        settings_json=cfg,
        transactions=data,
        validation_stats=checked.outputs["stats"],
        validation_report=checked.outputs["report"],
        feature_table=table,
        feature_stats=built.outputs["stats"],
        profile=built.outputs["profile"],
        dataset=dataset,
        dataset_stats=labelled.outputs["stats"],
        feature_report=labelled.outputs["feature_report"],
        materialized_until=online.output,
        run_id=run_id,
        baselines=base.outputs["models"],
        tuning_stats=tuned.outputs["stats"],
        params_json=tuned.outputs["Output"],
        challenger=challenger,
        test_metrics=evaluated.outputs["metrics"],
        evaluation_report=evaluated.outputs["report"],
        evaluation_json=evaluated.outputs["Output"],
        registration_json=registered.output,
    ).set_display_name("summary")
    return summary.outputs["Output"]
