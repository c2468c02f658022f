"""Micro-batching: calls of one event-loop turn run together, each gets its own result."""

from __future__ import annotations

import asyncio
import time

import pytest

from mlstack.serving.batching import MicroBatcher

pytestmark = pytest.mark.unit


def test_calls_in_the_same_turn_share_one_run_and_keep_their_results():
    runs: list[list[int]] = []

    def double(items):
        runs.append(list(items))
        return [2 * item for item in items]

    batcher = MicroBatcher(double)

    async def main():
        together = await asyncio.gather(*(batcher(i) for i in range(5)))
        alone = await batcher(10)
        return together, alone

    together, alone = asyncio.run(main())
    assert together == [0, 2, 4, 6, 8] and alone == 20
    assert runs == [[0, 1, 2, 3, 4], [10]]
    assert (batcher.flushes, batcher.items) == (2, 6)


def test_a_failing_run_fails_every_call_of_its_turn_and_not_the_next():
    def fragile(items):
        if -1 in items:
            raise ValueError("bad item")
        return list(items)

    batcher = MicroBatcher(fragile)

    async def main():
        first = await asyncio.gather(batcher(1), batcher(-1), return_exceptions=True)
        return first, await batcher(3)

    first, later = asyncio.run(main())
    assert all(isinstance(result, ValueError) for result in first)
    assert later == 3


def test_a_run_returning_the_wrong_number_of_results_is_an_error():
    batcher = MicroBatcher(lambda items: [])
    with pytest.raises(RuntimeError, match="0 results for 1 calls"):
        asyncio.run(batcher(1))


@pytest.mark.parametrize("mode", ["in_thread", "coroutine"])
def test_io_runs_batch_a_turn_and_a_caller_can_stop_waiting_while_the_run_ends(mode):
    """A blocking run in the executor, or a coroutine run as a task: calls of one turn still
    share one run, and a caller whose timeout passes gets TimeoutError at once while the
    slow run finishes on its own (the next turn is not held up by it)."""
    runs: list[list[float]] = []

    def blocking(items):
        runs.append(list(items))
        time.sleep(max(items))
        return list(items)

    async def coroutine(items):
        runs.append(list(items))
        await asyncio.sleep(max(items))
        return list(items)

    batcher = (
        MicroBatcher(blocking, in_thread=True) if mode == "in_thread" else MicroBatcher(coroutine)
    )

    async def main():
        loop = asyncio.get_running_loop()
        together = await asyncio.gather(batcher(0.01), batcher(0.02))
        started = loop.time()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await batcher(0.5)
        waited = loop.time() - started
        quick = await batcher(0.0)
        return together, waited, quick

    together, waited, quick = asyncio.run(main())
    assert together == [0.01, 0.02] and quick == 0.0
    assert waited < 0.3
    assert runs[0] == [0.01, 0.02] and runs[-1] == [0.0]


def test_a_coroutine_run_cannot_be_sent_to_a_thread():
    async def run(items):
        return items

    with pytest.raises(ValueError, match="in_thread is for a blocking function"):
        MicroBatcher(run, in_thread=True)
