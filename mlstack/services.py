"""The services a run depends on, checked before it starts: each failure names the service
and its endpoint, so an unreachable one stops a run before anything is registered.

Local mode's embedded counterparts (SQLite, folders) need no check; a service is checked
when the settings point at one: an `http(s)://` MLflow tracking server, an `s3://` state
store, a Redis online store.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass

from mlstack import storage
from mlstack.config import Settings
from mlstack.config.data import FeastSettings
from mlstack.config.modelling import MlflowSettings

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 5.0


class ServiceUnavailable(RuntimeError):
    """A service the run needs did not answer."""


@dataclass(frozen=True)
class Service:
    name: str
    endpoint: str
    probe: Callable[[], None]


def _mlflow(mlflow: MlflowSettings) -> Service | None:
    uri = mlflow.tracking_uri
    if not uri.startswith(("http://", "https://")):
        return None

    def probe() -> None:
        import httpx

        response = httpx.get(f"{uri.rstrip('/')}/health", timeout=TIMEOUT_SECONDS)
        response.raise_for_status()

    return Service("the MLflow tracking server", uri, probe)


def _object_store(settings: Settings) -> Service | None:

    uri = settings.state_uri
    if not uri or not storage.is_remote(uri):
        return None
    fs, path = storage.filesystem(uri, settings.object_store)
    bucket = path.split("/", 1)[0]

    def probe() -> None:
        if not fs.exists(bucket):
            raise FileNotFoundError(f"bucket {bucket!r} does not exist")

    endpoint = settings.object_store.endpoint_url or "AWS S3"
    return Service("the object store", f"{endpoint} ({uri})", probe)


def _redis(feast: FeastSettings) -> Service | None:
    connection = feast.redis
    if not connection:
        return None
    host, _, port = connection.split(",", 1)[0].rpartition(":")

    def probe() -> None:
        with socket.create_connection((host or "localhost", int(port)), TIMEOUT_SECONDS) as sock:
            sock.settimeout(TIMEOUT_SECONDS)
            sock.sendall(b"PING\r\n")
            answer = sock.recv(64)
        # -NOAUTH still proves the server is there; Feast sends the password itself.
        if not answer.startswith((b"+PONG", b"-NOAUTH")):
            raise ConnectionError(f"unexpected answer {answer[:40]!r}")

    return Service("Redis (the Feast online store)", connection.split(",", 1)[0], probe)


CHECKS: dict[str, Callable[[Settings], Service | None]] = {
    "mlflow": lambda settings: _mlflow(settings.mlflow),
    "object_store": _object_store,
    "redis": lambda settings: _redis(settings.feast),
}


def check_services(settings: Settings, which: tuple[str, ...] = tuple(CHECKS)) -> list[str]:
    """Probe each service in `which` that the settings point at; returns the ones checked.

    Raises `ServiceUnavailable` naming every service that did not answer and its endpoint.
    """
    failures, checked = [], []
    for key in which:
        service = CHECKS[key](settings)
        if service is None:
            continue
        try:
            service.probe()
        except Exception as err:  # any failure to answer is the same finding: name it
            failures.append(f"{service.name} at {service.endpoint}: {err}")
        else:
            checked.append(f"{service.name} at {service.endpoint}")
    if failures:
        raise ServiceUnavailable("unreachable: " + "; ".join(failures))
    for line in checked:
        log.info("reached %s", line)
    return checked
