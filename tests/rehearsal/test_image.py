"""The project's image, run with podman the way KFP's DockerRunner and Kubernetes run it."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.rehearsal

UID = "10001"
DEV_ONLY = ("pytest", "_pytest", "moto", "helm_python", "kubernetes_validate", "hypothesis", "ruff")


def test_image_has_no_entrypoint_and_a_non_root_user(docker_client, image):
    config = docker_client.images.get(image).attrs["Config"]
    assert not config.get("Entrypoint"), "an ENTRYPOINT breaks Docker semantics (sh -c …)"
    assert config.get("User") == UID
    assert config.get("Cmd") == ["mlstack", "--help"]


def test_runs_the_components_sh_c_command_as_uid_10001(run_in_image):
    """DockerRunner passes the component's `sh -c …` as the container command."""
    ran = run_in_image(["sh", "-c", "mlstack --help && id -u && echo HOME=$HOME"])
    assert ran.exit_code == 0, ran.output
    assert "Usage: mlstack" in ran.stdout
    assert f"\n{UID}\n" in ran.stdout
    assert "HOME=/tmp" in ran.stdout


def test_runs_the_default_command(run_in_image):
    ran = run_in_image([])
    assert ran.exit_code == 0, ran.output
    assert "Usage: mlstack" in ran.stdout


def test_runs_with_a_read_only_root_filesystem_and_a_tmpfs_tmp(run_in_image):
    """As the chart's InferenceService runs the predictor: the server imports, /tmp is the
    only writable place, and nothing is compiled at start (the bytecode is in the image)."""
    script = (
        "import os, sys, time\n"
        "t = time.perf_counter()\n"
        "import mlstack.serving.server\n"
        "print(f'import {time.perf_counter() - t:.1f} s')\n"
        "open('/tmp/written', 'w').write('ok')\n"
        "for path in ('/app/artifacts/x', '/usr/local/x'):\n"
        "    try:\n"
        "        open(path, 'w')\n"
        "    except OSError as err:\n"
        "        print('read-only', path, err.errno)\n"
        "    else:\n"
        "        sys.exit(f'{path} is writable')\n"
    )
    ran = run_in_image(
        ["python3", "-c", script], read_only=True, tmpfs={"/tmp": "rw,size=64m,mode=1777"}
    )
    assert ran.exit_code == 0, ran.output
    assert ran.stdout.count("read-only") == 2, ran.output


def test_no_dev_only_package_in_the_image(run_in_image):
    script = (
        "import importlib.util, importlib.metadata as md\n"
        f"mods = {DEV_ONLY!r}\n"
        "print('modules', [m for m in mods if importlib.util.find_spec(m)])\n"
        "dists = {'pytest', 'pytest-timeout', 'moto', 'helm-python-sdk',"
        " 'kubernetes-validate', 'hypothesis', 'ruff', 'uv'}\n"
        "have = {d.metadata['Name'].lower() for d in md.distributions()}\n"
        "print('dists', sorted(dists & have))\n"
    )
    ran = run_in_image(["python3", "-c", script])
    assert ran.exit_code == 0, ran.output
    assert "modules []" in ran.stdout and "dists []" in ran.stdout, ran.stdout


def test_each_container_starts_from_a_fresh_filesystem(run_in_image, tmp_path: Path):
    """A file one container writes outside shared mounts is gone for the next; a file in a
    shared host folder (as DockerRunner mounts the pipeline root) is seen by both."""
    shared = tmp_path / "pipeline-root"
    shared.mkdir()
    # The pipeline root is a root-owned host folder: made world-writable (sticky), the image's
    # uid 10001 writes it, the way the rehearsal prepares KFP's pipeline root.
    os.chmod(shared, 0o1777)
    mark = uuid.uuid4().hex
    volumes = {str(shared): {"bind": "/pipeline-root", "mode": "rw"}}
    write = (
        f"echo {mark} > /tmp/{mark} && echo {mark} > /app/artifacts/{mark} "
        f"&& echo {mark} > /pipeline-root/{mark} && echo wrote"
    )
    first = run_in_image(["sh", "-c", write], volumes=volumes)
    assert first.exit_code == 0, first.output
    assert (shared / mark).read_text().strip() == mark
    assert (shared / mark).stat().st_uid == int(UID)

    look = (
        f"for f in /tmp/{mark} /app/artifacts/{mark} /pipeline-root/{mark}; do "
        'if [ -e "$f" ]; then echo "seen $f"; else echo "absent $f"; fi; done'
    )
    second = run_in_image(["sh", "-c", look], volumes=volumes)
    assert second.exit_code == 0, second.output
    assert f"absent /tmp/{mark}" in second.stdout
    assert f"absent /app/artifacts/{mark}" in second.stdout
    assert f"seen /pipeline-root/{mark}" in second.stdout


def test_a_failing_command_reports_its_own_message(run_in_image):
    """A fast failure comes back with the step's own message (no auto_remove: see conftest)."""
    ran = run_in_image(["sh", "-c", "mlstack no-such-command"])
    assert ran.exit_code != 0
    assert "No such command" in ran.output


def test_shard_workers_follow_the_containers_cpu_limit(run_in_image):
    """In a pod `os.cpu_count()` is the node's cores; the shard processes and the tuning's
    jobs count the container's CPU limit (cgroup `cpu.max`) instead, so a step limited to one
    CPU starts one shard worker at a time, not one per node core."""
    script = (
        "import os; from mlstack.models.parallel import cpu_count; "
        "print(os.cpu_count(), cpu_count())"
    )
    unlimited = run_in_image(["python3", "-c", script])
    limited = run_in_image(["python3", "-c", script], nano_cpus=1_000_000_000)
    assert unlimited.exit_code == 0 and limited.exit_code == 0, unlimited.output + limited.output
    node, usable = (int(n) for n in unlimited.stdout.split())
    assert usable == node == os.cpu_count()
    node, usable = (int(n) for n in limited.stdout.split())
    assert (node, usable) == (os.cpu_count(), 1)
