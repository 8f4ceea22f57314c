"""Admission: running slots, a bounded FIFO queue, 503 past it, no leaked slots."""

from __future__ import annotations

import asyncio

import pytest

from shoal.core.admission import Admission
from shoal.errors import OverloadedError


async def test_slots_then_queue_then_503_with_retry_after() -> None:
    adm = Admission(slots=2, max_queue=1, retry_after=7)
    await adm.acquire()
    await adm.acquire()
    assert adm.running == 2
    waiter = asyncio.ensure_future(adm.acquire())
    await asyncio.sleep(0)
    assert adm.queued == 1 and not waiter.done()
    with pytest.raises(OverloadedError) as info:
        await adm.acquire()
    err = info.value
    assert err.status_code == 503
    assert err.headers == {"retry-after": "7"}
    assert err.to_dict()["code"] == "overloaded"
    adm.release()
    await waiter
    assert adm.running == 2 and adm.queued == 0


async def test_zero_queue_rejects_at_once() -> None:
    adm = Admission(slots=1, max_queue=0)
    await adm.acquire()
    with pytest.raises(OverloadedError):
        await adm.acquire()


async def test_waiters_are_served_first_come_first_served() -> None:
    adm = Admission(slots=1, max_queue=10)
    await adm.acquire()
    order: list[int] = []

    async def wait(n: int) -> None:
        await adm.acquire()
        order.append(n)

    tasks = [asyncio.ensure_future(wait(n)) for n in range(4)]
    await asyncio.sleep(0)
    assert adm.queued == 4
    for _ in range(4):
        adm.release()
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3]
    assert adm.running == 1  # the slot passed hand to hand, never freed in between


async def test_a_newcomer_does_not_jump_the_queue() -> None:
    adm = Admission(slots=1, max_queue=10)
    await adm.acquire()
    first = asyncio.ensure_future(adm.acquire())
    await asyncio.sleep(0)
    adm.release()  # handed to `first`, not yet running
    late = asyncio.ensure_future(adm.acquire())
    await asyncio.sleep(0)
    assert first.done() and not late.done()
    adm.release()
    await late
    assert adm.running == 1


async def test_cancelled_waiter_leaves_the_queue() -> None:
    adm = Admission(slots=1, max_queue=1)
    await adm.acquire()
    waiter = asyncio.ensure_future(adm.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert adm.queued == 0
    adm.release()
    assert adm.running == 0
    await adm.acquire()  # the queue has room again and the slot is free
    assert adm.running == 1


async def test_waiter_cancelled_just_after_the_handoff_passes_the_slot_on() -> None:
    adm = Admission(slots=1, max_queue=2)
    await adm.acquire()
    a = asyncio.ensure_future(adm.acquire())
    b = asyncio.ensure_future(adm.acquire())
    await asyncio.sleep(0)
    adm.release()  # hands the slot to `a`'s future...
    a.cancel()  # ...but `a` gives up before it runs
    with pytest.raises(asyncio.CancelledError):
        await a
    await asyncio.wait_for(b, 1)  # so `b` gets it
    assert adm.running == 1 and adm.queued == 0
    adm.release()
    assert adm.running == 0


async def test_timeout_while_waiting_does_not_leak() -> None:
    adm = Admission(slots=1, max_queue=5)
    await adm.acquire()
    for _ in range(3):
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(adm.acquire(), 0.01)
    assert adm.queued == 0
    adm.release()
    assert adm.running == 0
