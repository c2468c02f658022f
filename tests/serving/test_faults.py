"""Faults of the services the predictor depends on, against the real ones: Redis (the online
store) stopped mid-traffic and killed, then back."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis

from mlstack.features import store as feature_store
from mlstack.features.definitions import EVENT_TIMESTAMP, feature_names
from tests.conftest import free_port
from tests.serving.conftest import Server, make_project, register

pytestmark = pytest.mark.integration

PREDICT = "/v1/models/propensity:predict"
BUDGET = 0.3  # serving.lookup_timeout_seconds here
SLACK = 0.7  # the rest of a request, on a loaded 2-core machine


class RedisProcess:
    """redis-server on a fixed loopback port, which can be stopped, resumed and restarted."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed: make system-deps"
        self.process = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", ""],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(host="127.0.0.1", port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(10)


@pytest.fixture(scope="module")
def redis_backed(tmp_path_factory: pytest.TempPathFactory):
    """A project whose online store is a real Redis, a champion, and the server on it."""
    root = tmp_path_factory.mktemp("redis-served")
    server_redis = RedisProcess(free_port())
    server_redis.start()
    project = make_project(
        root,
        "feast.config_file=feature_store.cluster.yaml",
        f"feast.redis=127.0.0.1:{server_redis.port}",
        f"feast.registry={root / 'registry.db'}",
        f"serving.lookup_timeout_seconds={BUDGET}",
        "serving.max_batch_size=50",
    )
    register(project)
    predictor = Server(project)
    try:
        yield project, server_redis, predictor
    finally:
        predictor.stop()
        server_redis.kill()


def _timed(predictor: Server, body: dict) -> tuple[int, float, dict]:
    started = time.monotonic()
    answer = predictor.client.post(PREDICT, json=body)
    return answer.status_code, time.monotonic() - started, answer.json()


def test_redis_stopped_then_killed_each_answer_within_the_budget_then_recovery(
    redis_backed,
) -> None:
    project, server_redis, predictor = redis_backed
    latest = project.features[EVENT_TIMESTAMP].max()
    customers = project.features.loc[project.features[EVENT_TIMESTAMP] == latest, "customer_id"]
    by_id = {"instances": [{"customer_id": c} for c in customers.head(3)]}
    names = feature_names(project.settings())
    full = project.features[names].dropna().iloc[0]
    by_row = {"instances": [{n: float(full[n]) for n in names}]}

    code, _, body = _timed(predictor, by_id)
    assert code == 200 and all(p["features_found"] for p in body["predictions"]), body

    server_redis.signal(signal.SIGSTOP)  # Redis stops answering: connections hang
    try:
        for _ in range(6):
            code, took, body = _timed(predictor, by_id)
            assert code == 503, body
            assert "within 0.3 s" in body["detail"]
            assert took < BUDGET + SLACK, took
            code, took, _ = _timed(predictor, by_row)  # no lookup: still scored
            assert code == 200 and took < SLACK
        assert predictor.client.get("/v2/health/live").status_code == 200
    finally:
        server_redis.signal(signal.SIGCONT)
    _until_found(predictor, by_id, 30)

    server_redis.kill()  # Redis gone: connections refused
    for _ in range(4):
        code, took, body = _timed(predictor, by_id)
        assert code == 503, body
        assert took < BUDGET + SLACK, took
    server_redis.start()  # back, empty: the materialize CronJob fills it again
    settings = project.settings()
    store = feature_store.open_store(settings)
    feature_store.materialize(store, settings.feast, pd.Timestamp(latest).to_pydatetime())
    _until_found(predictor, by_id, 30)

    metrics = predictor.client.get("/metrics").text
    assert 'mlstack_errors_total{kind="feature_store_timeout"}' in metrics
    assert 'mlstack_requests_total{outcome="unavailable",protocol="v1"}' in metrics


def _until_found(predictor: Server, body: dict, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        code, _, answer = _timed(predictor, body)
        if code == 200 and all(p["features_found"] for p in answer["predictions"]):
            return
        assert time.monotonic() < deadline, (code, answer, Path(predictor.log).read_text()[-1500:])
        time.sleep(0.5)


def test_redis_is_read_in_the_event_loop_and_gives_the_rows_the_blocking_read_gives(
    redis_backed, served
) -> None:
    """Feast's Redis store reads natively in asyncio: the predictor's lookup uses it (no
    thread hand-off, a timeout cancels the read) and gets the same rows as the blocking read;
    the local SQLite store has no such read and is read in the loop (a local file)."""
    from mlstack.serving.lookup import CustomerLookup

    project, _, _ = redis_backed
    settings = project.settings()
    names = tuple(feature_names(settings))
    ids = [*project.features["customer_id"].drop_duplicates().head(20), "no-such-customer"]
    lookup = CustomerLookup(settings, names)
    assert lookup.asynchronous
    blocking_rows, blocking_found = lookup.fetch(ids)
    async_rows, async_found = asyncio.run(lookup.fetch_async(ids))
    assert blocking_found.tolist() == async_found.tolist()
    assert blocking_found[:-1].all() and not blocking_found[-1]
    assert np.array_equal(blocking_rows, async_rows, equal_nan=True)

    local = CustomerLookup(served.settings(), names)
    assert not local.asynchronous and local.local
    assert not lookup.local
