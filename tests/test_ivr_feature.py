"""The IVR feature on a server built as `cti serve` builds it: FastAGI calls
leave their outcome in Redis for the screen pop, the flows reload on file
change and on a supervisor's request, and /metrics counts IVR sessions.
A scripted Asterisk (tests/agi_caller.py) speaks FastAGI over TCP."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from cti.app import Server
from cti.center import center_from
from cti.config import load_settings
from cti.ivr.feature import IvrFeature, outcome_key
from cti.ivr.http import RELOAD_PATH
from cti.store.connection import open_store
from tests.agi_caller import HANG_UP, FakeAsterisk
from tests.servers import free_port

pytestmark = pytest.mark.timeout(30)

SAMPLES = Path(__file__).parent.parent / "dialplans" / "ivr"
OPEN = datetime(2026, 3, 10, 10, 0, tzinfo=ZoneInfo("Europe/Paris"))


@dataclass
class Running:
    server: Server
    feature: IvrFeature
    flows: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.http_port}"

    def token(self, role: str) -> str:
        return self.server.sessions.issue("u1", role, self.server.clock(), 1)  # type: ignore[arg-type]

    async def reload(self, token: str | None) -> tuple[int, dict[str, object]]:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        async with aiohttp.ClientSession() as http, \
                http.post(self.base + RELOAD_PATH, headers=headers) as response:
            return response.status, await response.json()

    async def metrics(self) -> str:
        async with aiohttp.ClientSession() as http, \
                http.get(self.base + "/metrics") as response:
            return await response.text()


@asynccontextmanager
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    flows = tmp_path / "flows"
    shutil.copytree(SAMPLES, flows)
    # No Asterisk: the AMI link keeps retrying in the background.
    settings = load_settings(None, {
        "CTI_AMI_PORT": str(free_port()), "CTI_HTTP_PORT": str(free_port()),
        "CTI_AGI_PORT": str(free_port()), "CTI_CENTER_FLOWS": str(flows)})
    center = center_from({"services": {"support": {"skills": {"support": 1}}},
                          "agents": [], "default_service": "support"}, "test center")
    store = await open_store(None)
    offset = OPEN.timestamp() - time.time()
    server = Server(settings, center, store, clock=lambda: time.time() + offset)
    [feature] = [f for f in server.features if isinstance(f, IvrFeature)]
    await server.start()
    try:
        yield Running(server, feature, flows)
    finally:
        await server.stop()
        await store.close()


async def test_the_outcome_is_kept_a_day_for_the_screen_pop(tmp_path: Path) -> None:
    async with running(tmp_path) as r:
        fake = FakeAsterisk(["1"], caller="+33699999999")
        await fake.call(r.feature.agi.port)
        assert fake.variables["CTI_SERVICE"] == "sales"
        redis = r.server.store.redis
        # No AMI: the tracker does not know the call; the uniqueid is the id.
        key = outcome_key("1795369761.62")
        assert json.loads(await redis.get(key)) == {
            "flow": "main", "choices": [{"step": "main_menu", "digit": "1"}],
            "customer_id": None, "verified": False, "service": "sales",
            "priority": "standard", "language": "en", "ended": "handoff"}
        assert 86_000 < await redis.ttl(key) <= 86_400


async def test_metrics_count_ivr_sessions_by_flow_and_ending(tmp_path: Path) -> None:
    async with running(tmp_path) as r:
        await FakeAsterisk(["1"]).call(r.feature.agi.port)
        await FakeAsterisk([HANG_UP]).call(r.feature.agi.port)
        text = await r.metrics()
        assert 'cti_ivr_sessions_total{ended="handoff",flow="main"} 1.0' in text
        assert 'cti_ivr_sessions_total{ended="caller_hung_up",flow="main"} 1.0' in text
        assert "cti_ivr_sessions_active 0.0" in text
        assert "cti_ivr_flows_loaded 2.0" in text
        assert "cti_ivr_flows_refused 0.0" in text


async def test_reload_needs_a_supervisor_session(tmp_path: Path) -> None:
    async with running(tmp_path) as r:
        assert (await r.reload(None))[0] == 401
        status, body = await r.reload("forged.token")
        assert status == 401
        assert body == {"error": {"code": "unauthenticated",
                                  "message": "a supervisor session is needed"}}
        status, body = await r.reload(r.token("agent"))
        assert status == 403
        assert body == {"error": {"code": "forbidden", "message": "supervisor role required"}}
        assert await r.reload(r.token("supervisor")) == (
            200, {"loaded": [], "refused": [], "removed": []})


async def test_reload_reports_a_refused_file_and_keeps_the_running_version(
        tmp_path: Path) -> None:
    async with running(tmp_path) as r:
        running_version = r.feature.library.get("main")
        main = r.flows / "main.yaml"
        main.write_text(main.read_text().replace("next: main_menu", "next: main_manu"))
        (r.flows / "balance.yaml").unlink()
        (r.flows / "extra.yaml").write_text(
            "fallback_service: support\nsteps:\n  - {id: out, type: handoff, service: sales}\n")
        status, body = await r.reload(r.token("supervisor"))
        assert status == 200
        assert (body["loaded"], body["removed"]) == (["extra"], ["balance"])
        [refused] = body["refused"]  # type: ignore[misc]
        assert refused["file"] == str(main)
        line = main.read_text().splitlines().index("    next: main_manu") + 1
        assert refused["line"] == line
        assert "main_manu" in refused["reason"]
        assert r.feature.library.get("main") is running_version
        assert "cti_ivr_flows_refused 1.0" in await r.metrics()


async def test_a_changed_flow_file_is_picked_up_without_a_restart(tmp_path: Path) -> None:
    async with running(tmp_path) as r:
        before = r.feature.library.get("balance")
        assert before is not None
        path = r.flows / "balance.yaml"
        path.write_text(path.read_text().replace("lock_minutes: 30", "lock_minutes: 45"))
        deadline = time.monotonic() + 10
        while (after := r.feature.library.get("balance")) is before:
            assert time.monotonic() < deadline, "the change was not picked up"
            await asyncio.sleep(0.1)
        assert after is not None and after.version != before.version
