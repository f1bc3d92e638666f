"""Wires the desk into a running server (see cti/features.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cti.desk.http import DeskAuth, DeskHttp
from cti.desk.hub import Hub
from cti.desk.pop import PopBuilder
from cti.desk.service import DeskService

if TYPE_CHECKING:
    from cti.app import Server


class DeskFeature:
    def __init__(self, server: Server) -> None:
        http = server.settings.http
        static = {}
        for entry in http.agent_tokens:
            agent_id, _, token = entry.get_secret_value().partition(":")
            static[token] = agent_id
        self.hub = Hub()
        self.pops = PopBuilder(server.store.redis, server.customers, profiles=server.profiles,
                               memo=server.call_memo)
        self.service = DeskService(server.center, server.switchboard, server.customers,
                                   self.pops, self.hub, clock=server.clock)
        self.auth = DeskAuth(server.center, server.sessions, static, hours=http.session_hours,
                             clock=server.clock)
        self.http = DeskHttp(self.auth, self.hub, self.service)
        self.http.add_routes(server.web)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        await self.http.close()
        await self.service.stop()


def install(server: Server) -> DeskFeature:
    return DeskFeature(server)
