"""Callback storage on a real redis-server: two nodes claiming at once
never get the same callback; a lapsed lease passes to another node and
the old holder can no longer write; admission in plain values."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st

from cti.callbacks.admission import Staffing, can_promise, expected_wait, slots
from cti.callbacks.models import Callback, Status
from cti.callbacks.store import CallbackStore
from tests.servers import redis_server

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def redis(tmp_path: Path) -> AsyncIterator[aioredis.Redis]:
    with redis_server(tmp_path) as url:
        client = aioredis.from_url(url, decode_responses=True)
        yield client
        await client.aclose()


def _callback(i: int, due: float) -> Callback:
    return Callback(id=f"{i:022d}", number=f"+336112233{i:02d}", service="support",
                    requested_at=due, due_at=due, expected_at=due, enqueued_at=due)


async def test_two_nodes_claiming_at_once_never_share_a_callback(
        redis: aioredis.Redis) -> None:
    store = CallbackStore(redis)
    for i in range(60):
        await store.accept(_callback(i, 100.0 + i))
    nodes = [CallbackStore(redis) for _ in range(4)]
    claims = await asyncio.gather(*(
        node.claim(1000.0, 30.0, f"node{n}", 7) for n, node in enumerate(nodes * 5)))
    flat = [i for claim in claims for i in claim]
    assert len(flat) == len(set(flat)) == 60


async def test_a_lapsed_lease_passes_to_another_node_and_fences_the_old_one(
        redis: aioredis.Redis) -> None:
    store = CallbackStore(redis)
    callback = _callback(1, 10.0)
    await store.accept(callback)
    assert await store.claim(20.0, 5.0, "a", 10) == [callback.id]
    assert await store.claim(24.0, 5.0, "b", 10) == []          # a's lease holds
    assert await store.claim(26.0, 5.0, "b", 10) == [callback.id]  # lapsed at 25
    assert await store.renew([callback.id], 40.0, "a") == [callback.id]
    queued = callback.model_copy(update={"status": Status.QUEUED})
    assert not await store.write(queued, "a")
    assert not await store.settle(queued, "a", None)
    assert await store.settle(queued.model_copy(update={"status": Status.COMPLETED}), "b",
                              None)
    assert await redis.zcard("cti:cb:claimed") == 0


async def test_future_callbacks_are_not_claimed_before_they_are_due(
        redis: aioredis.Redis) -> None:
    store = CallbackStore(redis)
    await store.accept(_callback(1, 500.0))
    assert await store.claim(499.0, 5.0, "a", 10) == []
    assert await store.claim(500.0, 5.0, "a", 10) == [_callback(1, 500.0).id]


def test_nobody_logged_in_means_no_asap_promise_but_rostered_slots() -> None:
    staffing = Staffing(waiting=0, staffed=0, available=0, rostered=3, handle_seconds=300)
    assert expected_wait(staffing) is None
    assert can_promise(staffing, 3600) is None
    offered = slots(1000.0, staffing, {}, slot_seconds=1800, count=4)
    assert len(offered) == 4 and offered[0].start >= 1000 + 900
    assert all(s.free == 9 for s in offered)   # 3 people * 6 calls each, half of it


def test_a_long_queue_breaks_the_promise() -> None:
    staffing = Staffing(waiting=30, staffed=2, available=0, rostered=2, handle_seconds=300)
    assert expected_wait(staffing) == 31 * 300 / 2
    assert can_promise(staffing, 3600) is None


@given(waiting=st.integers(0, 500), staffed=st.integers(1, 50), available=st.integers(0, 50),
       handle=st.floats(10, 3600), booked=st.integers(0, 50))
def test_slots_are_ordered_aligned_and_never_overbooked(
        waiting: int, staffed: int, available: int, handle: float, booked: int) -> None:
    available = min(available, staffed)
    staffing = Staffing(waiting, staffed, available, staffed, handle)
    size = 1800.0
    first = slots(0.0, staffing, {}, slot_seconds=size, count=6)
    taken = {s.start: booked for s in first}
    offered = slots(0.0, staffing, taken, slot_seconds=size, count=6)
    starts = [s.start for s in offered]
    assert starts == sorted(starts) and all(s % size == 0 for s in starts)
    assert all(s.free > 0 for s in offered)
    wait = expected_wait(staffing) or 0.0
    assert all(s >= wait for s in starts)
