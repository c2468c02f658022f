"""ASGI guards in front of the model server: which routes exist, who may call them, and how
long and large a request may be.

- Only the routes users call are served (`SERVED_PATHS`: V1 and V2 predict, model metadata,
  readiness and health, metrics, the OpenAPI document). KServe's others (the model
  repository's load and unload, versioned routes, model lists, explain) answer 404 and are
  left out of the OpenAPI document: one unauthenticated `unload` would otherwise take the
  model out of service.
- With `serving.auth_token` set, every route but health, readiness, metrics and the OpenAPI
  document needs `Authorization: Bearer <token>`; else 401.
- A body larger than the limit gets 413 (from Content-Length, or counted as it streams), and
  a client that stops sending its body mid-way gets 408 after `body_timeout` seconds (up to
  a quarter more); either way other connections are not held up.

`Guard` does all of it in one ASGI layer.
"""

from __future__ import annotations

import asyncio
import hmac
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from mlstack.serving import metrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset(
    {
        "/",
        "/metrics",
        "/openapi.json",
        "/v2/health/live",
        "/v2/health/ready",
        "/v1/models/{model_name}",
        "/v2/models/{model_name}/ready",
    }
)
"""Route templates anyone may call: the kubelet's probes, Prometheus, API discovery."""

SERVED_PATHS = OPEN_PATHS | {
    "/v1/models/{model_name}:predict",
    "/v2",
    "/v2/models/{model_name}",
    "/v2/models/{model_name}/infer",
    "/v2/models/{model_name}/status",
}
"""Every route template the server keeps; the rest of KServe's answer 404."""


def _matcher(templates: frozenset[str]) -> re.Pattern[str]:
    """One regular expression for route templates: `{param}` matches a path segment."""
    patterns = (
        re.sub(r"\\\{[a-z_]+\\\}", "[^/:]+", re.escape(template)) for template in sorted(templates)
    )
    return re.compile("^(" + "|".join(patterns) + ")$")


_OPEN = _matcher(OPEN_PATHS)
_SERVED = _matcher(SERVED_PATHS)


def is_open(path: str) -> bool:
    """Whether a request path is one of `OPEN_PATHS` (no token needed)."""
    return _OPEN.match(path) is not None


def is_served(path: str) -> bool:
    """Whether a request path matches one of `SERVED_PATHS`."""
    return _SERVED.match(path) is not None


def served_openapi(app: Any) -> Callable[[], dict[str, Any]]:
    """`app.openapi` showing only `SERVED_PATHS`: the document clients and schemathesis read
    lists what the server answers."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()  # FastAPI caches it in app.openapi_schema
            schema["paths"] = {p: v for p, v in schema["paths"].items() if p in SERVED_PATHS}
        return app.openapi_schema

    return openapi


async def _answer(send: Send, status: int, error: str, headers: list[tuple[bytes, bytes]]) -> None:
    body = orjson.dumps({"error": error})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Watchdog:
    """Cancels a task that has waited longer than `seconds` in a read it watches, cheaply.

    A timer per read (`asyncio.timeout`) costs about 12 µs under uvloop, more than the rest
    of the guard together, on every request, though a body almost always arrives with its
    headers. Instead a read is put on a list (`start`) and taken off (`stop`), and while the
    list is not empty one sweep every `seconds / 4` cancels the reads past their deadline: a
    stalled read ends between `seconds` and 1.25 × `seconds`. The cancelled read asks
    `expired(task)` whether the cancellation came from here (then it is taken back) or from
    outside (a shutdown), which it must let through.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._deadlines: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._sweep_at: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def watching(self) -> int:
        """How many reads are being watched."""
        return len(self._deadlines)

    def start(self, task: asyncio.Task[Any]) -> None:
        loop = asyncio.get_running_loop()
        self._deadlines[task] = loop.time() + self.seconds
        if self._sweep_at is None or self._loop is not loop:
            self._loop = loop
            self._sweep_at = loop.call_later(self.seconds / 4, self._sweep)

    def stop(self, task: asyncio.Task[Any]) -> None:
        self._deadlines.pop(task, None)

    def expired(self, task: asyncio.Task[Any]) -> bool:
        if task not in self._expired:
            return False
        self._expired.discard(task)
        task.uncancel()
        return True

    def _sweep(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        for task in [t for t, deadline in self._deadlines.items() if deadline <= now]:
            # the task waits in its read (between start and stop there is only that await),
            # so the cancellation lands there
            del self._deadlines[task]
            self._expired.add(task)
            task.cancel()
        self._sweep_at = (
            self._loop.call_later(self.seconds / 4, self._sweep) if self._deadlines else None
        )


class Guard:
    """The one ASGI layer in front of the server (one layer: each costs every request):

    - a path outside `SERVED_PATHS` gets 404;
    - with a token, a route that is not open needs `Authorization: Bearer <token>`, else 401;
    - a body over `max_bytes` gets 413 (from Content-Length, or counted as it streams), and
      one that stalls for `body_timeout` seconds between two parts (up to a quarter more:
      see `Watchdog`) 408, both with
      `Connection: close`. The app is then told the client has gone (`http.disconnect`) and
      whatever it sends is dropped (raising through it would not do: FastAPI turns any error
      while it reads a body into its own 400);
    - while `closing()` is true (a server draining before shutdown) every response carries
      `Connection: close`, so keep-alive clients open their next connection elsewhere.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        body_timeout: float,
        token: str | None = None,
        closing: Callable[[], bool] = lambda: False,
    ) -> None:
        if token is not None and not token:
            raise ValueError("the bearer token is empty")
        self.app = app
        self.max_bytes = max_bytes
        self.body_timeout = body_timeout
        self._expected = b"Bearer " + token.encode() if token else None
        self.closing = closing
        self.watchdog = Watchdog(body_timeout)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if not is_served(path):
            await _answer(send, 404, f"no such route: {path}", [])
            return
        declared, given = b"", b""
        for key, value in scope["headers"]:
            if key == b"content-length":
                declared = value
            elif key == b"authorization":
                given = value
        needs_token = self._expected is not None and not is_open(path)
        if needs_token and not hmac.compare_digest(given, self._expected or b""):
            metrics.ERRORS.labels(kind="unauthorized").inc()
            reason = "missing" if not given else "not valid"
            await _answer(
                send,
                401,
                f"the bearer token is {reason}: send 'Authorization: Bearer <token>'",
                [(b"www-authenticate", b'Bearer realm="mlstack"')],
            )
            return
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(send, int(declared))
            return
        if b"model_version=" in scope["query_string"] and path.startswith("/v2/models/"):
            # KServe takes it as a query parameter on V2 routes and answers 501
            await _answer(
                send,
                400,
                "model_version is not supported: the server serves one version, the one its "
                "alias points to (each answer names it in model_version)",
                [],
            )
            return
        received = 0
        started = answered = False

        async def limited_receive() -> Message:
            nonlocal received, answered
            if answered:
                return {"type": "http.disconnect"}
            task = asyncio.current_task()
            assert task is not None
            try:
                self.watchdog.start(task)
                message = await receive()
            except asyncio.CancelledError:
                if not self.watchdog.expired(task):
                    raise  # a cancellation of the request itself (shutdown): not the guard's
                metrics.ERRORS.labels(kind="slow_client").inc()
                if not started:
                    answered = True
                    await _answer(
                        send,
                        408,
                        f"the request body did not arrive within {self.body_timeout:g} s",
                        [(b"connection", b"close")],
                    )
                return {"type": "http.disconnect"}
            finally:
                self.watchdog.stop(task)
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes and not started:
                    answered = True
                    await self._too_large(send, received)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if answered:
                return  # the guard has answered; the app's reply to a gone client is dropped
            if message["type"] == "http.response.start":
                started = True
                if self.closing():
                    headers = [(k, v) for k, v in message.get("headers", []) if k != b"connection"]
                    message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not answered:
                raise  # the app's own failure, for the server's error handling
            # else: the app failed on the disconnect the guard reported; it has been answered

    async def _too_large(self, send: Send, size: int) -> None:
        metrics.ERRORS.labels(kind="too_large").inc()
        await _answer(
            send,
            413,
            f"the request body is too large: {size} bytes or more, at most {self.max_bytes} "
            "(16 KiB per instance of serving.max_batch_size)",
            [(b"connection", b"close")],
        )
