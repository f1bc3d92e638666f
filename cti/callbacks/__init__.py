"""Click-to-callback from web pages and by phone: the public API,
admission, durable storage in Redis, the dispatcher that routes due
callbacks to agents (agent-first or customer-first), the supervisors' list
of callbacks and their attempts, the embeddable widget, and the offer a
waiting caller reaches by pressing 1 (keeping their place).
`install(server)` wires it into a running server."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import structlog

from cti.callbacks.dispatch import Dispatcher
from cti.callbacks.http import CallbackRoutes
from cti.callbacks.models import Callback, CallbackRequest, Outcome, Status
from cti.callbacks.phone import PhoneCallbacks
from cti.callbacks.service import CallbackService
from cti.callbacks.sites import check_site_key, site_key
from cti.callbacks.store import CallbackStore
from cti.callbacks.supervision import SupervisorCallbackRoutes

if TYPE_CHECKING:
    from cti.app import Server


log = structlog.get_logger(__name__)
_COUNT_EVERY_S = 3.0


class CallbackFeature:
    def __init__(self, server: Server) -> None:
        settings = server.settings.callbacks
        self.store = CallbackStore(server.store.redis)
        self.service = CallbackService(self.store, settings, server.center,
                                       server.switchboard, clock=server.clock)
        self.dispatcher = Dispatcher(self.store, settings, server.center, server.switchboard,
                                     dialplan=server.settings.dialplan,
                                     region=server.settings.numbers.default_region,
                                     clock=server.clock)
        CallbackRoutes(self.service, settings, server.settings.numbers).install(server.web)
        # By phone: the offer of [cti-wait] over FastAGI, and IVR flows
        # that end with a callback.
        self.phone = PhoneCallbacks(self.service, server.switchboard, server.tracker,
                                    server.settings.numbers)
        server.agi_routes.update(self.phone.routes())
        server.ivr_outcomes.append(self.phone.on_ivr_outcome)
        SupervisorCallbackRoutes(self.store, frozenset(server.center.policy.services),
                                 server.sessions, server.clock).install(server.web)
        # The wallboard's "callbacks pending", refreshed from the store every
        # few seconds (the board is built synchronously, from memory).
        self.pending: dict[str, int] = {}
        server.callbacks_pending = self.pending_for
        self._counting: asyncio.Task[None] | None = None

    def pending_for(self, service: str | None) -> int:
        if service is None:
            return sum(self.pending.values())
        return self.pending.get(service, 0)

    async def _count(self) -> None:
        while True:
            try:
                self.pending = await self.store.pending_by_service()
            except Exception:  # a store outage: keep the last figures, say so
                log.warning("callbacks.pending_count_failed", exc_info=True)
            await asyncio.sleep(_COUNT_EVERY_S)

    async def start(self) -> None:
        await self.dispatcher.start()
        self._counting = asyncio.create_task(self._count(), name="callbacks-pending")

    async def stop(self) -> None:
        if self._counting is not None:
            self._counting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._counting
        await self.dispatcher.stop()


def install(server: Server) -> CallbackFeature:
    return CallbackFeature(server)


__all__ = ["Callback", "CallbackFeature", "CallbackRequest", "CallbackService",
           "CallbackStore", "Dispatcher", "Outcome", "PhoneCallbacks", "Status",
           "check_site_key", "install", "site_key"]
