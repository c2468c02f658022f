"""run_katib against an HTTP double of the Kubernetes API serving the Katib Experiment CRD
(tests/support/katib_api.py, on loopback); the real KatibClient and kubernetes client talk to
it through a ``Configuration(host=...)``."""

from __future__ import annotations

import pytest
from kubeflow.katib import KatibClient
from kubernetes.client import Configuration

from mlstack.config import Settings, load_settings
from mlstack.tuning.katib import experiment_manifest
from mlstack.tuning.katib_runs import KatibError, katib_client, run_katib
from tests.support.katib_api import FORBIDDEN, OPTIMAL, KatibApi
from tests.support.paths import CONFIG

pytestmark = pytest.mark.integration


def settings(*overrides: str) -> Settings:
    return load_settings(
        CONFIG,
        ["katib.namespace=hpo", "katib.poll_seconds=0", "katib.timeout_seconds=30", *overrides],
    )


def client_for(api: KatibApi) -> KatibClient:
    return katib_client(Configuration(host=api.url))


def test_run_katib_creates_the_experiment_and_returns_typed_best_params(
    katib_api: KatibApi,
) -> None:
    s = settings()
    best = run_katib(s, client_for(katib_api))

    assert best == {
        "learning_rate": 0.0612,
        "max_iter": 300,
        "max_leaf_nodes": 47,
        "min_samples_leaf": 88,
        "l2_regularization": 0.0031,
    }
    assert [type(v) for v in best.values()] == [float, int, int, int, float]
    assert katib_api.polls == katib_api.finish_after_polls

    (posted,) = katib_api.created
    posted.pop("status", None)
    posted["metadata"] = {k: posted["metadata"][k] for k in ("name", "namespace")}
    assert posted == experiment_manifest(s), "the body is the rendered Experiment, unchanged"
    spec = posted["spec"]
    assert posted["metadata"] == {"name": "mlstack-tuning", "namespace": "hpo"}
    assert spec["objective"]["type"] == "maximize"
    assert spec["objective"]["objectiveMetricName"] == "pr_auc"
    assert spec["algorithm"]["algorithmName"] == "tpe"
    assert [p["name"] for p in spec["parameters"]] == list(OPTIMAL)
    # the log-scale parameters reach the API server as logUniform, whatever the SDK's models
    assert {p["name"]: p["feasibleSpace"]["distribution"] for p in spec["parameters"]} == {
        "learning_rate": "logUniform",
        "max_iter": "uniform",
        "max_leaf_nodes": "uniform",
        "min_samples_leaf": "logUniform",
        "l2_regularization": "logUniform",
    }
    template = spec["trialTemplate"]
    assert template["primaryContainerName"] == "training"
    assert [p["reference"] for p in template["trialParameters"]] == list(OPTIMAL)
    container = template["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][4] == "--learning-rate=${trialParameters.learning_rate}"


def test_a_failed_experiment_is_a_clear_error(katib_api: KatibApi) -> None:
    katib_api.outcome = "Failed"
    with pytest.raises(KatibError) as err:
        run_katib(settings(), client_for(katib_api))
    message = str(err.value)
    assert "Katib Experiment hpo/mlstack-tuning failed" in message
    assert "max failed count has reached" in message


def test_an_existing_experiment_is_a_clear_error(katib_api: KatibApi) -> None:
    katib_api.experiments[("hpo", "mlstack-tuning")] = {"metadata": {"name": "mlstack-tuning"}}
    with pytest.raises(KatibError, match="hpo/mlstack-tuning already exists") as err:
        run_katib(settings(), client_for(katib_api))
    assert "kubectl delete experiment mlstack-tuning -n hpo" in str(err.value)
    assert katib_api.created == [] and katib_api.polls == 0


def test_an_experiment_that_never_finishes_times_out(katib_api: KatibApi) -> None:
    katib_api.outcome = "Running"
    s = settings("katib.timeout_seconds=1", "katib.poll_seconds=1")
    with pytest.raises(KatibError) as err:
        run_katib(s, client_for(katib_api))
    message = str(err.value)
    assert "hpo/mlstack-tuning did not succeed within katib.timeout_seconds=1" in message
    assert "last condition: Running" in message
    assert katib_api.polls in (1, 2, 3)


def test_a_refused_create_names_the_experiment_and_the_api_reason(katib_api: KatibApi) -> None:
    with pytest.raises(KatibError) as err:
        run_katib(settings(f"katib.namespace={FORBIDDEN}"), client_for(katib_api))
    message = str(err.value)
    assert f"could not create Katib Experiment {FORBIDDEN}/mlstack-tuning: HTTP 403" in message
    assert "is forbidden" in message
