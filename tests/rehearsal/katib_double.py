"""Katib, as far as the rehearsal needs it: an HTTP double of the Kubernetes API's Experiment
endpoints that runs each trial of a created Experiment as a container of the image.

The tune step (itself a container) creates the Experiment and polls it, as on a cluster. The
double draws each trial's parameters from the Experiment's feasible space (random search,
with `logUniform` honoured), builds the trial's container from its trialTemplate with
`mlstack.tuning.katib.trial_container` (Katib's substitution), resolves Secret references to
the rehearsal's credentials as the kubelet would, runs it with podman, and reads the
objective from its output as Katib's StdOut collector does. When every trial has run it
marks the Experiment Succeeded with the best trial.
"""

from __future__ import annotations

import json
import math
import random
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from mlstack.tuning.katib_controller import (
    experiment_metric_names,
    parse_stdout_metrics,
    trial_container,
)
from tests.rehearsal.pods import exit_code
from tests.support.http_double import JsonHandler

PREFIX = "/apis/kubeflow.org/v1beta1/namespaces/(?P<ns>[^/]+)/experiments"
COLLECTION = re.compile(PREFIX)
ITEM = re.compile(PREFIX + "/(?P<name>[^/]+)")


def draw(parameter: dict[str, Any], rng: random.Random) -> str:
    """One value of a Katib parameter, as Katib's random suggestion writes it."""
    space = parameter["feasibleSpace"]
    if parameter["parameterType"] in ("categorical", "discrete"):
        return str(rng.choice(space["list"]))
    low, high = float(space["min"]), float(space["max"])
    if space.get("distribution") == "logUniform":
        value = math.exp(rng.uniform(math.log(low), math.log(high)))
    else:
        value = rng.uniform(low, high)
    if parameter["parameterType"] == "int":
        return str(min(max(round(value), int(low)), int(high)))
    return repr(value)


def _condition(kind: str, status: str = "True", reason: str = "") -> dict[str, str]:
    return {"type": kind, "status": status, "reason": reason or kind, "message": ""}


@dataclass
class Trial:
    name: str
    assignments: dict[str, str]
    exit_code: int
    metrics: dict[str, str]
    output: str


@dataclass
class KatibDouble:
    """Experiments created, their trials as run, and what a run needs to start a trial."""

    docker: Any  # docker.DockerClient on the podman service
    secrets: dict[tuple[str, str], str]  # (secret name, key) -> value
    seed: int = 0
    url: str = ""
    experiments: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    trials: list[Trial] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)

    def create(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        body.setdefault("status", {"conditions": [_condition("Created")]})
        self.experiments[(namespace, body["metadata"]["name"])] = body
        thread = threading.Thread(target=self._run, args=(namespace, body), daemon=True)
        self._threads.append(thread)
        thread.start()
        return body

    def _env(self, env: list[dict[str, Any]]) -> dict[str, str]:
        resolved = {}
        for entry in env:
            ref = (entry.get("valueFrom") or {}).get("secretKeyRef")
            if ref is not None:
                resolved[entry["name"]] = self.secrets[(ref["name"], ref["key"])]
            else:
                resolved[entry["name"]] = entry.get("value", "")
        return resolved

    def _run(self, namespace: str, experiment: dict[str, Any]) -> None:
        spec = experiment["spec"]
        rng = random.Random(self.seed)
        metrics = experiment_metric_names(experiment)
        experiment["status"]["conditions"].append(_condition("Running"))
        prefix = experiment["metadata"]["name"]
        drawn = [
            (f"{prefix}-{n:04d}", {p["name"]: draw(p, rng) for p in spec["parameters"]})
            for n in range(int(spec.get("maxTrialCount", 1)))
        ]
        # As Katib: at most parallelTrialCount trials run at once.
        with ThreadPoolExecutor(int(spec.get("parallelTrialCount", 1))) as pool:
            for trial in pool.map(lambda d: self._trial(namespace, experiment, *d), drawn):
                self.trials.append(trial)
        self._finish(experiment, metrics[0], spec["objective"]["type"])

    def _trial(
        self, namespace: str, experiment: dict[str, Any], name: str, assignments: dict[str, str]
    ) -> Trial:
        container = trial_container(experiment, assignments, name, namespace)
        self.log.append(f"katib trial {name}: {' '.join(container['command'])}")
        run = self.docker.containers.run(
            container["image"],
            command=[*container["command"], *container["args"]],
            environment=self._env(container["env"]),
            network_mode="host",
            detach=True,
        )
        try:
            code = exit_code(run)
            # Katib's collector reads stdout and stderr together (`2>&1`).
            output = run.logs(stdout=True, stderr=True).decode(errors="replace")
        finally:
            run.remove(force=True)
        metrics = experiment_metric_names(experiment)
        found = parse_stdout_metrics(output, metrics) if code == 0 else {}
        return Trial(name, assignments, code, found, output)

    def _finish(self, experiment: dict[str, Any], objective: str, direction: str) -> None:
        def value(trial: Trial) -> float:
            text = trial.metrics.get(objective, "")
            return float(text) if text not in ("", "unavailable") else math.nan

        scored = [t for t in self.trials if t.exit_code == 0 and not math.isnan(value(t))]
        conditions = experiment["status"]["conditions"]
        if not scored:
            conditions.append(_condition("Failed", reason="ExperimentMaxFailedTrialsReached"))
            return
        best = (max if direction == "maximize" else min)(scored, key=value)
        experiment["status"]["currentOptimalTrial"] = {
            "bestTrialName": best.name,
            "parameterAssignments": [{"name": k, "value": v} for k, v in best.assignments.items()],
            "observation": {
                "metrics": [{"name": objective, "latest": best.metrics[objective]}],
            },
        }
        conditions.append(_condition("Succeeded", reason="ExperimentMaxTrialsReached"))


class KatibHandler(JsonHandler):
    api: KatibDouble

    def _body(self) -> dict[str, Any]:
        return json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")

    def do_POST(self) -> None:
        match = COLLECTION.fullmatch(self.path.split("?")[0])
        if match is None:
            return self._send(404, {"kind": "Status", "code": 404, "message": self.path})
        body = self._body()
        if (match["ns"], body["metadata"]["name"]) in self.api.experiments:
            return self._send(409, {"kind": "Status", "code": 409, "reason": "AlreadyExists"})
        return self._send(201, self.api.create(match["ns"], body))

    def do_GET(self) -> None:
        match = ITEM.fullmatch(self.path.split("?")[0])
        found = match and self.api.experiments.get((match["ns"], match["name"]))
        if not found:
            return self._send(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
        return self._send(200, found)
