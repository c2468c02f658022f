"""The guard's body deadline, called as ASGI in one event loop: a stalled body gets 408 within
the deadline and a quarter, a body that arrives is untouched, and a cancellation from outside
(a server shutting down) is not swallowed as a timeout. The served behaviour over HTTP is in
test_hardening.py."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from mlstack.serving.guards import Guard

pytestmark = pytest.mark.unit

PATH = "/v1/models/propensity:predict"


def _scope() -> dict[str, Any]:
    return {
        "type": "http",
        "path": PATH,
        "headers": [(b"content-length", b"2")],
        "query_string": b"",
    }


async def _echo(scope: Any, receive: Any, send: Any) -> None:
    message = await receive()
    if message["type"] == "http.disconnect":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": message["body"]})


def _run(guard: Guard, receive: Any) -> tuple[list[dict[str, Any]], float]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def main() -> float:
        started = time.monotonic()
        await guard(_scope(), receive, send)
        return time.monotonic() - started

    return sent, asyncio.run(main())


def test_a_stalled_body_gets_408_within_the_deadline_and_a_quarter() -> None:
    async def stalled() -> dict[str, Any]:
        await asyncio.sleep(60)
        raise AssertionError("not reached")

    sent, waited = _run(Guard(_echo, max_bytes=1024, body_timeout=0.4), stalled)
    assert sent[0]["status"] == 408
    assert (b"connection", b"close") in sent[0]["headers"]
    assert b"did not arrive within 0.4 s" in sent[1]["body"]
    assert 0.4 <= waited < 0.4 * 1.25 + 0.2, waited


def test_bodies_that_arrive_are_answered_and_leave_nothing_watched() -> None:
    guard = Guard(_echo, max_bytes=1024, body_timeout=0.2)

    async def slowish() -> dict[str, Any]:
        await asyncio.sleep(0.05)  # well inside the deadline
        return {"type": "http.request", "body": b"{}", "more_body": False}

    for _ in range(3):
        sent, _ = _run(guard, slowish)
        assert [m.get("status") for m in sent] == [200, None] and sent[1]["body"] == b"{}"
    assert guard.watchdog.watching == 0


def test_a_cancellation_from_outside_is_not_taken_for_a_timeout() -> None:
    guard = Guard(_echo, max_bytes=1024, body_timeout=30)
    sent: list[dict[str, Any]] = []

    async def stalled() -> dict[str, Any]:
        await asyncio.sleep(60)
        raise AssertionError("not reached")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def main() -> None:
        request = asyncio.ensure_future(guard(_scope(), stalled, send))
        await asyncio.sleep(0.05)
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request

    asyncio.run(main())
    assert sent == []  # no 408: the request was cancelled, not timed out
