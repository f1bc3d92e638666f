"""A whole server in process for the callback tests: a real redis-server,
the simulated PBX over TCP and `Server` with its HTTP listener, plus an
HTTP client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from cti.app import Server
from cti.center import center_from
from cti.config import load_settings
from cti.pbx.link import LinkState
from cti.sim.population import Population
from cti.sim.server import start_sim
from cti.store.connection import open_store
from tests.servers import free_port, redis_server

ORIGIN = "https://shop.example"


async def eventually(predicate: Callable[[], bool], within: float = 15.0) -> None:
    async with asyncio.timeout(within):
        while True:
            if predicate():
                return
            await asyncio.sleep(0.05)


class Floor:
    def __init__(self, server: Server, http: aiohttp.ClientSession, redis: aioredis.Redis,
                 base: str, sim_port: int = 0) -> None:
        self.server = server
        self.http = http
        self.redis = redis
        self.base = base
        self.sim_port = sim_port

    async def post(self, body: Any, *, origin: str | None = ORIGIN,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        head = {"Origin": origin} if origin else {}
        head.update(headers or {})
        data = body if isinstance(body, bytes | str) else None
        async with self.http.post(f"{self.base}/api/v1/callbacks", headers=head,
                                  json=None if data is not None else body,
                                  data=data) as response:
            return response.status, await response.json()

    async def get(self, path: str, *, origin: str | None = ORIGIN) -> tuple[int, Any]:
        head = {"Origin": origin} if origin else {}
        async with self.http.get(f"{self.base}{path}", headers=head) as response:
            return response.status, await response.json()

    async def delete(self, path: str) -> tuple[int, Any]:
        async with self.http.delete(f"{self.base}{path}", headers={"Origin": ORIGIN}) as r:
            return r.status, await r.json()

    async def stored(self) -> list[str]:
        return [str(k) async for k in self.redis.scan_iter("cti:cb:rec:*")]

    async def status(self, callback_id: str) -> str:
        _, body = await self.get(f"/api/v1/callbacks/{callback_id}")
        return str(body["status"])


def center(agents: list[dict[str, Any]], supervisors: list[dict[str, Any]] | None = None,
           **service: Any) -> dict[str, Any]:
    return {
        "services": {"support": {"skills": {"support": 1}, "numbers": ["0140000001"],
                                 "wrap_up_seconds": 1, "ring_timeout_seconds": 10,
                                 **service},
                     "sales": {"skills": {"sales": 1}, "numbers": ["0140000002"]}},
        "agents": [{"device": f"Local/{a['id']}@sim-agent", "login_at_start": True,
                    "name": a["id"], **a} for a in agents],
        "supervisors": supervisors or [],
    }


@asynccontextmanager
async def floor(tmp: Path, agents: list[dict[str, Any]], *,
                env: dict[str, str] | None = None, population: Population | None = None,
                supervisors: list[dict[str, Any]] | None = None,
                clock: Callable[[], float] = time.time, **service: Any) -> AsyncIterator[Floor]:
    """`population`: the sim's phones (default: the recordings')."""
    with redis_server(tmp) as redis_url:
        sim = await (start_sim(port=0, secret="s3cret") if population is None
                     else start_sim(port=0, secret="s3cret", population=population))
        port = free_port()
        settings = load_settings(None, {
            "CTI_AMI_PORT": str(sim.port), "CTI_AMI_SECRET": "s3cret",
            "CTI_HTTP_PORT": str(port), "CTI_LOG_LEVEL": "warning",
            "CTI_REDIS_URL": redis_url, "CTI_AGI_PORT": str(free_port()),
            "CTI_CALLBACKS_ALLOWED_ORIGINS": ORIGIN, "CTI_CALLBACKS_POLL_SECONDS": "0.2",
            "CTI_CALLBACKS_RETRY_BACKOFF_SECONDS": "1,1",
            **(env or {})})
        store = await open_store(redis_url)
        server = Server(settings, center_from(center(agents, supervisors, **service)), store,
                        clock=clock)
        await server.start()
        http = aiohttp.ClientSession()
        try:
            await eventually(lambda: server.link.state is LinkState.CONNECTED)
            yield Floor(server, http, store.redis, f"http://127.0.0.1:{port}", sim.port)
        finally:
            await http.close()
            await server.stop()
            await sim.close()
            await store.close()
