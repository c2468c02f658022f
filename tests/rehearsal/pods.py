"""Run a container of a rendered Kubernetes object the way the kubelet would start it.

From the pod spec and the container spec: `command` replaces the image's entrypoint and
`args` follow; env values, Secret references (resolved from the given Secrets, as the
kubelet does) and `$(VAR)` references to earlier variables; the pod's user and group; a
read-only root filesystem, dropped capabilities and no privilege escalation from the
security contexts; each emptyDir as a tmpfs; a projected ServiceAccount token as a file.
The network is the host's, so the container reaches the services on loopback.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
POLL_SECONDS = 0.5


def exit_code(container: Any, timeout: float = 1800) -> int:
    """The container's exit code once it has stopped, checking its state twice a second.

    Not the Docker API's `wait` until it exits: podman 4.3's compat `wait` polls its state
    database in a tight loop and costs about half a core per waiting caller, which on two
    cores halves the speed of the very containers being waited for. Once the container has
    stopped, `wait` answers at once with the code."""
    deadline = time.monotonic() + timeout
    while True:
        container.reload()
        if container.status not in ("created", "running"):
            return int(container.wait(timeout=60)["StatusCode"])
        if time.monotonic() > deadline:
            raise TimeoutError(f"container {container.short_id} still running after {timeout} s")
        time.sleep(POLL_SECONDS)


def container_env(container: dict[str, Any], secrets: dict[tuple[str, str], str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for entry in container.get("env") or []:
        ref = (entry.get("valueFrom") or {}).get("secretKeyRef")
        if ref is not None:
            env[entry["name"]] = secrets[(ref["name"], ref["key"])]
            continue
        value = str(entry.get("value", ""))
        env[entry["name"]] = _REFERENCE.sub(lambda m: env.get(m[1], m[0]), value)
    return env


def run_kwargs(
    pod: dict[str, Any],
    container: dict[str, Any],
    secrets: dict[tuple[str, str], str],
    token_dir: Path | None = None,
) -> dict[str, Any]:
    """Keyword arguments of `docker.containers.run` for `container` of the pod `pod`."""
    pod_security = pod.get("securityContext") or {}
    security = container.get("securityContext") or {}
    kwargs: dict[str, Any] = {
        "image": container["image"],
        "entrypoint": container.get("command"),
        "command": container.get("args") or [],
        "environment": container_env(container, secrets),
        "network_mode": "host",
        "read_only": bool(security.get("readOnlyRootFilesystem")),
        "cap_drop": (security.get("capabilities") or {}).get("drop") or [],
        "security_opt": []
        if security.get("allowPrivilegeEscalation", True)
        else ["no-new-privileges"],
    }
    user = security.get("runAsUser", pod_security.get("runAsUser"))
    group = security.get("runAsGroup", pod_security.get("runAsGroup"))
    if user is not None:
        kwargs["user"] = f"{user}:{group}" if group is not None else str(user)
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    tmpfs, binds = {}, {}
    for mount in container.get("volumeMounts") or []:
        volume = volumes[mount["name"]]
        if "emptyDir" in volume:
            tmpfs[mount["mountPath"]] = "rw,mode=1777"
        elif "projected" in volume and token_dir is not None:
            binds[str(token_dir)] = {"bind": mount["mountPath"], "mode": "ro"}
        else:
            raise ValueError(f"the rehearsal cannot mount volume {volume}")
    kwargs["tmpfs"] = tmpfs
    if binds:
        kwargs["volumes"] = binds
    return kwargs
