"""A served project in a temporary folder: the 1,000-customer sample's features in Feast
(materialized to the SQLite online store), a tiny model registered in a SQLite MLflow with
the `champion` alias, and the server started for real on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import mlflow
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from mlstack.config import Settings, load_settings
from mlstack.data.ingest import ingest
from mlstack.features import store as feature_store
from mlstack.features.build import build_features, build_labels
from mlstack.features.definitions import ENTITY, EVENT_TIMESTAMP, feature_names, label_name
from mlstack.models.candidates import make_model
from mlstack.registry import models as registry
from mlstack.registry import tracking
from tests.conftest import copy_project, free_port

SERVER_START_SECONDS = 120


@dataclass
class ServedProject:
    """A project folder whose settings the server and the test share."""

    root: Path
    overrides: list[str]
    features: pd.DataFrame  # every (customer, snapshot) row, as in the offline store
    labelled: pd.DataFrame  # the rows whose label is known, with the label

    @property
    def config(self) -> Path:
        return self.root / "configs" / "cdnow.yaml"

    def settings(self, *extra: str) -> Settings:
        return load_settings(self.config, [*self.overrides, *extra])


def make_project(root: Path, *extra: str) -> ServedProject:
    """Copy the config and feature repo, load the sample's features into Feast (offline and
    online), and return the project; the Feast registry lives in the copy."""
    overrides = [*copy_project(root), *extra]
    project = ServedProject(root, overrides, pd.DataFrame(), pd.DataFrame())
    settings = project.settings()
    ingest(settings, out_path=root / "transactions.parquet")
    transactions = pd.read_parquet(root / "transactions.parquet")
    features = build_features(transactions, settings)
    feature_store.write_source(features, settings)
    store = feature_store.apply(settings)
    feature_store.materialize(
        store, settings.feast, features[EVENT_TIMESTAMP].max().to_pydatetime()
    )
    labelled = build_labels(transactions, features[[ENTITY, EVENT_TIMESTAMP]], settings)
    project.features = features
    project.labelled = features.merge(labelled, on=[ENTITY, EVENT_TIMESTAMP])
    return project


def register(project: ServedProject, seed: int = 0, alias: str | None = "champion") -> str:
    """Train a tiny boosting model on the sample and register it; returns the version."""
    settings = project.settings()
    names = feature_names(settings)
    frame = project.labelled
    model = make_model("gradient_boosting", {"max_iter": 5 + seed, "min_samples_leaf": 20}, names)
    with threadpool_limits(1):
        model.fit(frame[names], frame[label_name(settings.features)])
    client = tracking.configure(settings.mlflow)
    try:
        with tracking.training_run(settings.mlflow, f"serving-test-{seed}"):
            info = tracking.log_model(
                model, "model", frame[names].head(20), settings.mlflow.registered_model
            )
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
    version = str(info.registered_model_version)
    if alias:
        registry.set_alias(client, settings.mlflow.registered_model, alias, version, "test", "test")
    return version


class Server:
    """`mlstack serve` in a subprocess on a free loopback port."""

    def __init__(
        self,
        project: ServedProject,
        *extra: str,
        wait_for: str = "/v2/models/propensity/ready",  # the server's readiness says nothing
    ) -> None:
        self.port = free_port()
        self.project = project
        self.overrides = [*project.overrides, f"serving.port={self.port}", *extra]
        self.log = project.root / f"server-{self.port}.log"
        args = [sys.executable, "-m", "mlstack.cli", "--config", str(project.config)]
        for item in self.overrides:
            args += ["--set", item]
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "OMP_NUM_THREADS": "1"}
        env.pop("MLSTACK_CONFIG", None)
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [*args, "serve"], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=project.root
            )
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = httpx.Client(base_url=self.url, timeout=30)
        self._wait_ready(wait_for)

    def _wait_ready(self, path: str) -> None:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-3000:]}")
            try:
                if self.client.get(path).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            f"server not ready in {SERVER_START_SECONDS}s: {self.log.read_text()[-3000:]}"
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.client.close()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLSTACK_CONFIG", raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> ServedProject:
    """A project with features in Feast and version 1 as champion, shared by the session."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        return _served(tmp_path_factory)


def _served(tmp_path_factory: pytest.TempPathFactory) -> ServedProject:
    project = make_project(
        tmp_path_factory.mktemp("served"),
        "serving.payload_flush_seconds=0.3",
        "serving.reload_interval_seconds=0.3",
        "serving.max_batch_size=50",
    )
    register(project, seed=0)
    return project


@pytest.fixture(scope="session")
def server(served: ServedProject) -> Iterator[Server]:
    running = Server(served)
    try:
        yield running
    finally:
        running.stop()
