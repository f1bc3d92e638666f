"""An in-process desk rig for tests and the bench: `cti.sim` on loopback,
a `Server` with a small center (agents with passwords), an in-process
store holding a few customers, and websocket clients that speak the desk
protocol."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from cti.app import Server
from cti.auth import hash_password
from cti.center import Center, center_from
from cti.config import load_settings
from cti.customers.models import Contact, parse_customer
from cti.sim.server import Sim, start_sim
from cti.store.connection import Store, open_store
from tests.ami_client import AmiClient
from tests.servers import free_port, linked

SECRET = "desk-secret"
PASSWORD = "correct horse"
VIP_NUMBER = "+33612345678"
STATIC_TOKEN = "kiosk-token-0123456789abcdef"


def desk_center(agents: list[tuple[str, str]], *, password_hash: str,
                skills: Mapping[str, dict[str, int]] | None = None,
                **extra: Any) -> Center:
    """Level 1 `support` escalates to `support-l2` (skill `level2`); every
    agent has `support: 9` unless `skills` says otherwise; `extra` are more
    center keys (e.g. `transfer_wait_seconds`)."""
    skills = skills or {}
    return center_from({
        "services": {
            "support": {"skills": {"support": 1}, "numbers": ["0140000001"],
                        "wrap_up_seconds": 30, "ring_timeout_seconds": 10,
                        "escalation": "support-l2"},
            "support-l2": {"skills": {"level2": 1}, "wrap_up_seconds": 30},
        },
        "agents": [{"id": agent_id, "name": name, "device": f"Local/{agent_id}@sim-agent",
                    "skills": skills.get(agent_id, {"support": 9}),
                    "password_hash": password_hash}
                   for agent_id, name in agents],
        "pause_reasons": ["break", "lunch"],
        **extra,
    }, "desk test center")


async def add_customers(server: Server) -> None:
    store = server.customers
    await store.put(parse_customer({"id": "c-vip", "name": "Alice Dupont", "tier": "vip",
                                    "phones": [VIP_NUMBER], "account": "123456"},
                                   region="FR"))
    await store.add_contact("c-vip", Contact(
        at=time.time() - 86_400, channel="voice", direction="inbound", service="support",
        agent_id="1002", agent_name="Carol", duration_s=120, outcome="handled",
        disposition="resolved", notes="asked about her invoice"))


@dataclass
class Rig:
    server: Server
    sim: Sim
    ami: AmiClient
    store: Store

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.http_port}"

    def channel_of(self, call_id: str, agent_id: str) -> str:
        """The agent's bridged channel on a call (the `;1` of their phone's
        Local pair), as a phone feature (Atxfer, hang-up) would act on it."""
        tracker = self.server.tracker
        for uniqueid in tracker.calls[call_id].channels:
            channel = tracker.channels[uniqueid]
            if channel.name.startswith(f"Local/{agent_id}@sim-agent-") \
                    and channel.name.endswith(";1") and channel.bridge is not None:
                return channel.name
        raise LookupError(f"agent {agent_id} is not bridged on call {call_id}")

    async def call(self, number: str, *, patience: int = 60, name: str = "Caller") -> None:
        response = await self.ami.action(
            "Originate", ("Channel", f"Local/{patience}@sim-caller"),
            ("Context", "cti-inbound"), ("Exten", "0140000001"), ("Priority", "1"),
            ("CallerID", f'"{name}" <{number}>'), ("Async", "true"), ("Timeout", "15000"))
        assert response.response == "Success", response


@asynccontextmanager
async def rig(tmp: Path, agents: list[tuple[str, str]], *, speed: float = 1.0,
              skills: Mapping[str, dict[str, int]] | None = None,
              extra_env: Mapping[str, str] | None = None,
              **center_keys: Any) -> AsyncIterator[Rig]:
    """`extra_env`: more CTI_* variables (the CRM's, for one); `center_keys`:
    more keys of the center file."""
    sim = await start_sim(port=0, secret=SECRET, speed=speed)
    store = await open_store(None)
    env = {"CTI_AMI_HOST": "127.0.0.1", "CTI_AMI_PORT": str(sim.port),
           "CTI_AMI_SECRET": SECRET, "CTI_HTTP_PORT": str(free_port()),
           "CTI_AGI_PORT": str(free_port()),
           "CTI_AMI_PING_INTERVAL": "5", "CTI_CENTER_FLOWS": str(tmp / "flows"),
           "CTI_HTTP_AGENT_TOKENS": f"{agents[0][0]}:{STATIC_TOKEN}", **(extra_env or {})}
    (tmp / "flows").mkdir(exist_ok=True)
    settings = load_settings(None, env)
    center = desk_center(agents, password_hash=hash_password(PASSWORD), skills=skills,
                         **center_keys)
    server = Server(settings, center, store, vip_lookup="directory")
    try:
        await add_customers(server)
        async with linked(server, sim.port, SECRET) as ami:
            yield Rig(server, sim, ami, store)
    finally:
        await sim.close()
        await store.close()


class DeskClient:
    """A desk over the websocket: keeps every message, waits for one."""

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse
                 ) -> None:
        self.session = session
        self.ws = ws
        self.messages: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())
        self._ids = 0

    @classmethod
    async def open(cls, session: aiohttp.ClientSession, base: str, token: str, *,
                   stream: str | None = None, last_seq: int | None = None) -> DeskClient:
        ws = await session.ws_connect(f"{base}/ws/agent")
        await ws.send_str(json.dumps({"v": 1, "type": "hello", "token": token,
                                      "stream": stream, "last_seq": last_seq}))
        return cls(session, ws)

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type is aiohttp.WSMsgType.TEXT:
                self.messages.append(json.loads(message.data))
                self._changed.set()
        self._changed.set()

    async def wait(self, predicate: Callable[[dict[str, Any]], bool], within: float = 15.0,
                   since: int = 0) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while True:
                for message in self.messages[since:]:
                    if predicate(message):
                        return message
                if self.ws.closed and self._reader.done():
                    raise ConnectionError(f"closed; got {self.messages}")
                self._changed.clear()
                await self._changed.wait()

    async def of_type(self, kind: str, within: float = 15.0, since: int = 0,
                      **fields: Any) -> dict[str, Any]:
        return await self.wait(lambda m: m["type"] == kind and all(
            m.get(k) == v for k, v in fields.items()), within, since)

    async def command(self, kind: str, command_id: str | None = None,
                      **fields: Any) -> dict[str, Any]:
        self._ids += 1
        command_id = command_id or f"cmd-{self._ids}"
        since = len(self.messages)
        await self.ws.send_str(json.dumps({"v": 1, "type": kind, "id": command_id, **fields}))
        return await self.wait(lambda m: m["type"] in ("ack", "error")
                               and m.get("command_id") == command_id, since=since)

    @property
    def stream_seqs(self) -> list[int]:
        return [m["seq"] for m in self.messages
                if m["type"] not in ("welcome", "ack", "error")]

    async def close(self) -> None:
        await self.ws.close()
        await self._reader


async def login(session: aiohttp.ClientSession, base: str, username: str,
                password: str = PASSWORD) -> str:
    async with session.post(f"{base}/api/v1/login",
                            json={"username": username, "password": password}) as response:
        assert response.status == 200, await response.text()
        return str((await response.json())["token"])
