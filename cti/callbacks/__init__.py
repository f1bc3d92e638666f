"""Click-to-callback from web pages: the public API, admission, durable
storage in Redis, the dispatcher that routes due callbacks to agents, and
the embeddable widget. `install(server)` wires it into a running server."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cti.callbacks.dispatch import Dispatcher
from cti.callbacks.http import CallbackRoutes
from cti.callbacks.models import Callback, CallbackRequest, Outcome, Status
from cti.callbacks.service import CallbackService
from cti.callbacks.sites import check_site_key, site_key
from cti.callbacks.store import CallbackStore

if TYPE_CHECKING:
    from cti.app import Server


class CallbackFeature:
    def __init__(self, server: Server) -> None:
        settings = server.settings.callbacks
        self.store = CallbackStore(server.store.redis)
        self.service = CallbackService(self.store, settings, server.center,
                                       server.switchboard, clock=server.clock)
        # Through the server: a link that failed its first start is renewed.
        self.dispatcher = Dispatcher(self.store, settings, server.center, server.switchboard,
                                     send=lambda action: server.link.send(action),  # noqa: PLW0108
                                     dialplan=server.settings.dialplan, clock=server.clock)
        CallbackRoutes(self.service, settings, server.settings.numbers).install(server.web)

    async def start(self) -> None:
        await self.dispatcher.start()

    async def stop(self) -> None:
        await self.dispatcher.stop()


def install(server: Server) -> CallbackFeature:
    return CallbackFeature(server)


__all__ = ["Callback", "CallbackFeature", "CallbackRequest", "CallbackService",
           "CallbackStore", "Dispatcher", "Outcome", "Status", "check_site_key", "install",
           "site_key"]
