"""Tuning: one search space behind Optuna and Katib, the Experiment, and the local study."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from kubeflow.katib import ApiClient, V1beta1Experiment, V1beta1FeasibleSpace
from kubeflow.katib.utils.utils import FakeResponse
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from mlstack.config import Settings, load_settings
from mlstack.tuning.katib import (
    PRIMARY_CONTAINER,
    TRIAL_ENTRYPOINT,
    build_experiment,
    experiment_manifest,
    parse_trial_args,
    trial_command,
    write_manifest,
)
from mlstack.tuning.katib_controller import (
    DEFAULT_METRICS_FILTER,
    experiment_metric_names,
    parse_stdout_metrics,
    trial_container,
    trial_run_spec,
)
from mlstack.tuning.katib_runs import best_trial
from mlstack.tuning.local import StudyResult, TuningError, run_study
from mlstack.tuning.space import (
    GRID_LOG_POINTS,
    KATIB_ALGORITHMS,
    as_text,
    grid,
    katib_parameters,
    log_scale_names,
    optuna_distributions,
    pruner,
    sampler,
    starting_point,
    suggest,
    tpe_startup_trials,
)
from mlstack.tuning.trial import metric_line
from tests.support.paths import CONFIG, PROJECT

pytestmark = pytest.mark.unit

MANIFEST = PROJECT / "manifests" / "katib-experiment.yaml"
REFERENCE = re.compile(r"\$\{trialParameters\.([^}]+)\}")

# a small space with every kind of parameter, for the local studies
TOY_SPACE = (
    "tuning.space=["
    "{name: x, type: float, low: -10, high: 10},"
    "{name: n, type: int, low: 0, high: 20},"
    "{name: kind, type: categorical, choices: [good, bad]}]"
)


def settings(*overrides: str) -> Settings:
    """The bundled config with `--set`-style overrides; trials run one at a time unless an
    override says otherwise, so which trial sees what is deterministic."""
    return load_settings(CONFIG, ["tuning.parallel_trials=1", *overrides])


def toy_objective(params: dict[str, Any], report: Any) -> float:
    """Best at x=3, n=7, kind=good (value 0); reports three improving stages."""
    final = -((params["x"] - 3) ** 2) - (params["n"] - 7) ** 2 - 50 * (params["kind"] == "bad")
    for step in range(3):
        report(step, final - (2 - step))
    return final


# -- one space ----------------------------------------------------------------------------
def katib_by_name(s: Settings, **kwargs: Any) -> dict[str, Any]:
    return {p["name"]: p for p in katib_parameters(s.tuning.space, **kwargs)}


def test_optuna_and_katib_parameters_come_from_the_same_space() -> None:
    s = settings()
    dists = optuna_distributions(s.tuning.space)
    katib = katib_by_name(s)
    assert list(dists) == list(katib) == [p.name for p in s.tuning.space]
    katib_type = {IntDistribution: "int", FloatDistribution: "double"}
    for name, dist in dists.items():
        feasible = katib[name]["feasibleSpace"]
        assert katib[name]["parameterType"] == katib_type[type(dist)]
        assert (float(feasible["min"]), float(feasible["max"])) == (dist.low, dist.high)
        spec = next(p for p in s.tuning.space if p.name == name)
        assert dist.log == spec.log
        assert feasible["distribution"] == ("logUniform" if dist.log else "uniform")
        if spec.step is not None:
            assert float(feasible["step"]) == dist.step == spec.step
        else:
            assert "step" not in feasible


def test_changing_the_space_in_settings_changes_optuna_and_katib() -> None:
    s = settings(
        "tuning.space=[{name: depth, type: int, low: 2, high: 8, step: 2},"
        "{name: rate, type: float, low: 0.001, high: 0.1, log: true},"
        "{name: loss, type: categorical, choices: [log_loss, 1, 2.5]}]"
    )
    dists = optuna_distributions(s.tuning.space)
    katib = katib_by_name(s)
    assert list(dists) == list(katib) == ["depth", "rate", "loss"]
    assert dists["depth"] == IntDistribution(2, 8, step=2)
    assert dists["rate"] == FloatDistribution(0.001, 0.1, log=True)
    assert dists["loss"] == CategoricalDistribution(["log_loss", 1, 2.5])
    assert katib["depth"] == {
        "name": "depth",
        "parameterType": "int",
        "feasibleSpace": {"min": "2", "max": "8", "step": "2", "distribution": "uniform"},
    }
    assert katib["rate"] == {
        "name": "rate",
        "parameterType": "double",
        "feasibleSpace": {"min": "0.001", "max": "0.1", "distribution": "logUniform"},
    }
    assert katib["loss"] == {
        "name": "loss",
        "parameterType": "categorical",
        "feasibleSpace": {"list": ["log_loss", "1", "2.5"]},
    }
    manifest = experiment_manifest(s)
    assert [p["name"] for p in manifest["spec"]["parameters"]] == ["depth", "rate", "loss"]
    assert [p["name"] for p in manifest["spec"]["trialTemplate"]["trialParameters"]] == [
        "depth",
        "rate",
        "loss",
    ]


def test_bad_parameter_specs_are_named() -> None:
    with pytest.raises(ValueError, match="parameter rate"):
        optuna_distributions(
            settings(
                "tuning.space=[{name: rate, type: float, low: 0.1, high: 1, log: true, step: 0.1}]"
            ).tuning.space
        )
    with pytest.raises(ValueError, match="parameter depth: int parameter needs a whole-number"):
        optuna_distributions(
            settings("tuning.space=[{name: depth, type: int, low: 1.5, high: 4}]").tuning.space
        )


def test_grid_points_from_steps_log_scales_and_choices() -> None:
    space = settings(
        "tuning.space=[{name: learning_rate, type: float, low: 0.02, high: 0.3, log: true},"
        "{name: max_iter, type: int, low: 100, high: 400, step: 100},"
        "{name: max_leaf_nodes, type: int, low: 15, high: 63, step: 16},"
        "{name: min_samples_leaf, type: int, low: 20, high: 400, log: true},"
        "{name: l2_regularization, type: float, low: 0.0001, high: 1.0, log: true}]"
    ).tuning.space
    points = grid(space)
    assert points["max_iter"] == [100, 200, 300, 400]
    assert points["max_leaf_nodes"] == [15, 31, 47, 63]
    assert len(points["learning_rate"]) == GRID_LOG_POINTS
    assert points["learning_rate"][0] == 0.02 and points["learning_rate"][-1] == 0.3
    assert points["l2_regularization"] == [0.0001, 0.001, 0.01, 0.1, 1.0]
    assert points["min_samples_leaf"][0] == 20 and points["min_samples_leaf"][-1] == 400
    assert all(isinstance(v, int) for v in points["min_samples_leaf"])
    steps = grid(
        settings(
            "tuning.space=[{name: frac, type: float, low: 0.1, high: 0.5, step: 0.1},"
            "{name: kind, type: categorical, choices: [a, b]}]"
        ).tuning.space
    )
    assert steps == {"frac": [0.1, 0.2, 0.3, 0.4, 0.5], "kind": ["a", "b"]}


def test_grid_without_step_or_log_names_the_parameter() -> None:
    s = settings("tuning.space=[{name: frac, type: float, low: 0.1, high: 0.9}]")
    with pytest.raises(ValueError, match="parameter frac: grid search needs a `step`"):
        grid(s.tuning.space)


def test_katib_grid_uses_exactly_the_local_grid() -> None:
    s = settings("tuning.algorithm=grid")
    katib = katib_by_name(s, grid_points=True)
    for name, points in grid(s.tuning.space).items():
        assert katib[name]["parameterType"] == "discrete"
        assert katib[name]["feasibleSpace"] == {"list": [as_text(p) for p in points]}
    manifest = experiment_manifest(s)
    assert manifest["spec"]["algorithm"] == {"algorithmName": "grid"}
    assert {p["parameterType"] for p in manifest["spec"]["parameters"]} == {"discrete"}


def test_samplers_and_pruners_follow_settings() -> None:
    assert isinstance(sampler(settings().tuning), optuna.samplers.TPESampler)
    assert isinstance(
        sampler(settings("tuning.algorithm=random").tuning), optuna.samplers.RandomSampler
    )
    assert isinstance(
        sampler(settings("tuning.algorithm=grid").tuning), optuna.samplers.GridSampler
    )
    median = pruner(settings("tuning.early_stopping_min_trials=5").tuning)
    assert isinstance(median, optuna.pruners.MedianPruner)
    assert median._n_startup_trials == 5
    assert isinstance(
        pruner(settings("tuning.early_stopping=none").tuning), optuna.pruners.NopPruner
    )


def test_katib_algorithm_names() -> None:
    assert KATIB_ALGORITHMS == {"tpe": "tpe", "random": "random", "grid": "grid"}
    for algorithm, katib_name in KATIB_ALGORITHMS.items():
        spec = experiment_manifest(settings(f"tuning.algorithm={algorithm}", "tuning.seed=7"))
        assert spec["spec"]["algorithm"]["algorithmName"] == katib_name
        expected = [] if algorithm == "grid" else [{"name": "random_state", "value": "7"}]
        assert spec["spec"]["algorithm"].get("algorithmSettings", []) == expected


# -- the Experiment -----------------------------------------------------------------------
def deserialize(manifest: dict[str, Any]) -> V1beta1Experiment:
    return ApiClient().deserialize(FakeResponse(manifest), V1beta1Experiment)


def sdk_view(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest as the installed Katib SDK's models can hold it: without
    `feasibleSpace.distribution` when they predate it (Katib SDK < 0.18)."""
    if "distribution" in V1beta1FeasibleSpace.attribute_map:
        return manifest
    view = json.loads(json.dumps(manifest))
    for parameter in view["spec"]["parameters"]:
        parameter["feasibleSpace"].pop("distribution", None)
    return view


def test_experiment_round_trips_through_the_katib_models(tmp_path: Path) -> None:
    s = settings()
    manifest = experiment_manifest(s)
    restored = deserialize(manifest)
    assert isinstance(restored, V1beta1Experiment)
    assert sort_keys(ApiClient().sanitize_for_serialization(restored)) == sort_keys(
        sdk_view(manifest)
    )
    path = write_manifest(s, tmp_path / "experiment.yaml")
    assert yaml.safe_load(path.read_text()) == manifest
    from_yaml = deserialize(yaml.safe_load(path.read_text()))
    assert from_yaml.spec.trial_template.primary_container_name == PRIMARY_CONTAINER
    assert from_yaml.spec.max_trial_count == s.tuning.max_trials


def sort_keys(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True))


def test_log_scale_parameters_are_log_uniform_on_katib(caplog: pytest.LogCaptureFixture) -> None:
    s = settings()
    with caplog.at_level(logging.WARNING, logger="mlstack.tuning.katib"):
        manifest = experiment_manifest(s)
    assert caplog.records == [], "nothing is sampled uniformly that the space puts on a log scale"
    distributions = {
        p["name"]: p["feasibleSpace"].get("distribution") for p in manifest["spec"]["parameters"]
    }
    log_scale = set(log_scale_names(s.tuning.space))
    assert log_scale == {"learning_rate", "min_samples_leaf", "l2_regularization"}
    assert {n for n, d in distributions.items() if d == "logUniform"} == log_scale
    assert {n for n, d in distributions.items() if d == "uniform"} == (
        {p.name for p in s.tuning.space} - log_scale
    )
    # a categorical parameter and a grid's discrete lists carry no distribution
    mixed = (
        "tuning.space=[{name: x, type: float, low: -10, high: 10},"
        "{name: n, type: int, low: 1, high: 20, log: true},"
        "{name: kind, type: categorical, choices: [good, bad]}]"
    )
    parameters = experiment_manifest(settings(mixed))["spec"]["parameters"]
    assert [p["feasibleSpace"].get("distribution") for p in parameters] == [
        "uniform",
        "logUniform",
        None,
    ]
    gridded = experiment_manifest(settings("tuning.algorithm=grid"))["spec"]["parameters"]
    assert all("distribution" not in p["feasibleSpace"] for p in gridded)


def test_experiment_spec_follows_settings() -> None:
    s = settings(
        "tuning.direction=minimize",
        "tuning.objective=brier",
        "tuning.max_trials=20",
        "tuning.parallel_trials=4",
        "tuning.max_failed_trials=2",
        "tuning.early_stopping_min_trials=5",
        "katib.namespace=ml",
        "katib.experiment_name=propensity-hpo",
    )
    manifest = experiment_manifest(s)
    assert (manifest["apiVersion"], manifest["kind"]) == ("kubeflow.org/v1beta1", "Experiment")
    assert manifest["metadata"] == {"name": "propensity-hpo", "namespace": "ml"}
    spec = manifest["spec"]
    assert spec["objective"]["type"] == "minimize"
    assert spec["objective"]["objectiveMetricName"] == "brier"
    assert spec["objective"]["metricStrategies"] == [{"name": "brier", "value": "latest"}]
    assert (spec["maxTrialCount"], spec["parallelTrialCount"], spec["maxFailedTrialCount"]) == (
        20,
        4,
        2,
    )
    assert spec["metricsCollectorSpec"] == {"collector": {"kind": "StdOut"}}
    assert spec["earlyStopping"] == {
        "algorithmName": "medianstop",
        "algorithmSettings": [{"name": "min_trials_required", "value": "5"}],
    }
    assert (
        "earlyStopping" not in experiment_manifest(settings("tuning.early_stopping=none"))["spec"]
    )


def test_a_small_trial_budget_caps_failures_and_parallelism() -> None:
    """A run's max_trials (a pipeline parameter) below the configured failure allowance or
    parallelism still gives an Experiment Katib accepts."""
    spec = build_experiment(
        settings("tuning.max_trials=2", "tuning.max_failed_trials=3", "tuning.parallel_trials=3")
    )["spec"]
    assert (spec["maxTrialCount"], spec["maxFailedTrialCount"], spec["parallelTrialCount"]) == (
        2,
        2,
        2,
    )


def test_settings_katib_would_reject_are_named() -> None:
    with pytest.raises(ValueError, match="exceeds the 4 grid points"):
        build_experiment(
            settings(
                "tuning.algorithm=grid",
                "tuning.max_trials=5",
                "tuning.space=[{name: d, type: int, low: 1, high: 4, step: 1}]",
            )
        )


def test_every_trial_reference_resolves() -> None:
    s = settings()
    template = experiment_manifest(s)["spec"]["trialTemplate"]
    declared = [p["name"] for p in template["trialParameters"]]
    used = set(REFERENCE.findall(json.dumps(template["trialSpec"])))
    space = {p.name for p in s.tuning.space}
    assert used == set(declared), "every ${trialParameters.X} is declared, every one is used"
    assert len(declared) == len(set(declared))
    assert {p["reference"] for p in template["trialParameters"]} == space
    assert all(p["description"] for p in template["trialParameters"])


def test_trial_pod() -> None:
    s = settings("pipeline.base_image=registry.local/mlstack:test", "katib.service_account=hpo")
    template = experiment_manifest(s)["spec"]["trialTemplate"]
    job = template["trialSpec"]
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    assert "name" not in job.get("metadata", {}), "Katib names trial Jobs itself"
    pod = job["spec"]["template"]
    assert pod["metadata"]["annotations"] == {"sidecar.istio.io/inject": "false"}
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["serviceAccountName"] == "hpo"
    (container,) = pod["spec"]["containers"]
    assert container["name"] == template["primaryContainerName"] == "training"
    assert container["image"] == "registry.local/mlstack:test"
    assert container["command"] == trial_command(s)
    # the entrypoint reads the training set named in the settings, then one flag per parameter
    assert container["command"][:4] == [*TRIAL_ENTRYPOINT, "--dataset", s.katib.dataset_uri]
    assert container["command"][4] == "--learning-rate=${trialParameters.learning_rate}"
    assert set(container["resources"]) == {"requests", "limits"}
    custom = build_experiment(s, ["mlstack", "--config", "/etc/mlstack.yaml", "tune-trial"])
    (custom_container,) = custom["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"][
        "containers"
    ]
    command = custom_container["command"]
    assert "args" not in custom_container, "the whole program is the command: no ENTRYPOINT"
    assert command[:4] == ["mlstack", "--config", "/etc/mlstack.yaml", "tune-trial"]
    assert len(command) == 4 + len(s.tuning.space)


def test_committed_manifest_matches_the_bundled_config() -> None:
    committed = yaml.safe_load(MANIFEST.read_text())
    assert committed == experiment_manifest(load_settings(CONFIG)), (
        "re-render manifests/katib-experiment.yaml with mlstack.tuning.katib.write_manifest"
    )


# -- the trial command line -----------------------------------------------------------------
def substitute(command: list[str], params: dict[str, Any]) -> list[str]:
    """What Katib does to the trial template: each reference replaced by the value's text."""
    return [REFERENCE.sub(lambda m: as_text(params[m.group(1)]), arg) for arg in command]


def test_parse_trial_args_round_trips_the_trial_command() -> None:
    s = settings(
        "tuning.space=[{name: learning_rate, type: float, low: 0.001, high: 0.3, log: true},"
        "{name: max_iter, type: int, low: 100, high: 400, step: 100},"
        "{name: loss, type: categorical, choices: [log_loss, 2]}]"
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(20):
        params = suggest(study.ask(), s.tuning.space)
        argv = substitute(trial_command(s, entrypoint=[]), params)
        parsed = parse_trial_args(argv, s.tuning.space)
        assert parsed == params
        assert [type(v) for v in parsed.values()] == [type(v) for v in params.values()]


def test_parse_trial_args_rejects_what_the_space_does_not_have() -> None:
    space = settings().tuning.space
    good = substitute(
        trial_command(settings(), entrypoint=[]),
        {
            "learning_rate": 0.1,
            "max_iter": 200,
            "max_leaf_nodes": 31,
            "min_samples_leaf": 40,
            "l2_regularization": 0.01,
        },
    )
    assert parse_trial_args(good, space)["max_iter"] == 200
    with pytest.raises(ValueError, match="unexpected trial argument '--depth=3'"):
        parse_trial_args([*good, "--depth=3"], space)
    with pytest.raises(ValueError, match=r"missing \['l2_regularization'\]"):
        parse_trial_args(good[:-1], space)
    with pytest.raises(ValueError, match=r"parameter max_iter: '2\.5' is not a whole number"):
        parse_trial_args([a if "max-iter" not in a else "--max-iter=2.5" for a in good], space)


# -- a trial as Katib runs and reads it -------------------------------------------------------
PARAMS = {
    "learning_rate": 0.0612,
    "max_iter": 300,
    "max_leaf_nodes": 16,
    "min_samples_leaf": 437,
    "l2_regularization": 1e-05,
}


def test_trial_container_substitutes_as_katib_does() -> None:
    s = settings("katib.dataset_uri=s3://bucket/runs/7/training_set.parquet")
    experiment = experiment_manifest(s)
    container = trial_container(experiment, PARAMS, trial_name="mlstack-tuning-x7k2p")
    assert container["name"] == PRIMARY_CONTAINER
    assert container["image"] == s.pipeline.base_image
    # the whole program is in `command`: Docker semantics (no ENTRYPOINT reliance) work too
    assert container["command"] == [
        "mlstack",
        "tune-trial",
        "--dataset",
        "s3://bucket/runs/7/training_set.parquet",
        "--learning-rate=0.0612",
        "--max-iter=300",
        "--max-leaf-nodes=16",
        "--min-samples-leaf=437",
        "--l2-regularization=1e-05",
    ]
    assert container["args"] == []
    assert container["env"] == [{"name": "OMP_NUM_THREADS", "value": "2"}]
    # the substituted command is what the trial parses back into the same typed values
    assert parse_trial_args(container["command"][4:], s.tuning.space) == PARAMS
    # Katib's assignments are text: given as text, they are used as they are
    texts = {k: as_text(v) for k, v in PARAMS.items()}
    assert trial_container(experiment, texts) == trial_container(experiment, PARAMS)
    job = trial_run_spec(experiment, PARAMS, trial_name="mlstack-tuning-x7k2p")
    assert job["metadata"] == {"name": "mlstack-tuning-x7k2p", "namespace": s.katib.namespace}
    assert "${" not in json.dumps(job)


def test_trial_substitution_errors_and_metadata_references() -> None:
    experiment = experiment_manifest(settings())
    with pytest.raises(ValueError, match="references 'max_iter', which is not among"):
        trial_container(experiment, {k: v for k, v in PARAMS.items() if k != "max_iter"})
    with pytest.raises(ValueError, match="are not all trial parameters"):
        trial_container(experiment, {**PARAMS, "depth": 3})
    with pytest.raises(ValueError, match="not valid JSON"):
        trial_container(experiment, {**PARAMS, "max_iter": 'a"b'})
    # ${trialSpec.Name} and friends resolve to the trial's metadata, as in Katib
    template = experiment["spec"]["trialTemplate"]
    template["trialParameters"].append({"name": "trialName", "reference": "${trialSpec.Name}"})
    template["trialParameters"].append(
        {"name": "inject", "reference": "${trialSpec.Annotations[sidecar.istio.io/inject]}"}
    )
    template["trialSpec"]["metadata"] = {"annotations": {"sidecar.istio.io/inject": "false"}}
    pod = template["trialSpec"]["spec"]["template"]["spec"]
    pod["containers"][0]["env"].append({"name": "TRIAL", "value": "${trialParameters.trialName}"})
    pod["containers"][0]["args"] = ["--inject=${trialParameters.inject}"]
    container = trial_container(experiment, PARAMS, trial_name="t-1", namespace="hpo")
    assert {"name": "TRIAL", "value": "t-1"} in container["env"]
    assert container["args"] == ["--inject=false"]
    template["trialParameters"].append({"name": "bad", "reference": "${trialSpec.Labels[x]}"})
    with pytest.raises(ValueError, match="illegal reference of trial metadata"):
        trial_container(experiment, PARAMS)


def test_a_trial_command_the_shell_would_split_is_refused() -> None:
    with pytest.raises(ValueError, match=r"'s3://bucket/my data\.parquet' needs shell quoting"):
        build_experiment(settings("katib.dataset_uri=s3://bucket/my data.parquet"))
    with pytest.raises(ValueError, match="'log loss' needs shell quoting"):
        build_experiment(
            settings("tuning.space=[{name: loss, type: categorical, choices: [log loss, 2]}]")
        )


def test_parse_stdout_metrics_reads_what_the_trial_prints() -> None:
    assert DEFAULT_METRICS_FILTER == r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"
    lines: list[str] = []
    lines.append("INFO fitting 3 stages (max_iter=300)")  # not a metric Katib collects
    for value in (0.31, 0.352, 0.361234):
        lines.append(metric_line("pr_auc", value))
    experiment = experiment_manifest(settings())
    metrics = experiment_metric_names(experiment)
    assert metrics == ["pr_auc"]
    assert parse_stdout_metrics("\n".join(lines), metrics) == {"pr_auc": "0.361234"}


def test_parse_stdout_metrics_follows_katibs_filter() -> None:
    text = "\n".join(
        [
            "2024-05-01T10:00:00Z loss=0.3 accuracy=.98",
            "epoch 2: loss = -7.53e-05, accuracy=1E0",
            "accuracy_top5=0.99 my-metric=+1.23E10",
            "pr_auc=nan",  # the filter matches with no digits: Katib records ""
        ]
    )
    found = parse_stdout_metrics(text, ["loss", "accuracy", "my-metric", "pr_auc"])
    assert found == {"loss": "-7.53e-05", "accuracy": "1E0", "my-metric": "+1.23E10", "pr_auc": ""}
    # the objective never printed: Katib records it as unavailable, and nothing else
    assert parse_stdout_metrics("loss=0.3\n", ["pr_auc", "loss"]) == {"pr_auc": "unavailable"}
    assert parse_stdout_metrics("pr_auc: 0.4", ["pr_auc"]) == {"pr_auc": "unavailable"}
    # Go's \s is ASCII whitespace without the vertical tab; \w is ASCII
    assert parse_stdout_metrics("pr_auc\v=0.4", ["pr_auc"]) == {"pr_auc": "unavailable"}
    assert parse_stdout_metrics("pr_auc\t= 0.4", ["pr_auc"]) == {"pr_auc": "0.4"}
    assert parse_stdout_metrics("é=1 pr_auc=0.5", ["pr_auc", "é"]) == {"pr_auc": "0.5"}
    custom = parse_stdout_metrics("{pr_auc: 0.42}", ["pr_auc"], [r"(\w+):\s*([\d.]+)"])
    assert custom == {"pr_auc": "0.42"}


def test_best_trial_is_typed_through_the_space() -> None:
    s = settings()
    experiment = {
        "status": {
            "currentOptimalTrial": {
                "bestTrialName": "mlstack-tuning-abc",
                "parameterAssignments": [
                    {"name": "learning_rate", "value": "0.05"},
                    {"name": "max_iter", "value": "300"},
                    {"name": "max_leaf_nodes", "value": "31"},
                    {"name": "min_samples_leaf", "value": "57"},
                    {"name": "l2_regularization", "value": "0.001"},
                ],
                "observation": {
                    "metrics": [{"name": "pr_auc", "latest": "0.351", "max": "0.36", "min": "0.2"}]
                },
            }
        }
    }
    params, value, name = best_trial(experiment, s)
    assert params == {
        "learning_rate": 0.05,
        "max_iter": 300,
        "max_leaf_nodes": 31,
        "min_samples_leaf": 57,
        "l2_regularization": 0.001,
    }
    assert isinstance(params["max_iter"], int)
    assert (value, name) == (0.351, "mlstack-tuning-abc")


# -- the local study ----------------------------------------------------------------------
def test_tpe_study_finds_the_good_region() -> None:
    s = settings(TOY_SPACE, "tuning.max_trials=60", "tuning.early_stopping=none")
    result = run_study(s.tuning, toy_objective)
    assert isinstance(result, StudyResult)
    assert (result.algorithm, result.direction) == ("tpe", "maximize")
    assert result.best_params["kind"] == "good"
    assert abs(result.best_params["x"] - 3) < 1.5 and abs(result.best_params["n"] - 7) <= 2
    assert result.best_value > -5
    assert len(result.trials) == 60 and result.n_failed == result.n_pruned == 0
    assert set(result.trials[0]) == {"number", "params", "value", "state"}


def test_the_starting_point_is_the_defaults_moved_onto_the_space() -> None:
    space = settings().tuning.space  # max_leaf_nodes 8..32 step 8, min_samples_leaf 100..2000
    defaults = {"max_leaf_nodes": 15, "min_samples_leaf": 5000, "learning_rate": 0.05, "x": 1}
    assert starting_point(space, defaults) == {
        "max_leaf_nodes": 16,  # rounded to the step
        "min_samples_leaf": 2000,  # clipped to the bound
        "learning_rate": 0.05,
    }
    kinds = settings(TOY_SPACE).tuning.space
    assert starting_point(kinds, {"kind": "good"}) == {"kind": "good"}
    assert starting_point(kinds, {"kind": "unheard-of"}) == {}


def test_the_first_trial_tries_the_model_defaults() -> None:
    from mlstack.models.candidates import DEFAULT_PARAMS

    s = settings("tuning.max_trials=4", "tuning.early_stopping=none")
    seen: list[dict[str, Any]] = []

    def objective(params: dict[str, Any], report: Any) -> float:
        seen.append(params)
        return -abs(params["learning_rate"] - 0.2)

    run_study(s.tuning, objective)
    expected = starting_point(s.tuning.space, DEFAULT_PARAMS["gradient_boosting"])
    assert seen[0] == expected and len(seen) == 4
    assert expected["learning_rate"] == DEFAULT_PARAMS["gradient_boosting"]["learning_rate"]
    assert tpe_startup_trials(12) == 4 and tpe_startup_trials(100) == 10


def test_random_and_grid_are_selectable() -> None:
    random = run_study(
        settings(TOY_SPACE, "tuning.algorithm=random", "tuning.max_trials=10").tuning, toy_objective
    )
    assert random.algorithm == "random" and len(random.trials) == 10
    grid_settings = settings(
        "tuning.algorithm=grid",
        "tuning.max_trials=50",
        "tuning.early_stopping=none",
        "tuning.space=[{name: x, type: float, low: 1, high: 4, step: 1},"
        "{name: n, type: int, low: 5, high: 9, step: 2},"
        "{name: kind, type: categorical, choices: [good, bad]}]",
    )
    result = run_study(grid_settings.tuning, toy_objective)
    assert result.algorithm == "grid"
    visited = {(t["params"]["x"], t["params"]["n"], t["params"]["kind"]) for t in result.trials}
    assert len(result.trials) == len(visited) == 4 * 3 * 2, "every grid point once, then stop"
    assert result.best_params == {"x": 3.0, "n": 7, "kind": "good"}


def test_minimize_follows_the_direction() -> None:
    s = settings(
        TOY_SPACE, "tuning.direction=minimize", "tuning.max_trials=30", "tuning.early_stopping=none"
    )
    result = run_study(s.tuning, toy_objective)
    assert result.direction == "minimize"
    assert result.best_value == min(t["value"] for t in result.trials)


def test_median_pruning_stops_a_bad_trial() -> None:
    overrides = (
        "tuning.space=[{name: x, type: float, low: 0, high: 1}]",
        "tuning.algorithm=random",
        "tuning.max_trials=6",
        "tuning.early_stopping_min_trials=3",
    )
    calls: list[int] = []
    steps_run: dict[int, int] = {}

    def objective(params: dict[str, Any], report: Any) -> float:
        call = len(calls)
        calls.append(call)
        bad = call == 4
        for step in range(5):
            steps_run[call] = step
            report(step, 0.01 if bad else 0.8 + 0.01 * step)
        return 0.01 if bad else 0.85

    result = run_study(settings(*overrides).tuning, objective)
    states = [t["state"] for t in result.trials]
    assert states == ["complete"] * 4 + ["pruned", "complete"]
    assert result.n_pruned == 1 and steps_run[4] == 0, "pruned at its first report"
    assert result.trials[4]["value"] == 0.01, "a pruned trial keeps its last reported value"
    calls.clear()
    without = run_study(settings(*overrides, "tuning.early_stopping=none").tuning, objective)
    assert without.n_pruned == 0 and len(without.trials) == 6


def test_failed_trials_within_the_budget_are_counted() -> None:
    def objective(params: dict[str, Any], report: Any) -> float:
        if params["kind"] == "bad":
            raise RuntimeError("training diverged")
        return toy_objective(params, report)

    s = settings(
        TOY_SPACE,
        "tuning.algorithm=random",
        "tuning.max_trials=12",
        "tuning.max_failed_trials=12",
        "tuning.early_stopping=none",
    )
    result = run_study(s.tuning, objective)
    failed = [t for t in result.trials if t["state"] == "fail"]
    assert result.n_failed == len(failed) > 0
    assert all(t["params"]["kind"] == "bad" and t["value"] is None for t in failed)
    assert result.best_params["kind"] == "good"


def test_failed_trial_budget_stops_the_study_with_a_clear_error() -> None:
    calls: list[int] = []

    def objective(params: dict[str, Any], report: Any) -> float:
        calls.append(1)
        raise ValueError("feature table is empty")

    s = settings(TOY_SPACE, "tuning.max_trials=12", "tuning.max_failed_trials=2")
    with pytest.raises(TuningError) as err:
        run_study(s.tuning, objective)
    message = str(err.value)
    assert "3 of 3 trials failed" in message
    assert "tuning.max_failed_trials=2" in message
    assert "ValueError: feature table is empty" in message
    assert len(calls) == 3, "the study stops once the budget is exceeded"


def test_no_completed_trial_is_an_error() -> None:
    def objective(params: dict[str, Any], report: Any) -> float:
        raise RuntimeError("out of memory")

    s = settings(TOY_SPACE, "tuning.max_trials=2", "tuning.max_failed_trials=2")
    with pytest.raises(TuningError, match=r"no trial completed \(0 pruned, 2 failed"):
        run_study(s.tuning, objective)


def test_on_trial_is_called_after_every_trial(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[tuple[int, dict[str, Any], float | None, str]] = []
    s = settings(
        TOY_SPACE, "tuning.algorithm=random", "tuning.max_trials=8", "tuning.parallel_trials=2"
    )
    verbosity = optuna.logging.get_verbosity()
    with caplog.at_level(logging.INFO, logger="mlstack.tuning.local"):
        result = run_study(s.tuning, toy_objective, on_trial=lambda *args: seen.append(args))
    assert optuna.logging.get_verbosity() == verbosity, "Optuna's verbosity is restored"
    assert sorted(number for number, *_ in seen) == list(range(8))
    for number, params, value, state in seen:
        trial = result.trials[number]
        assert (params, value, state) == (trial["params"], trial["value"], trial["state"])
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("trial ")]
    assert len(lines) == 8 and lines[-1].startswith("trial 8/8")
    assert "best pr_auc=" in lines[-1] and "x=" in lines[-1]
