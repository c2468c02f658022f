"""The services a cluster gives the stack, started on loopback for the rehearsal.

An S3-compatible object store (moto's server mode, standing in for Kubeflow's MinIO), the
MLflow tracking server (SQLite backend on its own disk, artifacts proxied into the object
store) and Redis (Feast's online store). Each is a process this module starts and ends by
its PID; nothing else is touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.conftest import free_port

BUCKET = "mlpipeline"
ACCESS_KEY = "rehearsal"
SECRET_KEY = "rehearsal-secret"
BIN = Path(sys.executable).parent


@dataclass
class Services:
    """Endpoints of the running services, and the settings that point the stack at them."""

    s3: str
    mlflow: str
    redis: str  # Feast's connection string: host:port
    workdir: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def credentials(self) -> dict[str, str]:
        """What a Secret gives each pod on a cluster: the object store's key pair."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def overrides(self, prefix: str = "mlstack") -> list[str]:
        """`--set` pairs that point the cluster profile at these services."""
        state = f"s3://{BUCKET}/{prefix}"
        return [
            f"object_store.endpoint_url={self.s3}",
            f"state_uri={state}",
            f"mlflow.tracking_uri={self.mlflow}",
            f"feast.registry={state}/feast/registry.db",
            f"feast.redis={self.redis}",
        ]

    def s3_client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.s3,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
        )


def _wait(name: str, ready, process: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"{name} exited with {process.returncode}:\n{log.read_text()[-3000:]}"
            )
        with contextlib.suppress(OSError, httpx.HTTPError):
            if ready():
                return
        time.sleep(0.3)
    raise RuntimeError(f"{name} not ready after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def _start(
    name: str, args: list[str], workdir: Path, env: dict[str, str]
) -> tuple[subprocess.Popen, Path]:
    log = workdir / f"{name}.log"
    process = subprocess.Popen(
        args,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=workdir,
        env={**os.environ, **env},
        start_new_session=True,
    )
    return process, log


def _http_ok(url: str) -> bool:
    return httpx.get(url, timeout=2).status_code < 500


def _redis_ok(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(16).startswith(b"+PONG")


def stop(process: subprocess.Popen) -> None:
    """End a process this module started (and its children: its own session), by PID."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


@contextlib.contextmanager
def running_services(workdir: Path) -> Iterator[Services]:
    """Start the object store, MLflow and Redis on loopback; stop them on exit."""
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        raise RuntimeError("redis-server is not installed: run `make setup`")
    workdir.mkdir(parents=True, exist_ok=True)
    ports = {name: free_port() for name in ("s3", "mlflow", "redis")}
    s3 = f"http://127.0.0.1:{ports['s3']}"
    services = Services(
        s3=s3,
        mlflow=f"http://127.0.0.1:{ports['mlflow']}",
        redis=f"127.0.0.1:{ports['redis']}",
        workdir=workdir,
    )
    try:
        process, log = _start(
            "s3", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(ports["s3"])], workdir, {}
        )
        services.processes["s3"] = process
        _wait("the object store (moto)", lambda: _http_ok(s3), process, log, 60)
        services.s3_client().create_bucket(Bucket=BUCKET)

        process, log = _start(
            "redis",
            [
                redis_server,
                "--bind",
                "127.0.0.1",
                "--port",
                str(ports["redis"]),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            workdir,
            {},
        )
        services.processes["redis"] = process
        _wait("redis-server", lambda: _redis_ok(ports["redis"]), process, log, 30)

        process, log = _start(
            "mlflow",
            [
                str(BIN / "mlflow"),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(ports["mlflow"]),
                "--backend-store-uri",
                f"sqlite:///{workdir / 'mlflow.db'}",
                "--serve-artifacts",
                "--artifacts-destination",
                f"s3://{BUCKET}/mlflow",
                "--workers",
                "1",
            ],
            workdir,
            {
                **services.credentials,
                "MLFLOW_S3_ENDPOINT_URL": s3,
                "MLFLOW_ENABLE_TELEMETRY": "false",
            },
        )
        services.processes["mlflow"] = process
        _wait("mlflow server", lambda: _http_ok(f"{services.mlflow}/health"), process, log, 240)
        yield services
    finally:
        for process in reversed(list(services.processes.values())):
            stop(process)
