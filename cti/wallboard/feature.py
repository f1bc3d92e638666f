"""The wallboard feature wired on the server: the floor (KPIs) listening
to the switchboard, the supervisor hub, the routes, the metrics, and the
writer task that stores intervals in Redis and appends queue_log lines."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import structlog

from cti.wallboard.floor import Floor
from cti.wallboard.http import SupervisorRoutes
from cti.wallboard.hub import SupervisorHub
from cti.wallboard.metrics import KpiCollector
from cti.wallboard.queue_log import QueueLog

if TYPE_CHECKING:
    from cti.app import Server

log = structlog.get_logger(__name__)


class WallboardFeature:
    def __init__(self, server: Server) -> None:
        settings = server.settings.wallboard
        queue_log = QueueLog(settings.queue_log) if settings.queue_log is not None else None
        # The callback feature, when installed, offers a count of pending
        # callbacks per service (None: all); until then the board shows 0.
        pending = getattr(server, "callbacks_pending", None)
        self.floor = Floor(server, short_abandon_s=settings.short_abandon_seconds,
                           callbacks_pending=pending if callable(pending) else None,
                           queue_log=queue_log)
        self.hub = SupervisorHub(self.floor.board, update_seconds=settings.update_seconds)
        self.floor.on_change = self.hub.mark_dirty
        server.switchboard.observers.append(self.floor.on_event)
        SupervisorRoutes(server, self.floor, self.hub).add_to(server.web)
        server.registry.register(KpiCollector(self.floor, server.clock))
        self._writer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.floor.load()
        self._writer = asyncio.create_task(self._write_loop(), name="wallboard-writer")

    async def _write_loop(self) -> None:
        while True:
            await self.floor.changed.wait()
            self.floor.changed.clear()
            try:
                await self.floor.write()
            except Exception:  # Redis or disk down: keep the tallies, retry on next change
                log.exception("wallboard.write_failed")
            await asyncio.sleep(0.5)  # batch the writes of a busy second

    async def stop(self) -> None:
        await self.hub.close()
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        try:
            await self.floor.write()
        except Exception:
            log.exception("wallboard.write_failed")


def install(server: Server) -> WallboardFeature:
    return WallboardFeature(server)
