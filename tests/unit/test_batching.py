"""GreedyBatcher: the ranker deployment's cross-request batching (pure asyncio, no Ray)."""

from __future__ import annotations

import asyncio
import time

import pytest

from deployments.batching import GreedyBatcher


def recorder(seconds: float = 0.0, fail_on=None):
    """A batch function that records each batch, sleeps ``seconds`` and doubles its jobs."""
    batches: list[list[int]] = []

    async def fn(jobs):
        batches.append(list(jobs))
        await asyncio.sleep(seconds)
        if fail_on is not None and fail_on in jobs:
            raise ValueError(f"bad job {fail_on}")
        return [2 * j for j in jobs]

    return fn, batches


def test_a_lone_call_runs_at_once_and_calls_arriving_during_a_batch_join_the_next_one():
    fn, batches = recorder(0.05)
    batcher = GreedyBatcher(fn, max_batch_size=16)

    async def scenario():
        t0 = time.perf_counter()
        first = asyncio.ensure_future(batcher.submit(1))
        await asyncio.sleep(0.01)  # the first batch is running
        later = [asyncio.ensure_future(batcher.submit(j)) for j in (2, 3, 4, 5)]
        assert await first == 2
        lone_s = time.perf_counter() - t0
        return lone_s, await asyncio.gather(*later)

    lone_s, later = asyncio.run(scenario())
    assert lone_s < 0.08  # 0.05 of work, no wait for company
    assert later == [4, 6, 8, 10] and batches == [[1], [2, 3, 4, 5]]
    assert (batcher.batches, batcher.jobs) == (2, 5)


def test_batches_hold_at_most_max_batch_size_jobs_in_arrival_order():
    fn, batches = recorder()
    batcher = GreedyBatcher(fn, max_batch_size=4)

    async def scenario():
        return await asyncio.gather(*(batcher.submit(j) for j in range(10)))

    assert asyncio.run(scenario()) == [2 * j for j in range(10)]
    assert batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_a_wait_lets_a_batch_fill_and_ends_early_once_it_is_full():
    fn, batches = recorder()
    batcher = GreedyBatcher(fn, max_batch_size=3, batch_wait_timeout_s=0.2)

    async def scenario():
        t0 = time.perf_counter()
        calls = [asyncio.ensure_future(batcher.submit(1))]
        for j in (2, 3):
            await asyncio.sleep(0.02)
            calls.append(asyncio.ensure_future(batcher.submit(j)))
        await asyncio.gather(*calls)
        return time.perf_counter() - t0

    elapsed = asyncio.run(scenario())
    assert batches == [[1, 2, 3]] and elapsed < 0.15  # full after ~0.04 s, not after the 0.2 s wait


def test_an_error_reaches_every_caller_of_its_batch_and_the_next_batch_still_runs():
    fn, batches = recorder(fail_on=2)
    batcher = GreedyBatcher(fn, max_batch_size=8)

    async def scenario():
        failed = await asyncio.gather(*(batcher.submit(j) for j in (1, 2, 3)), return_exceptions=True)
        return failed, await batcher.submit(7)

    failed, after = asyncio.run(scenario())
    assert all(isinstance(e, ValueError) and "bad job 2" in str(e) for e in failed)
    assert after == 14 and batches == [[1, 2, 3], [7]]


def test_a_caller_cancelled_while_waiting_is_left_out_of_the_batch():
    fn, batches = recorder(0.05)
    batcher = GreedyBatcher(fn, max_batch_size=8)

    async def scenario():
        first = asyncio.ensure_future(batcher.submit(1))
        await asyncio.sleep(0.01)
        gone, stays = asyncio.ensure_future(batcher.submit(2)), asyncio.ensure_future(batcher.submit(3))
        await asyncio.sleep(0)
        gone.cancel()
        return await first, await stays

    assert asyncio.run(scenario()) == (2, 6)
    assert batches == [[1], [3]]


def test_a_wrong_number_of_results_is_an_error_for_the_callers():
    async def fn(jobs):
        return jobs[:-1]

    batcher = GreedyBatcher(fn, max_batch_size=4)

    async def scenario():
        return await asyncio.gather(*(batcher.submit(j) for j in (1, 2)), return_exceptions=True)

    out = asyncio.run(scenario())
    assert all(isinstance(e, RuntimeError) and "1 results for 2 jobs" in str(e) for e in out)


def test_bad_settings_are_refused():
    fn, _ = recorder()
    with pytest.raises(ValueError):
        GreedyBatcher(fn, max_batch_size=0)
    with pytest.raises(ValueError):
        GreedyBatcher(fn, batch_wait_timeout_s=-1)
