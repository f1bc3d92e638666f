"""The wallboard over the simulated PBX, in process: a supervisor socket
sees a call waiting, then the service level once it is answered; the
actions (skills, pause, logout, priority, listen) act and are refused
without the supervisor role; intervals survive a restart; queue_log lines
are written."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from cti.store.connection import open_store
from tests.wallboard_kit import Wallboard, rig, service, supervisor_token

pytestmark = pytest.mark.timeout(60)


async def test_supervisor_sees_a_call_waiting_then_the_service_level(tmp_path: Path) -> None:
    async with rig(tmp_path, {"1001": {"support": 5}}, login=False) as r, \
            aiohttp.ClientSession() as session:
        token = await supervisor_token(session, r.base)
        board = await Wallboard.open(session, r.base, token)
        snapshot = await board.until(lambda b: True)
        assert service(snapshot, "support")["interval"]["service_level"] is None
        await r.call("support", name="Alice")
        waiting = await board.until(lambda b: len(b["waiting"]) == 1)
        assert waiting["waiting"][0]["service"] == "support"
        assert waiting["waiting"][0]["caller"] == "Alice"
        assert service(waiting, "support")["waiting"] == 1
        r.server.switchboard.login("1001")   # the agent arrives: Bob answers after 2 s
        answered = await board.until(
            lambda b: service(b, "support")["interval"]["answered"] == 1)
        assert answered["waiting"] == []
        assert service(answered, "support")["interval"]["service_level"] == 1.0
        assert service(answered, "support")["today"]["offered"] == 1
        assert board.messages[0]["type"] == "snapshot"
        seqs = [m["seq"] for m in board.messages[1:]]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        await board.close()


async def test_the_socket_and_actions_need_a_supervisor(tmp_path: Path) -> None:
    async with rig(tmp_path, {"1001": {"support": 5}}) as r, aiohttp.ClientSession() as session:
        async with session.get(f"{r.base}/ws/supervisor") as response:
            assert response.status == 401
        agent_token = r.server.sessions.issue("1001", "agent", r.server.clock(), 1)
        async with session.post(f"{r.base}/api/v1/supervisor/agents/1001/logout",
                                headers={"Authorization": f"Bearer {agent_token}"}) as response:
            assert response.status == 403
        async with session.post(f"{r.base}/api/v1/supervisor/login",
                                json={"username": "sup", "password": "wrong"}) as response:
            assert response.status == 401


async def test_pause_skills_and_logout_act_on_the_switchboard(tmp_path: Path) -> None:
    async with rig(tmp_path, {"1001": {"support": 5}}) as r, aiohttp.ClientSession() as session:
        token = await supervisor_token(session, r.base)
        auth = {"Authorization": f"Bearer {token}"}
        base = f"{r.base}/api/v1/supervisor/agents/1001"
        async with session.post(f"{base}/pause", json={"reason": "nap"}, headers=auth) as resp:
            assert resp.status == 422
        async with session.post(f"{base}/pause", json={"reason": "lunch"}, headers=auth) as resp:
            assert resp.status == 200
        assert r.server.switchboard.agents["1001"].pause_reason == "lunch"
        async with session.put(f"{base}/skills", json={"skills": {"sales": 11}},
                               headers=auth) as resp:
            assert resp.status == 422
        async with session.put(f"{base}/skills", json={"skills": {"sales": 7}},
                               headers=auth) as resp:
            assert resp.status == 200
        assert dict(r.server.switchboard.agents["1001"].skills) == {"sales": 7}
        async with session.post(f"{base}/logout", headers=auth) as resp:
            assert resp.status == 200
        assert r.server.switchboard.agents["1001"].state.value == "logged_out"
        async with session.post(f"{r.base}/api/v1/supervisor/agents/nobody/logout",
                                headers=auth) as resp:
            assert resp.status == 404


async def test_raising_a_waiting_call_to_vip_changes_its_priority(tmp_path: Path) -> None:
    async with rig(tmp_path, {"1001": {"support": 5}}, login=False) as r, \
            aiohttp.ClientSession() as session:
        token = await supervisor_token(session, r.base)
        board = await Wallboard.open(session, r.base, token)
        await r.call("support")
        waiting = await board.until(lambda b: len(b["waiting"]) == 1)
        task = waiting["waiting"][0]["task"]
        async with session.post(f"{r.base}/api/v1/supervisor/tasks/{task}/priority",
                                json={"priority_class": "vip"},
                                headers={"Authorization": f"Bearer {token}"}) as resp:
            assert resp.status == 200, await resp.text()
        await board.until(lambda b: b["waiting"] and b["waiting"][0]["priority"] == "vip")
        await board.close()


async def test_listen_originates_chanspy_on_the_agents_call(tmp_path: Path) -> None:
    # 1005 Frank answers after 1 s and talks 120 s
    async with rig(tmp_path, {"1005": {"support": 5}}) as r, aiohttp.ClientSession() as session:
        token = await supervisor_token(session, r.base)
        board = await Wallboard.open(session, r.base, token)
        await r.call("support")
        await board.until(lambda b: any(a["state"] == "on_call" for a in b["agents"]))
        since = len(r.ami.received)
        async with session.post(f"{r.base}/api/v1/supervisor/agents/1005/spy",
                                json={"mode": "listen"},
                                headers={"Authorization": f"Bearer {token}"}) as resp:
            assert resp.status == 200, await resp.text()
            channel = (await resp.json())["channel"]
        start = await r.ami.event("ChanSpyStart", since=since)
        assert (start.get("SpyeeChannel") or "").startswith(channel)
        assert channel.startswith("Local/1005@sim-agent")
        await board.close()


async def test_todays_intervals_survive_a_restart_and_export_as_csv(tmp_path: Path) -> None:
    store = await open_store(None)
    try:
        # 1007 Heidi answers after 2 s and talks 5 s
        async with rig(tmp_path, {"1007": {"support": 5}}, store=store) as r, \
                aiohttp.ClientSession() as session:
            token = await supervisor_token(session, r.base)
            board = await Wallboard.open(session, r.base, token)
            await r.call("support")
            await board.until(lambda b: b["agents"][0]["calls_handled"] == 1)
            await board.close()
        async with rig(tmp_path, {"1007": {"support": 5}}, store=store) as r, \
                aiohttp.ClientSession() as session:
            token = await supervisor_token(session, r.base)
            board = await Wallboard.open(session, r.base, token)
            snapshot = await board.until(lambda b: True)
            assert service(snapshot, "support")["today"]["answered"] == 1
            async with session.get(f"{r.base}/api/v1/supervisor/intervals.csv",
                                   headers={"Authorization": f"Bearer {token}"}) as resp:
                text = await resp.text()
            lines = text.strip().splitlines()
            assert lines[0].startswith("service,interval_start,offered")
            assert lines[1].startswith("support,")
            async with session.get(f"{r.base}/metrics") as resp:
                metrics = await resp.text()
            assert 'cti_kpi_answered{service="support",window="today"} 1.0' in metrics
            await board.close()
    finally:
        await store.close()
    log = (tmp_path / "queue_log").read_text().splitlines()
    events = [line.split("|")[4] for line in log]
    for event in ("ADDMEMBER", "ENTERQUEUE", "CONNECT"):
        assert event in events, log
    assert "COMPLETEAGENT" in events or "COMPLETECALLER" in events, log
