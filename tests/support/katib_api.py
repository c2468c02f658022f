"""An HTTP double of the Kubernetes API serving the Katib Experiment CRD, for run_katib.

It stores POSTed Experiments and, on each GET, moves the status along: Running, then (after a
set number of polls) Succeeded with an optimal trial, or Failed, or never finishing. The
`katib_api` fixture (tests/models/conftest.py) serves it on loopback.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from tests.support.http_double import JsonHandler

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


class KatibApiHandler(JsonHandler):
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
