"""The bus isolates subscribers: a failing or slow one hurts nobody."""

from __future__ import annotations

import asyncio

from cti.bus import Bus


async def test_failing_subscriber_does_not_stop_the_others() -> None:
    bus = Bus()
    got: list[object] = []

    def broken(event: object) -> None:
        raise RuntimeError("boom")

    bus.subscribe("broken", broken)
    bus.subscribe("good", got.append)
    for number in range(3):
        bus.publish(number)
    await bus.drain()
    assert got == [0, 1, 2]
    assert bus.stats()["broken"]["failed"] == 3
    await bus.close()


async def test_slow_subscriber_loses_oldest_events_and_never_blocks_publish() -> None:
    bus = Bus(queue_size=2)
    release = asyncio.Event()
    got: list[object] = []

    async def slow(event: object) -> None:
        await release.wait()
        got.append(event)

    bus.subscribe("slow", slow)
    await asyncio.sleep(0)
    for number in range(10):
        bus.publish(number)  # returns at once although nobody reads
    release.set()
    await bus.drain()
    assert got[-2:] == [8, 9]
    assert bus.stats()["slow"]["dropped"] >= 7
    await bus.close()


async def test_close_cancels_subscriber_tasks() -> None:
    bus = Bus()
    bus.subscribe("idle", lambda event: None)
    await bus.close()
    assert bus.stats() == {}
