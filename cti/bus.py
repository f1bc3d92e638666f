"""The in-process bus: domain events from the tracker and router to their
subscribers (web hubs, store, stats).

Each subscriber has its own bounded queue and task, so a slow or failing
subscriber never slows the AMI path or the other subscribers: when its
queue is full the oldest events are dropped and counted (a hub then sends
a fresh snapshot), and an exception is logged with context and the
subscriber carries on.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger(__name__)

Subscriber = Callable[[object], Awaitable[None] | None]


@dataclass
class _Subscription:
    name: str
    deliver: Subscriber
    queue: asyncio.Queue[object]
    task: asyncio.Task[None] | None = None
    dropped: int = 0
    failed: int = 0
    delivered: int = 0
    lagging: bool = field(default=False)


class Bus:
    def __init__(self, queue_size: int = 10_000) -> None:
        self._queue_size = queue_size
        self._subscriptions: list[_Subscription] = []
        self._closed = False

    def subscribe(self, name: str, deliver: Subscriber) -> None:
        subscription = _Subscription(name, deliver, asyncio.Queue(self._queue_size))
        subscription.task = asyncio.create_task(self._pump(subscription), name=f"bus:{name}")
        self._subscriptions.append(subscription)

    def publish(self, event: object) -> None:
        """Never blocks: a full queue loses its oldest event, not the newest."""
        for subscription in self._subscriptions:
            queue = subscription.queue
            if queue.full():
                queue.get_nowait()
                queue.task_done()
                subscription.dropped += 1
                if not subscription.lagging:
                    subscription.lagging = True
                    log.warning("bus.subscriber_lagging", subscriber=subscription.name)
            queue.put_nowait(event)

    def stats(self) -> dict[str, dict[str, int]]:
        return {
            s.name: {"queued": s.queue.qsize(), "dropped": s.dropped, "failed": s.failed,
                     "delivered": s.delivered}
            for s in self._subscriptions
        }

    async def drain(self) -> None:
        """Wait until every queued event was delivered (tests, shutdown)."""
        for subscription in self._subscriptions:
            await subscription.queue.join()

    async def close(self) -> None:
        self._closed = True
        for subscription in self._subscriptions:
            if subscription.task is not None:
                subscription.task.cancel()
        await asyncio.gather(
            *(s.task for s in self._subscriptions if s.task is not None), return_exceptions=True
        )
        self._subscriptions.clear()

    async def _pump(self, subscription: _Subscription) -> None:
        while True:
            event = await subscription.queue.get()
            try:
                result = subscription.deliver(event)
                if inspect.isawaitable(result):
                    await result
                subscription.delivered += 1
            except asyncio.CancelledError:
                raise
            except Exception:
                subscription.failed += 1
                log.exception("bus.subscriber_failed", subscriber=subscription.name,
                              event_type=type(event).__name__)
            finally:
                subscription.queue.task_done()
                if subscription.lagging and subscription.queue.qsize() == 0:
                    subscription.lagging = False
