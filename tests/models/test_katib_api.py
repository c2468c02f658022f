"""run_katib against an HTTP double of the Kubernetes API serving the Katib Experiment CRD.

The double runs on loopback; the real KatibClient and kubernetes client talk to it through a
``Configuration(host=...)``. It stores POSTed Experiments and, on each GET, moves the status
along: Running, then (after a set number of polls) Succeeded with an optimal trial, or Failed,
or never finishing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from kubeflow.katib import KatibClient
from kubernetes.client import Configuration

from mlstack.config import Settings, load_settings
from mlstack.tuning.katib import experiment_manifest
from mlstack.tuning.katib_runs import KatibError, katib_client, run_katib
from tests.support.http_double import JsonHandler, serve_on_loopback
from tests.support.paths import CONFIG

pytestmark = pytest.mark.integration


PREFIX = "/apis/kubeflow.org/v1beta1/namespaces/(?P<ns>[^/]+)/experiments"
COLLECTION = re.compile(PREFIX)
ITEM = re.compile(PREFIX + "/(?P<name>[^/]+)")
FORBIDDEN = "locked"  # a namespace the double refuses, as RBAC would
OPTIMAL = {
    "learning_rate": "0.0612",
    "max_iter": "300",
    "max_leaf_nodes": "47",
    "min_samples_leaf": "88",
    "l2_regularization": "0.0031",
}


@dataclass
class KatibApi:
    """What the double holds and how its Experiments end."""

    url: str = ""
    experiments: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    created: list[dict[str, Any]] = field(default_factory=list)
    polls: int = 0
    outcome: str = "Succeeded"  # Succeeded | Failed | Running (never finishes)
    finish_after_polls: int = 3

    def status(self) -> dict[str, Any]:
        """The Experiment status the current poll sees."""
        self.polls += 1
        running = [_condition("Created", "True"), _condition("Running", "True")]
        if self.outcome == "Running" or self.polls < self.finish_after_polls:
            return {"conditions": running}
        if self.outcome == "Failed":
            return {
                "conditions": [
                    *running,
                    _condition(
                        "Failed",
                        "True",
                        "ExperimentMaxFailedTrialsReached",
                        "Experiment has failed because max failed count has reached",
                    ),
                ]
            }
        return {
            "conditions": [
                _condition("Created", "True"),
                _condition("Running", "False"),
                _condition("Succeeded", "True", "ExperimentMaxTrialsReached", "done"),
            ],
            "currentOptimalTrial": {
                "bestTrialName": "mlstack-tuning-7xk2p",
                "parameterAssignments": [{"name": k, "value": v} for k, v in OPTIMAL.items()],
                "observation": {
                    "metrics": [{"name": "pr_auc", "latest": "0.351", "max": "0.36", "min": "0.2"}]
                },
            },
        }


def _condition(kind: str, status: str, reason: str = "", message: str = "") -> dict[str, str]:
    return {"type": kind, "status": status, "reason": reason or kind, "message": message}


def _status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


class _Handler(JsonHandler):
    api: KatibApi  # set on the subclass the fixture makes

    def do_POST(self) -> None:
        match = COLLECTION.fullmatch(self.path)
        if match is None:
            return self._send(404, _status_body(404, "NotFound", f"no route {self.path}"))
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if match["ns"] == FORBIDDEN:
            message = f'experiments.kubeflow.org is forbidden in namespace "{FORBIDDEN}"'
            return self._send(403, _status_body(403, "Forbidden", message))
        key = (match["ns"], body["metadata"]["name"])
        if key in self.api.experiments:
            message = f'experiments.kubeflow.org "{key[1]}" already exists'
            return self._send(409, _status_body(409, "AlreadyExists", message))
        body["metadata"].update(uid="0b5c", creationTimestamp="2024-01-01T00:00:00Z")
        self.api.experiments[key] = body
        self.api.created.append(body)
        self._send(201, body)

    def do_GET(self) -> None:
        match = ITEM.fullmatch(self.path)
        experiment = self.api.experiments.get((match["ns"], match["name"])) if match else None
        if experiment is None:
            return self._send(404, _status_body(404, "NotFound", f"{self.path} not found"))
        self._send(200, {**experiment, "status": self.api.status()})


@pytest.fixture
def katib_api() -> Iterator[KatibApi]:
    """The API server double on a free loopback port, for one test."""
    with serve_on_loopback(KatibApi(), _Handler) as api:
        yield api


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
