"""`cti demo` as a user runs it: one process, pages on loopback that the
printed credentials open, calls flowing, and the closing JSON line."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.servers import free_port, wait_for_port

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parent.parent


async def test_demo_serves_its_pages_and_ends_with_the_kpi_line() -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTI_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cti", "demo", "--duration", "25", "--port", str(port),
        "--calls-per-hour", "2400", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        await asyncio.to_thread(wait_for_port, port, 30.0)
        async with aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{port}"
            async with asyncio.timeout(30):  # the demo's own HTTP, not just a port
                while True:
                    try:
                        async with http.get(f"{base}/healthz") as health:
                            if health.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.2)
            login = await http.post(f"{base}/api/v1/login",
                                    json={"username": "1001", "password": "demo"})
            assert login.status == 200, await login.text()
            sup = await http.post(f"{base}/api/v1/supervisor/login",
                                  json={"username": "sup", "password": "demo"})
            assert sup.status == 200, await sup.text()
            token = (await sup.json())["token"]
            for page in ("/agent", "/supervisor"):
                assert (await http.get(base + page)).status == 200
            ready = await http.get(f"{base}/readyz")
            assert ready.status == 200, await ready.text()
            board = await http.get(f"{base}/api/v1/supervisor/board",
                                   headers={"Authorization": f"Bearer {token}"})
            assert board.status == 200
            assert len((await board.json())["agents"]) == 12
        out, err = await asyncio.wait_for(proc.communicate(), 90)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()[-3000:]
    closing = json.loads(out.decode().strip().splitlines()[-1])
    assert closing["demo"]["duration_s"] == 25.0
    routed = closing["offered"] + closing["in_progress"]["vip"] + closing["in_progress"]["standard"]
    assert routed >= 3
    assert closing["answered"] >= 1
