"""The training pipeline: raw transactions to a registered, gated model.

configure -> ingest -> validate -> features -> training set (+ materialize) -> MLflow run
-> baselines -> tune -> train -> evaluate -> register -> summary

With `features.shards` > 1 the compiled pipeline (the cluster's) fans out by customer shard:
split by shard -> ParallelFor(shards: features of a shard) -> features, collected (the
partitioned Feast source, applied) -> ParallelFor(shards: training set of a shard, joined
against its partition) -> training set, collected; and materialization plan ->
ParallelFor(shards: a shard's partition into the online store) -> materialize, collected
(the interval recorded in the registry); the rest is unchanged. Run locally
(`fan_out=False`) the pipeline keeps the one features, training-set and materialize task,
and those steps run the shards as processes: the KFP local runner (kfp 2.16) runs a
ParallelFor's iterations only after every task outside the loop, so the collecting task
would run before the shards it collects
(kfp/local/orchestrator/enhanced_dag_orchestrator.py, run_enhanced_dag).
"""

from kfp import dsl

from components.baselines import baselines
from components.collect_features import collect_features
from components.collect_materialized import collect_materialized
from components.collect_training_set import collect_training_set
from components.evaluate import evaluate
from components.features import features
from components.features_shard import features_shard
from components.ingest import ingest
from components.materialize import materialize
from components.materialize_plan import materialize_plan
from components.materialize_shard import materialize_shard
from components.register import register
from components.split_shards import split_shards
from components.start_run import start_run
from components.summarize import summarize
from components.train import train
from components.training_set import training_set
from components.training_set_shard import training_set_shard
from components.tune import tune
from components.validate import validate
from mlstack.config import Settings
from pipelines.profile import config_version as version_of
from pipelines.tasks import configure_step, place

PIPELINE_NAME = "mlstack-training"


def build_training_pipeline(settings: Settings, fan_out: bool = True):  # -> GraphComponent
    """The training pipeline carrying `settings` as its profile; the parameters' defaults
    come from it. KFP caching is stated per task, with the reason next to it. `fan_out`:
    with `features.shards` > 1, one task per shard through `dsl.ParallelFor` (compiled for
    a cluster); else the shards run as processes inside the steps (the local runner)."""
    shards = settings.features.shards if fan_out else 1

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Purchase propensity: data, point-in-time features in Feast, baselines, "
        "tuning, training, evaluation, gate, MLflow registry.",
    )
    def training_pipeline(
        data_uri: str = settings.source.uri,
        note: str = "",
        max_trials: int = settings.tuning.max_trials,
        horizon_days: int = settings.features.horizon_days,
        config_version: str = version_of(settings.to_json()),
    ) -> str:
        """Train, evaluate and register a purchase-propensity model.

        Args:
            data_uri: The raw transaction log: a path in the image or an s3:// URI.
            note: The hypothesis of this run, kept with its MLflow run.
            max_trials: The tuning budget (trials).
            horizon_days: The label horizon: a purchase within this many days.
            config_version: The hash of the settings this pipeline was compiled with.

        Returns:
            The run summary as JSON.
        """

        def step(task, name: str, cache: bool):
            return place(task, settings, display_name=name, cache=cache)

        configured = configure_step(
            settings,
            config_version,
            data_uri=data_uri,
            max_trials=max_trials,
            horizon_days=horizon_days,
        )
        cfg = configured.output
        ingested = step(
            ingest(settings_json=cfg),
            "ingest",
            cache=False,  # reads data_uri, whose content KFP cannot see
        )
        checked = step(
            validate(settings_json=cfg, transactions=ingested.outputs["transactions"]),
            "validate",
            cache=True,  # a pure function of the transactions and the settings
        )
        data = checked.outputs["clean"]
        if shards > 1:
            built, labelled = by_shard(step, cfg, data, ingested.outputs["Output"], shards)
        else:
            built = step(
                features(
                    settings_json=cfg, transactions=data, data_version=ingested.outputs["Output"]
                ),
                "features",
                cache=False,  # writes the Feast offline source and applies the registry
            )
            labelled = step(
                training_set(
                    settings_json=cfg,
                    transactions=data,
                    feature_table=built.outputs["feature_table"],
                ),
                "training set",
                cache=True,  # joins the Feast data of its input feature table: new table, new run
            )
        table = built.outputs["feature_table"]
        dataset = labelled.outputs["dataset"]
        if shards > 1:
            online = materialize_by_shard(step, cfg, table, shards)
        else:
            online = step(
                materialize(settings_json=cfg, feature_table=table),
                "materialize",
                cache=False,  # writes the online store (Redis)
            )

        run = step(
            start_run(
                settings_json=cfg,
                note=note,
                transactions=data,
                feature_table=table,
                dataset=dataset,
            ),
            "mlflow run",
            cache=False,  # creates an MLflow run
        )
        run_id = run.output
        base = step(
            baselines(settings_json=cfg, dataset=dataset, run_id=run_id),
            "baselines",
            cache=False,  # logs into the MLflow run
        )
        tuned = step(
            tune(settings_json=cfg, dataset=dataset, run_id=run_id),
            "tune",
            cache=False,  # logs trials into the MLflow run; a Katib Experiment on a cluster
        )
        trained = step(
            train(
                settings_json=cfg,
                dataset=dataset,
                best_fit=tuned.outputs["best_fit"],  # in the graph: the best trial's fit
                run_id=run_id,
            ),
            "train",
            cache=False,  # logs into the MLflow run
        )
        challenger = trained.outputs["challenger"]
        evaluated = step(
            evaluate(
                settings_json=cfg,
                dataset=dataset,
                challenger=challenger,
                baselines=base.outputs["models"],
                run_id=run_id,
            ),
            "evaluate",
            cache=False,  # reads the champion from the MLflow registry, logs into the run
        )
        registered = step(
            register(
                settings_json=cfg,
                dataset=dataset,
                challenger=challenger,
                baselines=base.outputs["models"],
                test_metrics=evaluated.outputs["metrics"],
                evaluation_json=evaluated.outputs["Output"],
                run_id=run_id,
            ),
            "register",
            cache=False,  # registers a model version and moves the aliases
        )

        summary = step(
            summarize(
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
                best_fit=tuned.outputs["best_fit"],
                challenger=challenger,
                test_metrics=evaluated.outputs["metrics"],
                evaluation_report=evaluated.outputs["report"],
                evaluation_json=evaluated.outputs["Output"],
                registration_json=registered.output,
            ),
            "summary",
            cache=True,  # a pure function of the other steps' outputs
        )
        return summary.outputs["Output"]

    return training_pipeline


def by_shard(step, cfg, data, data_version, shards: int):  # -> (features task, training task)
    """The features and training-set tasks fanned out over the shards (`dsl.ParallelFor`),
    each collected (`dsl.Collected`) by a task with the single-table task's outputs."""
    split = step(
        split_shards(settings_json=cfg, transactions=data),
        "split by shard",
        cache=True,  # a pure function of the clean log and the settings
    )
    log = split.outputs["shards_log"]
    with dsl.ParallelFor(items=list(range(shards))) as shard:
        part = step(
            features_shard(settings_json=cfg, shards_log=log, shard=shard),
            "features of a shard",
            cache=True,  # a pure function of the shard's lines and the settings
        )
    built = step(
        collect_features(
            settings_json=cfg,
            transactions=data,
            data_version=data_version,
            shard_tables=dsl.Collected(part.outputs["shard_table"]),
            shard_results=dsl.Collected(part.outputs["Output"]),
        ),
        "features",
        cache=False,  # writes the Feast offline source and applies the registry
    )
    table = built.outputs["feature_table"]
    with dsl.ParallelFor(items=list(range(shards))) as shard:
        rows = step(
            training_set_shard(settings_json=cfg, shards_log=log, feature_table=table, shard=shard),
            "training set of a shard",
            cache=True,  # joins the Feast data of its input feature table: new table, new run
        )
    labelled = step(
        collect_training_set(settings_json=cfg, parts=dsl.Collected(rows.outputs["part"])),
        "training set",
        cache=True,  # a pure function of the shards' training rows
    )
    return built, labelled


def materialize_by_shard(step, cfg, table, shards: int):  # -> the collecting task
    """Online materialization fanned out over the shards (`dsl.ParallelFor`): planned once,
    one task per shard loading its partition, then a task recording the interval in the
    registry, whose output is the single-table task's."""
    planned = step(
        materialize_plan(settings_json=cfg, feature_table=table),
        "materialization plan",
        cache=False,  # reads the registry's last materialization
    )
    with dsl.ParallelFor(items=list(range(shards))) as shard:
        loaded = step(
            materialize_shard(settings_json=cfg, plan_json=planned.output, shard=shard),
            "materialize a shard",
            cache=False,  # writes the online store (Redis)
        )
    return step(
        collect_materialized(
            settings_json=cfg, plan_json=planned.output, shards_done=dsl.Collected(loaded.output)
        ),
        "materialize",
        cache=False,  # writes the registry's materialization intervals
    )
