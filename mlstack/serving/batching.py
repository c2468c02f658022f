"""Micro-batching inside the event loop: calls made in the same loop turn run as one.

Concurrent requests each hand their rows to a `MicroBatcher` and await the result; the first
call of a turn schedules one flush with `loop.call_soon`, which runs right after the requests
already received in that turn have been parsed. A lone request therefore waits for nothing,
while under load the model's fixed cost per call (input checks, one pass per tree) and
Feast's per-lookup cost are paid once per turn instead of once per request. Each row is still
scored by the model's own `predict_proba`; rows do not interact, so results are the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[T, R]):
    """Calls `run(items)` once per event-loop turn for every item submitted in that turn;
    `run` returns one result per item, in order. An exception fails every call of the turn.

    `in_thread=True` runs `run` in the loop's executor: for I/O (a feature store lookup) that
    must not hold up the loop when the far side is slow; a caller may then stop waiting
    (`asyncio.wait_for`) while the call finishes in its thread."""

    def __init__(self, run: Callable[[Sequence[T]], Sequence[R]], in_thread: bool = False) -> None:
        self._run = run
        self._in_thread = in_thread
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._scheduled = False
        self.flushes = 0
        self.items = 0

    async def __call__(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        live = [(item, future) for item, future in pending if not future.cancelled()]
        if not live:
            return
        self.flushes += 1
        self.items += len(live)
        if not self._in_thread:
            self._deliver(live, lambda: self._run([item for item, _ in live]))
            return
        loop = asyncio.get_running_loop()
        done = loop.run_in_executor(None, self._run, [item for item, _ in live])
        done.add_done_callback(lambda finished: self._deliver(live, finished.result))

    def _deliver(
        self, live: list[tuple[T, asyncio.Future[R]]], results: Callable[[], Sequence[R]]
    ) -> None:
        try:
            values = results()
            if len(values) != len(live):
                raise RuntimeError(f"batch returned {len(values)} results for {len(live)} calls")
        except Exception as err:
            for _, future in live:
                if not future.done():  # a caller that stopped waiting has cancelled its own
                    future.set_exception(err)
            return
        for (_, future), value in zip(live, values, strict=True):
            if not future.done():
                future.set_result(value)
