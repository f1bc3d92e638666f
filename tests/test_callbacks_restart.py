"""Callbacks survive a `kill -9` of the server: those pending and the one in
retry when it died are all dialled by the next server, none twice (a real
redis-server, the simulated PBX, `cti serve` in its own process)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from cti.callbacks.models import Attempt, Callback, Outcome, Status
from cti.callbacks.store import CallbackStore
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


async def _in_retry(redis_url: str, number: str) -> str:
    """A callback between two attempts, written as the dispatcher leaves it."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        now = time.time()
        callback = Callback(
            id="retry-0123456789abcdef", number=number, service="support",
            requested_at=now - 900, due_at=now - 1, expected_at=now - 1,
            enqueued_at=now - 900, status=Status.RETRY,
            attempts=[Attempt(at=now - 700, agent="1001", outcome=Outcome.BUSY,
                              dial_status="BUSY", ended_at=now - 690)])
        assert (await CallbackStore(client).accept(callback)).created
        return callback.id
    finally:
        await client.aclose()


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
                    "CTI_CALLBACKS_MAX_ATTEMPTS": "2", "CTI_CALLBACKS_LEASE_SECONDS": "10",
                    "CTI_CALLBACKS_RETRY_BACKOFF_SECONDS": "600"})
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
            # One more in retry: its first attempt (busy) is stored and its
            # backoff is over, as a server leaves it between two attempts.
            ids.append(await _in_retry(redis_url, "+33688888888"))
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
            assert _entries(first_log, "callback.dialing") == []
            second = _serve(env, second_log)
            for _ in range(120):
                if len(_entries(second_log, "callback.final")) >= 2 and len(
                        _entries(second_log, "callback.retry")) >= 2:
                    break
                await asyncio.sleep(0.5)
            await asyncio.sleep(1.0)  # anything dialled twice would show by now
            finals = {e["callback_id"]: e for e in _entries(second_log, "callback.final")}
            retries = {e["callback_id"] for e in _entries(second_log, "callback.retry")}
            # answered; busy and failed go to retry (second attempt in 600 s);
            # the one in retry had its last attempt: no answer, final.
            assert set(finals) == {ids[0], ids[3]} and retries == {ids[1], ids[2]}
            assert finals[ids[0]]["outcome"] == "answered"
            assert finals[ids[3]]["outcome"] == "no_answer"
            dialled = Counter(e["callback_id"] for e in _entries(second_log, "callback.dialing"))
            assert dialled == dict.fromkeys(ids, 1)
            attempts = {e["callback_id"]: e["attempt"]
                        for e in _entries(second_log, "callback.attempt")}
            assert attempts == {ids[0]: 1, ids[1]: 1, ids[2]: 1, ids[3]: 2}
        finally:
            for proc in (first, second):
                if proc is not None and proc.poll() is None:
                    proc.terminate()
                    proc.wait(timeout=15)
            await sim.close()
