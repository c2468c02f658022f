"""The compile profile's layering, the run parameters over it, and `mlstack compile`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from kfp import local
from typer.testing import CliRunner

from mlstack.cli import app
from mlstack.config import Settings
from pipelines.profile import (
    CLUSTER_PROFILE,
    config_version,
    deep_merge,
    profile_settings,
    resolve,
)
from tests.support.paths import CONFIG, PROJECT


def cluster(*overrides: str) -> Settings:
    return profile_settings(CONFIG, PROJECT / CLUSTER_PROFILE, list(overrides))


@pytest.mark.unit
def test_deep_merge_merges_mappings_and_replaces_the_rest() -> None:
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert deep_merge(base, {"a": {"c": [3]}, "e": 2}) == {"a": {"b": 1, "c": [3]}, "d": 1, "e": 2}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 1}  # not changed in place


@pytest.mark.unit
def test_layers_data_config_then_profile_then_set() -> None:
    settings = cluster(
        "mlflow.tracking_uri=http://127.0.0.1:5123", "pipeline.resources.cpu_limit=3"
    )
    # the profile over the data config, nested keys merged
    assert settings.mode == "cluster" and settings.cache is False
    assert str(settings.root) == "/app"
    assert settings.artifacts_dir == Path("/tmp/mlstack")
    assert settings.feast.config_file == "feature_store.cluster.yaml"
    assert settings.feast.feature_service == "customer_propensity_v1"  # data config
    assert settings.mlflow.registered_model == "mlstack-propensity"  # data config
    assert settings.source.uri == "/app/data/cdnow_master.txt.gz"
    assert settings.tuning.parallel_trials == 2  # data config (the default is 1)
    # --set over the profile, nested keys merged
    assert settings.mlflow.tracking_uri == "http://127.0.0.1:5123"
    resources = settings.pipeline.resources_for("ingest")
    assert (resources.cpu_limit, resources.memory_limit) == ("3", "3Gi")
    assert settings.pipeline.resources_for("tune").cpu_limit == "4"
    # a step override names only what differs from the default
    more = cluster("pipeline.step_resources.evaluate.memory_limit=5Gi")
    assert more.pipeline.resources_for("evaluate").memory_limit == "5Gi"
    assert more.pipeline.resources_for("evaluate").cpu_limit == "2"
    assert more.pipeline.resources_for("train").memory_limit == "6Gi"  # the profile's, kept


@pytest.mark.unit
def test_a_missing_or_malformed_profile_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="profile not found"):
        profile_settings(CONFIG, tmp_path / "nope.yaml")
    listed = tmp_path / "list.yaml"
    listed.write_text("- mode: cluster\n")
    with pytest.raises(ValueError, match="not a mapping"):
        profile_settings(CONFIG, listed)


@pytest.fixture(scope="module")
def profile() -> str:
    return cluster().to_json()


@pytest.mark.unit
def test_parameters_override_the_profile(profile: str) -> None:
    run = resolve(
        profile,
        config_version(profile),
        data_uri="s3://raw/transactions.csv",
        max_trials=3,
        horizon_days=14,
        model_alias="challenger",
        window_days=3,
        snapshot_date="1998-06-01",
    )
    assert run.source.uri == "s3://raw/transactions.csv"
    assert run.tuning.max_trials == 3
    assert run.features.horizon_days == 14
    assert run.serving.model_alias == "challenger"
    assert run.monitoring.window_days == 3
    # None keeps the profile's value; the rest of the profile is untouched
    same = resolve(profile, "", data_uri=None, max_trials=None)
    assert same.to_json() == profile


@pytest.mark.unit
@pytest.mark.parametrize(
    ("parameters", "named"),
    [
        ({"max_trials": 0}, "max_trials=0"),
        ({"horizon_days": -5}, "horizon_days=-5"),
        ({"window_days": 0}, "window_days=0"),
        ({"data_uri": " "}, "data_uri is empty"),
        ({"model_alias": ""}, "model_alias is empty"),
        ({"snapshot_date": "soon"}, "snapshot_date='soon'"),
    ],
)
def test_a_bad_parameter_value_is_named(profile: str, parameters: dict, named: str) -> None:
    with pytest.raises(ValueError, match=f"pipeline parameter {named}"):
        resolve(profile, config_version(profile), **parameters)


@pytest.mark.unit
def test_a_config_version_other_than_the_carried_one_is_an_error(profile: str) -> None:
    with pytest.raises(ValueError, match="pipeline parameter config_version='abc'"):
        resolve(profile, "abc")


@pytest.mark.component
def test_the_configure_step_on_the_local_runner(project, capfd) -> None:
    from components.configure import configure

    settings = project()
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(settings.root))
    text = settings.to_json()
    given = {
        "profile": text,
        "config_version": config_version(text),
        "data_uri": settings.source.uri,
        "max_trials": 5,
        "horizon_days": 30,
        "model_alias": "champion",
        "window_days": 7,
        "snapshot_date": "",
    }
    resolved = Settings.from_json(configure(**given).output)
    assert resolved.tuning.max_trials == 5
    assert resolved.source.uri == settings.source.uri
    with pytest.raises(RuntimeError):
        configure(**{**given, "horizon_days": 0})
    assert "pipeline parameter horizon_days=0" in capfd.readouterr().out


@pytest.mark.component
def test_the_compile_command_with_loopback_endpoints(tmp_path: Path) -> None:
    done = CliRunner().invoke(
        app,
        [
            "--config",
            str(CONFIG),
            "--set",
            "mlflow.tracking_uri=http://127.0.0.1:5123",
            "compile",
            "--out-dir",
            str(tmp_path),
            "--profile",
            str(PROJECT / CLUSTER_PROFILE),
            "--set",
            "kfp.host=http://127.0.0.1:8123",
        ],
    )
    assert done.exit_code == 0, done.output
    names = sorted(path.name for path in tmp_path.glob("*.yaml"))
    assert names == ["batch_scoring.yaml", "monitoring.yaml", "training.yaml"]
    ir = next(yaml.safe_load_all((tmp_path / "training.yaml").read_text()))
    constant = ir["root"]["dag"]["tasks"]["configure"]["inputs"]["parameters"]["profile"]
    carried = json.loads(constant["runtimeValue"]["constant"])
    assert carried["mlflow"]["tracking_uri"] == "http://127.0.0.1:5123"
    assert carried["kfp"]["host"] == "http://127.0.0.1:8123"
    assert carried["mode"] == "cluster"
    version = ir["root"]["inputDefinitions"]["parameters"]["config_version"]["defaultValue"]
    assert f"config_version {version} (mode cluster)" in done.output

    bad = CliRunner().invoke(
        app, ["--config", str(CONFIG), "compile", "--out-dir", str(tmp_path), "--profile", "x.yaml"]
    )
    assert bad.exit_code != 0 and "profile not found" in bad.output
