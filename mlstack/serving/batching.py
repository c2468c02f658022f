"""Micro-batching inside the event loop: calls made in the same loop turn run as one.

Concurrent requests each hand their rows to a `MicroBatcher` and await the result; the first
call of a turn schedules one flush with `loop.call_soon`, which runs right after the requests
already received in that turn have been parsed. A lone request therefore waits for nothing,
while under load the model's fixed cost per call (input checks, one pass per tree) and
Feast's per-lookup cost are paid once per turn instead of once per request. Each row is still
scored by the model's own `predict_proba`; rows do not interact, so results are the same.

`run` is a plain function (run in the loop, or in the loop's executor with `in_thread`) or a
coroutine function (run as a task in the loop: asyncio I/O such as a Redis read).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[T, R]):
    """Calls `run(items)` once per event-loop turn for every item submitted in that turn;
    `run` returns (or, a coroutine function, resolves to) one result per item, in order. An
    exception fails every call of the turn.

    `in_thread=True` runs a plain `run` in the loop's executor: for blocking I/O (a feature
    store file) that must not hold up the loop when the far side is slow. Either way a caller
    may stop waiting (`asyncio.timeout`) while the call finishes on its own."""

    def __init__(
        self,
        run: Callable[[Sequence[T]], Sequence[R]] | Callable[[Sequence[T]], Awaitable[Sequence[R]]],
        in_thread: bool = False,
    ) -> None:
        self._run = run
        self._coroutine = inspect.iscoroutinefunction(run)
        if self._coroutine and in_thread:
            raise ValueError("in_thread is for a blocking function, not a coroutine function")
        self._in_thread = in_thread
        self._tasks: set[asyncio.Future[Sequence[R]]] = set()  # referenced until done
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
        items = [item for item, _ in live]
        if not self._coroutine and not self._in_thread:
            self._deliver(live, lambda: self._run(items))  # type: ignore[return-value]
            return
        loop = asyncio.get_running_loop()
        if self._coroutine:
            done = loop.create_task(self._run(items))  # type: ignore[arg-type]
        else:
            done = loop.run_in_executor(None, self._run, items)
        self._tasks.add(done)
        done.add_done_callback(self._tasks.discard)
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
