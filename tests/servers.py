"""Real servers for tests, on free loopback ports: redis-server today,
the simulated PBX and `cti serve` as the suite grows."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from cti.app import Server
from tests.ami_client import AmiClient


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    """A throw-away redis-server; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@asynccontextmanager
async def linked(server: Server, sim_port: int, secret: str) -> AsyncIterator[AmiClient]:
    """`server` started and connected to the simulated PBX on `sim_port`,
    and an AMI client of that PBX logged in (the test's own hands on it);
    both stopped on the way out."""
    ami: AmiClient | None = None
    try:
        await server.start()
        async with asyncio.timeout(10):
            while server.link.state.value != "connected":
                await asyncio.sleep(0.05)
        ami = await AmiClient.connect(sim_port)
        await ami.login(secret=secret)
        yield ami
    finally:
        if ami is not None:
            await ami.close()
        await server.stop()
