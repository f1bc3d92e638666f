"""The whole stack for integration tests, as separate processes on free
loopback ports: a real redis-server, `cti sim` and `cti serve`, plus an
AMI client on the simulated PBX to place callers and watch the calls, and
the server's JSON log lines to see its decisions."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import yaml

from tests.ami_client import AmiClient
from tests.servers import free_port, redis_server, wait_for_port

SECRET = "stack-secret"
ROOT = str(Path(__file__).resolve().parent.parent)


class ServerLog:
    """The JSON lines `cti serve` writes to stderr, read as they come."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self) -> list[dict[str, Any]]:
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return out

    def of(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        return [e for e in self.entries() if e.get("event") == event
                and all(e.get(k) == v for k, v in fields.items())]

    async def wait(self, event: str, count: int = 1, within: float = 20.0,
                   **fields: Any) -> list[dict[str, Any]]:
        deadline = time.monotonic() + within
        while True:
            found = self.of(event, **fields)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{count} x {event} {fields} not logged within {within} s;"
                                     f" log tail: {self.path.read_text()[-3000:]}")
            await asyncio.sleep(0.1)


class Stack:
    def __init__(self, ami: AmiClient, log: ServerLog, http_port: int, redis_url: str,
                 sim_port: int) -> None:
        self.ami = ami
        self.log = log
        self.http_port = http_port
        self.redis_url = redis_url
        self.sim_port = sim_port
        self._callers = 0

    async def call(self, *, patience: int = 60, did: str = "0140000001",
                   number: str | None = None, name: str | None = None) -> None:
        """A simulated caller on the DID, who hangs up after `patience` s."""
        self._callers += 1
        number = number or f"+3361000{self._callers:04d}"
        name = name or f"Caller {self._callers}"
        response = await self.ami.action(
            "Originate", ("Channel", f"Local/{patience}@sim-caller"),
            ("Context", "cti-inbound"), ("Exten", did), ("Priority", "1"),
            ("CallerID", f'"{name}" <{number}>'), ("Async", "true"), ("Timeout", "15000"))
        assert response.response == "Success", response

    async def http_get(self, path: str) -> tuple[int, str]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.http_port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                     .encode())
        data = await reader.read()
        writer.close()
        head, _, body = data.decode().partition("\r\n\r\n")
        return int(head.split()[1]), body


def center_file(tmp: Path, agents: list[dict[str, Any]], **services: Any) -> Path:
    data = {
        "services": services or {"support": {"skills": {"support": 1},
                                             "numbers": ["0140000001"],
                                             "wrap_up_seconds": 1,
                                             "ring_timeout_seconds": 5}},
        "agents": [{"login_at_start": True, "device": f"Local/{a['id']}@sim-agent", **a}
                   for a in agents],
        "vip_numbers": ["0140000099"],
    }
    path = tmp / "center.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen([sys.executable, "-m", "cti", *args], env=env,
                                stdout=out, stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.terminate()
    try:
        return proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return -9


@asynccontextmanager
async def stack(tmp: Path, center: Path, *, sim_args: tuple[str, ...] = (),
                extra_env: dict[str, str] | None = None) -> AsyncIterator[Stack]:
    with redis_server(tmp) as redis_url:
        sim_port, http_port, agi_port = free_port(), free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CTI_")}
        env["PYTHONPATH"] = ROOT
        sim_log = tmp / "sim.log"
        sim = _spawn(["sim", "--port", str(sim_port), "--secret", SECRET, *sim_args], env,
                     sim_log)
        server: subprocess.Popen[bytes] | None = None
        ami: AmiClient | None = None
        try:
            await asyncio.to_thread(wait_for_port, sim_port, 20.0)
            server_env = {**env, "CTI_AMI_PORT": str(sim_port), "CTI_AMI_SECRET": SECRET,
                          "CTI_REDIS_URL": redis_url, "CTI_HTTP_PORT": str(http_port),
                          "CTI_CENTER_FILE": str(center), "CTI_LOG_FORMAT": "json",
                          "CTI_AMI_PING_INTERVAL": "5", "CTI_AGI_PORT": str(agi_port),
                          "CTI_CENTER_FLOWS": str(Path(ROOT) / "dialplans" / "ivr"),
                          **(extra_env or {})}
            server = _spawn(["serve"], server_env, tmp / "server.log")
            log = ServerLog(tmp / "server.log")
            await log.wait("ami.connected", within=30.0)
            ami = await AmiClient.connect(sim_port)
            await ami.login(secret=SECRET)
            yield Stack(ami, log, http_port, redis_url, sim_port)
        finally:
            if ami is not None:
                await ami.close()
            if server is not None:
                code = _stop(server)
                tail = (tmp / "server.log").read_text()[-3000:]
                assert code == 0, f"cti serve exited {code}: {tail}"
            _stop(sim)


Predicate = Callable[[dict[str, Any]], bool]
