"""Callbacks survive a `kill -9` of the server: those pending when it died
are all dialled by the next server, none twice (a real redis-server, the
simulated PBX, `cti serve` in its own process)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cti.sim.server import start_sim
from tests.servers import free_port, redis_server, wait_for_port
from tests.stack import ROOT, center_file

pytestmark = [pytest.mark.timeout(120), pytest.mark.integration]

ORIGIN = "https://shop.example"


def _entries(path: Path, event: str) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("event") == event:
                out.append(entry)
    return out


def _serve(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "cti", "serve"], env=env,
                                stdout=out, stderr=subprocess.STDOUT)


async def test_pending_callbacks_are_dialled_after_a_kill_9_and_none_twice(
        tmp_path: Path) -> None:
    center = center_file(tmp_path, [{"id": "1001", "name": "Bob", "skills": {"support": 5}}])
    with redis_server(tmp_path) as redis_url:
        sim = await start_sim(port=0, secret="s3cret")
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CTI_")}
        env.update({"PYTHONPATH": ROOT, "CTI_AMI_PORT": str(sim.port),
                    "CTI_AMI_SECRET": "s3cret", "CTI_REDIS_URL": redis_url,
                    "CTI_HTTP_PORT": str(port), "CTI_AGI_PORT": str(free_port()),
                    "CTI_CENTER_FILE": str(center), "CTI_LOG_FORMAT": "json",
                    "CTI_CALLBACKS_ALLOWED_ORIGINS": ORIGIN,
                    "CTI_CALLBACKS_MAX_ATTEMPTS": "1", "CTI_CALLBACKS_LEASE_SECONDS": "2"})
        first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
        # The first server takes requests but its dispatcher sleeps: they wait.
        first = _serve({**env, "CTI_CALLBACKS_POLL_SECONDS": "60"}, first_log)
        second: subprocess.Popen[bytes] | None = None
        try:
            await asyncio.to_thread(wait_for_port, port, 30.0)
            ids = []
            async with aiohttp.ClientSession() as http:
                for number in ("0611223344", "0699999999", "0677777777"):
                    async with http.post(f"http://127.0.0.1:{port}/api/v1/callbacks",
                                         json={"number": number},
                                         headers={"Origin": ORIGIN}) as response:
                        assert response.status == 202, await response.text()
                        ids.append((await response.json())["id"])
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
            assert _entries(first_log, "callback.dialing") == []
            second = _serve(env, second_log)
            for _ in range(120):
                if len(_entries(second_log, "callback.final")) >= 3:
                    break
                await asyncio.sleep(0.5)
            finals = {e["callback_id"]: e for e in _entries(second_log, "callback.final")}
            assert set(finals) == set(ids)
            assert finals[ids[0]]["outcome"] == "answered"
            assert finals[ids[1]]["outcome"] == "busy"
            assert finals[ids[2]]["outcome"] == "failed"
            dialled = Counter(e["callback_id"] for e in _entries(second_log, "callback.dialing"))
            assert dialled == dict.fromkeys(ids, 1)
        finally:
            for proc in (first, second):
                if proc is not None and proc.poll() is None:
                    proc.terminate()
                    proc.wait(timeout=15)
            await sim.close()
