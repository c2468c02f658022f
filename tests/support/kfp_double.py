"""An HTTP double of the KFP v2beta1 REST API on loopback, for the real `kfp.Client`.

It keeps experiments, runs and recurring runs by id, honours the `display_name` EQUALS filter
and the `experiment_id` query the client sends, records every request (method, path, query,
headers, body) and can be told to fail a route with a status code.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.parser import BytesParser
from typing import Any
from urllib.parse import parse_qs, urlparse

import yaml

from tests.support.http_double import JsonHandler, serve_on_loopback

API = "/apis/v2beta1"
KINDS = {
    "experiments": "experiment_id",
    "runs": "run_id",
    "recurringruns": "recurring_run_id",
    "pipelines": "pipeline_id",
    "versions": "pipeline_version_id",
}


@dataclass
class KfpApi:
    """The double's state: objects by kind and id, the requests seen, forced failures."""

    url: str = ""
    objects: dict[str, dict[str, dict[str, Any]]] = field(
        default_factory=lambda: {kind: {} for kind in KINDS}
    )
    requests: list[dict[str, Any]] = field(default_factory=list)
    fail: dict[tuple[str, str], tuple[int, str]] = field(default_factory=dict)

    def bodies(self, method: str, kind: str) -> list[dict[str, Any]]:
        """Request bodies sent to `method /apis/v2beta1/<kind>`."""
        return [
            r["body"]
            for r in self.requests
            if r["method"] == method and r["path"] == f"{API}/{kind}"
        ]


def _matches(obj: dict[str, Any], query: dict[str, list[str]]) -> bool:
    if "experiment_id" in query and obj.get("experiment_id") != query["experiment_id"][0]:
        return False
    if "filter" in query:
        for pred in json.loads(query["filter"][0]).get("predicates", []):
            key = pred["key"]
            want = pred.get("stringValue", pred.get("string_value"))
            if pred["operation"] not in ("EQUALS", 1) or obj.get(key) != want:
                return False
    return True


class _Handler(JsonHandler):
    api: KfpApi

    def _handle(self, method: str) -> None:
        url = urlparse(self.path)
        query = parse_qs(url.query)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        ctype = self.headers.get("Content-Type", "")
        if ctype.startswith("multipart/form-data"):
            head = b"Content-Type: " + ctype.encode() + b"\r\n\r\n"
            message = BytesParser().parsebytes(head + raw)
            files = {
                part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
                for part in message.get_payload()
            }
            body = {"uploadfile": files.get("uploadfile")}
        else:
            body = json.loads(raw) if raw else None
        self.api.requests.append(
            {
                "method": method,
                "path": url.path,
                "query": query,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body,
            }
        )
        if (method, url.path) in self.api.fail:
            code, message = self.api.fail[(method, url.path)]
            return self._send(code, {"code": code, "message": message})
        if url.path == f"{API}/healthz":
            return self._send(200, {"multi_user": False})
        if method == "POST" and url.path in (
            f"{API}/pipelines/upload",
            f"{API}/pipelines/upload_version",
        ):
            return self._upload(url.path.endswith("upload_version"), query, body)
        if (
            method == "GET"
            and url.path.startswith(f"{API}/pipelines/")
            and url.path.endswith("/versions")
        ):
            pipeline_id = url.path.split("/")[-2]
            items = [
                v
                for v in self.api.objects["versions"].values()
                if v["pipeline_id"] == pipeline_id and _matches(v, query)
            ]
            return self._send(200, {"pipeline_versions": items, "total_size": len(items)})
        parts = url.path.removeprefix(API + "/").split("/")
        kind = parts[0]
        if kind not in KINDS or not url.path.startswith(API):
            return self._send(404, {"code": 404, "message": f"no route {url.path}"})
        store = self.api.objects[kind]
        id_key = KINDS[kind]
        if method == "POST" and len(parts) == 1:
            if not isinstance(body, dict) or not body.get("display_name"):
                return self._send(400, {"code": 400, "message": "display_name is required"})
            ref = body.get("pipeline_version_reference") or {}
            if ref and ref.get("pipeline_version_id") not in self.api.objects["versions"]:
                message = f"pipeline version {ref.get('pipeline_version_id')!r} not found"
                return self._send(404, {"code": 404, "message": message})
            if (
                kind != "experiments"
                and body.get("experiment_id") not in self.api.objects["experiments"]
            ):
                message = f"experiment {body.get('experiment_id')!r} not found"
                return self._send(404, {"code": 404, "message": message})
            obj = {**body, id_key: str(uuid.uuid4()), "created_at": "2026-11-23T00:00:00Z"}
            if kind == "runs":
                obj["state"] = "PENDING"
            store[obj[id_key]] = obj
            return self._send(200, obj)
        if method == "GET" and len(parts) == 1:
            items = [o for o in store.values() if _matches(o, query)]
            return self._send(
                200,
                {kind.replace("recurringruns", "recurringRuns"): items, "total_size": len(items)},
            )
        if method == "GET" and len(parts) == 2:
            if parts[1] not in store:
                return self._send(404, {"code": 404, "message": f"{kind} {parts[1]} not found"})
            return self._send(200, store[parts[1]])
        return self._send(405, {"code": 405, "message": f"{method} {url.path} not supported"})

    def _upload(self, is_version: bool, query: dict[str, list[str]], body: Any) -> None:
        data = (body or {}).get("uploadfile")
        try:
            spec = yaml.safe_load(data) if data else None
        except yaml.YAMLError:
            spec = None
        if not isinstance(spec, dict) or "pipelineInfo" not in spec:
            return self._send(400, {"code": 400, "message": "uploadfile is not a pipeline spec"})
        name = query.get("name", [""])[0]
        if is_version:
            pipeline_id = query.get("pipelineid", [""])[0]
            if pipeline_id not in self.api.objects["pipelines"]:
                return self._send(
                    404, {"code": 404, "message": f"pipeline {pipeline_id} not found"}
                )
        else:
            if any(p["display_name"] == name for p in self.api.objects["pipelines"].values()):
                return self._send(409, {"code": 409, "message": f"pipeline {name} already exists"})
            pipeline_id = str(uuid.uuid4())
            self.api.objects["pipelines"][pipeline_id] = {
                "pipeline_id": pipeline_id,
                "display_name": name,
                "namespace": query.get("namespace", [""])[0],
            }
        version = {
            "pipeline_id": pipeline_id,
            "pipeline_version_id": str(uuid.uuid4()),
            "display_name": name,
            "pipeline_spec": spec,
        }
        self.api.objects["versions"][version["pipeline_version_id"]] = version
        result = version if is_version else self.api.objects["pipelines"][pipeline_id]
        return self._send(200, result)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")


@contextmanager
def serve_kfp() -> Iterator[KfpApi]:
    """Start the double on a free loopback port; yields its state with `url` set."""
    with serve_on_loopback(KfpApi(), _Handler) as api:
        yield api
