"""Fixtures for tests that run the project's image with podman through the Docker API.

- `podman_api` (session): starts `podman system service` on a unix socket in a temporary
  folder, with the project's podman settings (`podman/containers.conf`, via CONTAINERS_CONF),
  and yields its base URL (`unix:///…/podman.sock`); the service is ended at the end of the
  session, by the PID this fixture started.
- `docker_client` (session): a `docker.DockerClient` on that socket.
- `docker_host` (function): sets DOCKER_HOST to the socket for one test, for code that calls
  `docker.from_env()` (KFP's `kfp.local.DockerRunner`).
- `image` (session): the image the pipelines name (`pipeline.base_image`); fails with
  "run `make image` first" when podman does not have it.
- `run_in_image` (function): runs one container of the image and returns its exit code and
  output, removing the container itself.

Containers are not started with `auto_remove=True` when their output matters: podman answers
the log request for a container that exited at once and was removed with a 500, not the 404
Docker gives.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlstack.config import PipelineSettings
from tests.rehearsal.pods import exit_code
from tests.support.paths import PROJECT

CONTAINERS_CONF = PROJECT / "podman" / "containers.conf"
IMAGE = PipelineSettings.model_fields["base_image"].default
API_START_SECONDS = 60


def podman_env() -> dict[str, str]:
    """The environment for podman calls: the project's containers.conf, not /etc's."""
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman_binary() -> str:
    found = shutil.which("podman") or shutil.which("podman", path="/usr/bin:/usr/sbin:/bin")
    if not found:
        pytest.fail("podman is not installed: run `make system-deps` (Debian: podman, runc)")
    return found


@pytest.fixture(scope="session")
def podman_api() -> Iterator[str]:
    """The base URL of a podman Docker-API service started for this session."""
    import docker

    folder = tempfile.mkdtemp(prefix="mlstack-podman-")
    socket = Path(folder) / "podman.sock"
    base_url = f"unix://{socket}"
    log_path = Path(folder) / "service.log"
    with log_path.open("wb") as log:
        service = subprocess.Popen(
            [podman_binary(), "system", "service", "--time=0", base_url],
            env=podman_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + API_START_SECONDS
        while True:
            if service.poll() is not None:
                pytest.fail(
                    f"podman system service exited ({service.returncode}): "
                    f"{log_path.read_text(errors='replace')[-2000:]}"
                )
            if socket.exists():
                try:
                    client = docker.DockerClient(base_url=base_url, timeout=10)
                    client.ping()
                    client.close()
                    break
                except Exception:
                    pass
            if time.monotonic() > deadline:
                pytest.fail(f"podman system service did not answer on {base_url}")
            time.sleep(0.2)
        yield base_url
    finally:
        service.terminate()
        try:
            service.wait(timeout=15)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def docker_client(podman_api: str) -> Iterator:
    import docker

    client = docker.DockerClient(base_url=podman_api, timeout=300)
    yield client
    client.close()


@pytest.fixture
def docker_host(podman_api: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """DOCKER_HOST set to the podman service, for `docker.from_env()` (KFP's DockerRunner)."""
    monkeypatch.setenv("DOCKER_HOST", podman_api)
    return podman_api


@pytest.fixture(scope="session")
def image(docker_client) -> str:
    """The project's image (`pipeline.base_image`), which `make image` builds."""
    import docker

    try:
        docker_client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"podman has no image {IMAGE}: run `make image` first")
    return IMAGE


@dataclass(frozen=True)
class Ran:
    """What a container did: its exit code and its output (stdout and stderr)."""

    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_container(client, image: str, command: list[str], timeout: float = 300, **kwargs) -> Ran:
    """Run one container to its end and remove it; no auto_remove, so the logs stay readable."""
    container = client.containers.create(image, command=command, **kwargs)
    try:
        container.start()
        code = exit_code(container, timeout)
        return Ran(
            exit_code=code,
            stdout=container.logs(stdout=True, stderr=False).decode(errors="replace"),
            stderr=container.logs(stdout=False, stderr=True).decode(errors="replace"),
        )
    finally:
        container.remove(force=True)


@pytest.fixture
def run_in_image(docker_client, image: str) -> Callable[..., Ran]:
    """`run_in_image(command, **docker_create_kwargs)` runs a container of the image."""

    def run(command: list[str], **kwargs) -> Ran:
        return run_container(docker_client, image, command, **kwargs)

    return run
