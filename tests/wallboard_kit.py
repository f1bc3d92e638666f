"""An in-process wallboard rig for tests and the bench: `cti.sim` on
loopback, a `Server` with two services (support, sales), agents on the
sim's recorded phones, a supervisor whose device is the sim's phone 2001,
an in-process store, and a supervisor websocket client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from cti.app import Server
from cti.auth import hash_password
from cti.center import Center, center_from
from cti.config import load_settings
from cti.sim.server import Sim, start_sim
from cti.store.connection import Store, open_store
from tests.ami_client import AmiClient
from tests.servers import free_port, linked

SECRET = "wallboard-secret"
PASSWORD = "supervise me"
SUPPORT_DID = "0140000001"
SALES_DID = "0140000002"


def wallboard_center(agents: dict[str, dict[str, int]], *, password_hash: str,
                     login: bool = True) -> Center:
    return center_from({
        "services": {
            "support": {"skills": {"support": 1}, "numbers": [SUPPORT_DID],
                        "target": {"percent": 80, "seconds": 20},
                        "wrap_up_seconds": 1, "ring_timeout_seconds": 10},
            "sales": {"skills": {"sales": 1}, "numbers": [SALES_DID],
                      "target": {"percent": 80, "seconds": 20},
                      "wrap_up_seconds": 1, "ring_timeout_seconds": 10},
        },
        "agents": [{"id": agent_id, "name": f"Agent {agent_id}",
                    "device": f"Local/{agent_id}@sim-agent", "skills": skills,
                    "login_at_start": login}
                   for agent_id, skills in agents.items()],
        "supervisors": [{"id": "sup", "name": "Sam Supervisor",
                         "device": "Local/2001@sim-agent", "password_hash": password_hash}],
        "pause_reasons": ["break", "lunch"],
    }, "wallboard test center")


@dataclass
class Rig:
    server: Server
    sim: Sim
    ami: AmiClient
    store: Store

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.http_port}"

    async def call(self, service: str, *, patience: int = 120, number: str = "+33611112222",
                   name: str = "Caller") -> None:
        response = await self.ami.action(
            "Originate", ("Channel", f"Local/{patience}@sim-caller"),
            ("Context", "cti-inbound"),
            ("Exten", SALES_DID if service == "sales" else SUPPORT_DID), ("Priority", "1"),
            ("CallerID", f'"{name}" <{number}>'), ("Async", "true"), ("Timeout", "15000"),
            ("Variable", f"CTI_SERVICE={service}"))
        assert response.response == "Success", response


@asynccontextmanager
async def rig(tmp: Path, agents: dict[str, dict[str, int]], *, speed: float = 1.0,
              login: bool = True, extra_env: dict[str, str] | None = None,
              store: Store | None = None) -> AsyncIterator[Rig]:
    sim = await start_sim(port=0, secret=SECRET, speed=speed)
    own_store = store is None
    store = store or await open_store(None)
    (tmp / "flows").mkdir(exist_ok=True)
    env = {"CTI_AMI_HOST": "127.0.0.1", "CTI_AMI_PORT": str(sim.port),
           "CTI_AMI_SECRET": SECRET, "CTI_HTTP_PORT": str(free_port()),
           "CTI_AGI_PORT": str(free_port()), "CTI_AMI_PING_INTERVAL": "5",
           "CTI_CENTER_FLOWS": str(tmp / "flows"),
           "CTI_WALLBOARD_QUEUE_LOG": str(tmp / "queue_log"), **(extra_env or {})}
    settings = load_settings(None, env)
    center = wallboard_center(agents, password_hash=hash_password(PASSWORD), login=login)
    server = Server(settings, center, store)
    try:
        async with linked(server, sim.port, SECRET) as ami:
            yield Rig(server, sim, ami, store)
    finally:
        await sim.close()
        if own_store:
            await store.close()


async def supervisor_token(session: aiohttp.ClientSession, base: str,
                           password: str = PASSWORD) -> str:
    async with session.post(f"{base}/api/v1/supervisor/login",
                            json={"username": "sup", "password": password}) as response:
        assert response.status == 200, await response.text()
        return str((await response.json())["token"])


class Wallboard:
    """A supervisor socket that folds the deltas into the board."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.board: dict[str, Any] = {}
        self.messages: list[dict[str, Any]] = []
        self.arrivals: list[float] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, session: aiohttp.ClientSession, base: str, token: str) -> Wallboard:
        return cls(await session.ws_connect(f"{base}/ws/supervisor?token={token}"))

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        async for message in self.ws:
            if message.type is aiohttp.WSMsgType.TEXT:
                parsed = json.loads(message.data)
                self.messages.append(parsed)
                self.arrivals.append(loop.time())
                if parsed["type"] == "snapshot":
                    self.board = dict(parsed["board"])
                else:
                    self.board.update(parsed["changes"])
                    apply_agent_rows(self.board, parsed.get("agent_rows"))
                self._changed.set()
        self._changed.set()

    async def until(self, predicate: Callable[[dict[str, Any]], bool],
                    within: float = 20.0) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while True:
                if self.board and predicate(self.board):
                    return self.board
                if self._reader.done():
                    raise ConnectionError(f"closed; got {self.messages[-3:]}")
                self._changed.clear()
                await self._changed.wait()

    async def close(self) -> None:
        await self.ws.close()
        await self._reader


def service(board: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in board["services"] if s["name"] == name)


def apply_agent_rows(board: dict[str, Any], rows: list[dict[str, Any]] | None) -> None:
    """What the page does with a delta's changed agent rows."""
    if not rows:
        return
    at = {agent["id"]: index for index, agent in enumerate(board["agents"])}
    agents = list(board["agents"])
    for row in rows:
        if row["id"] in at:
            agents[at[row["id"]]] = row
    board["agents"] = agents
