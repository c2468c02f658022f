"""An HTTP double of the Kubernetes API for InferenceServices, on loopback.

It keeps objects by (namespace, name), applies JSON merge patches (RFC 7386), bumps
`resourceVersion` on every write and answers 409 when a patch carries a stale one, 404 for a
missing object, and whatever status a test queues in `failures`. After each write it plays
KServe's controller for `status.components.predictor`: a changed predictor spec creates a
revision; `canaryTrafficPercent` P splits traffic P / 100-P between it and the last rolled-out
revision; without the field the newest revision is rolled out to 100%; 0 sends everything to
the previous rolled-out revision. Every request is recorded (method, path, headers, body).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.support.http_double import JsonHandler, serve_on_loopback

ITEM = re.compile(
    r"/apis/serving\.kserve\.io/v1beta1/namespaces/(?P<ns>[^/]+)/inferenceservices/(?P<name>[^/?]+)"
)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


@dataclass
class KubeApi:
    """The double's state."""

    url: str = ""
    objects: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    failures: list[tuple[str, int, str]] = field(default_factory=list)  # (method, code, message)
    revisions: dict[tuple[str, str], int] = field(default_factory=dict)
    version: int = 100
    on_patch: Any = None  # a callable run before a PATCH is applied (to simulate a race)

    def add(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Store an object as if created, reconciled once by the controller."""
        obj = copy.deepcopy(obj)
        key = (obj["metadata"].get("namespace", "default"), obj["metadata"]["name"])
        obj["metadata"]["namespace"] = key[0]
        self._reconcile(key, None, obj)
        self._bump(obj)
        self.objects[key] = obj
        return obj

    def patches(self) -> list[dict[str, Any]]:
        return [r["body"] for r in self.requests if r["method"] == "PATCH"]

    def _bump(self, obj: dict[str, Any]) -> None:
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)

    def _reconcile(
        self, key: tuple[str, str], old: dict[str, Any] | None, new: dict[str, Any]
    ) -> None:
        """KServe's controller, reduced to revisions and traffic."""

        def spec_without_split(obj: dict[str, Any] | None) -> Any:
            if obj is None:
                return None
            pred = dict(obj["spec"]["predictor"])
            pred.pop("canaryTrafficPercent", None)
            return pred

        status = (
            new.setdefault("status", {}).setdefault("components", {}).setdefault("predictor", {})
        )
        prior = copy.deepcopy(
            (old or {}).get("status", {}).get("components", {}).get("predictor", {})
        )
        status.clear()
        status.update(prior)
        if spec_without_split(old) != spec_without_split(new):
            n = self.revisions.get(key, 0) + 1
            self.revisions[key] = n
            status["latestCreatedRevision"] = f"{key[1]}-predictor-{n:05d}"
            status["latestReadyRevision"] = status["latestCreatedRevision"]
        latest = status["latestCreatedRevision"]
        rolled = status.get("latestRolledoutRevision")
        canary = new["spec"]["predictor"].get("canaryTrafficPercent")
        if rolled is None:
            status["latestRolledoutRevision"] = rolled = latest
        if canary is None or canary == 100:
            if latest != rolled:
                status["previousRolledoutRevision"] = rolled
                status["latestRolledoutRevision"] = rolled = latest
            status["traffic"] = [{"revisionName": latest, "percent": 100, "latestRevision": True}]
        elif canary == 0:
            back = rolled if latest != rolled else status.get("previousRolledoutRevision", rolled)
            status["traffic"] = [
                {"revisionName": back, "percent": 100, "latestRevision": back == latest}
            ]
        else:
            status["traffic"] = [
                {
                    "revisionName": latest,
                    "percent": canary,
                    "latestRevision": True,
                    "tag": "latest",
                },
                {
                    "revisionName": rolled,
                    "percent": 100 - canary,
                    "latestRevision": False,
                    "tag": "prev",
                },
            ]


class _Handler(JsonHandler):
    api: KubeApi

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return self._send(400, _status(400, "BadRequest", "request body is not JSON"))
        self.api.requests.append(
            {"method": method, "path": self.path, "headers": headers, "body": body}
        )
        for i, (fail_method, code, message) in enumerate(self.api.failures):
            if fail_method == method:
                del self.api.failures[i]
                return self._send(code, _status(code, "Injected", message))
        match = ITEM.fullmatch(self.path.split("?")[0])
        if match is None:
            return self._send(404, _status(404, "NotFound", f"no route {self.path}"))
        key = (match["ns"], match["name"])
        current = self.api.objects.get(key)
        if current is None:
            message = f'inferenceservices.serving.kserve.io "{key[1]}" not found'
            return self._send(404, _status(404, "NotFound", message))
        if method == "GET":
            return self._send(200, current)
        if headers.get("content-type") != "application/merge-patch+json":
            return self._send(
                415, _status(415, "UnsupportedMediaType", headers.get("content-type", ""))
            )
        if self.api.on_patch is not None:
            self.api.on_patch(self.api, key)
            current = self.api.objects[key]
        sent_version = (body.get("metadata") or {}).get("resourceVersion")
        if sent_version is not None and sent_version != current["metadata"]["resourceVersion"]:
            message = (
                f"Operation cannot be fulfilled on inferenceservices.serving.kserve.io "
                f'"{key[1]}": the object has been modified; please apply your changes to '
                f"the latest version and try again"
            )
            return self._send(409, _status(409, "Conflict", message))
        updated = merge_patch(current, body)
        updated["status"] = current.get("status", {})
        self.api._reconcile(key, current, updated)
        self.api._bump(updated)
        self.api.objects[key] = updated
        return self._send(200, updated)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_PATCH(self) -> None:
        self._handle("PATCH")


@contextmanager
def serve_kube() -> Iterator[KubeApi]:
    """Start the double on a free loopback port; yields its state with `url` set."""
    with serve_on_loopback(KubeApi(), _Handler) as api:
        yield api
