"""Deadlines: many timeouts on one timer, with asyncio.timeout's semantics."""

from __future__ import annotations

import asyncio
import time

import pytest

from shoal.aio import Deadlines


async def test_a_wait_past_its_deadline_times_out_on_time() -> None:
    deadlines = Deadlines()
    started = time.perf_counter()
    with pytest.raises(asyncio.TimeoutError):
        with deadlines.limit(0.05):
            await asyncio.sleep(5)
    assert 0.04 <= time.perf_counter() - started < 1.0
    assert not deadlines._live


async def test_a_wait_done_in_time_is_left_alone_after_its_deadline() -> None:
    deadlines = Deadlines()
    with deadlines.limit(0.05):
        await asyncio.sleep(0)
    await asyncio.sleep(0.1)  # past the deadline: the task must not be cancelled now
    assert not deadlines._live


async def test_a_shorter_deadline_after_a_longer_one_still_fires_first() -> None:
    deadlines = Deadlines()

    async def wait(seconds: float, sleep: float) -> str:
        try:
            with deadlines.limit(seconds):
                await asyncio.sleep(sleep)
        except asyncio.TimeoutError:
            return "timeout"
        return "done"

    long_wait = asyncio.ensure_future(wait(30, 0.3))
    await asyncio.sleep(0.01)
    started = time.perf_counter()
    assert await wait(0.05, 5) == "timeout"
    assert time.perf_counter() - started < 1.0
    assert await long_wait == "done"  # the long one was not disturbed by the sweep


async def test_only_the_overdue_waits_of_many_time_out() -> None:
    deadlines = Deadlines()

    async def wait(seconds: float, sleep: float) -> str:
        try:
            with deadlines.limit(seconds):
                await asyncio.sleep(sleep)
        except asyncio.TimeoutError:
            return "timeout"
        return "done"

    results = await asyncio.gather(*(wait(0.05 if i % 2 else 10, 0.2 if i % 2 else 0.01) for i in range(20)))
    assert results == ["done", "timeout"] * 10
    assert not deadlines._live


async def test_an_outside_cancellation_stays_a_cancellation() -> None:
    deadlines = Deadlines()

    async def wait() -> None:
        with deadlines.limit(10):
            await asyncio.sleep(5)

    task = asyncio.ensure_future(wait())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not deadlines._live


async def test_the_error_raised_inside_passes_through() -> None:
    deadlines = Deadlines()
    with pytest.raises(KeyError):
        with deadlines.limit(10):
            await asyncio.sleep(0)
            raise KeyError("x")
    assert not deadlines._live


def test_one_instance_serves_one_loop_after_another() -> None:
    deadlines = Deadlines()

    async def run() -> str:
        try:
            with deadlines.limit(0.02):
                await asyncio.sleep(1)
        except asyncio.TimeoutError:
            return "timeout"
        return "done"

    # Each asyncio.run is a new loop (as each test's is); the second must still get its timer.
    assert asyncio.run(run()) == "timeout"
    assert asyncio.run(run()) == "timeout"


def test_outside_a_task_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        Deadlines().limit(1).__enter__()
