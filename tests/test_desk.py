"""The agent desk in process: `cti.sim` over TCP, the Server with the desk
feature, an aiohttp websocket client. Login, the pop while the phone
rings, call progress, disposition into the history, idempotent commands,
bad input refused, resume after a reconnect."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest

from tests.desk_kit import STATIC_TOKEN, VIP_NUMBER, DeskClient, login, rig

pytestmark = [pytest.mark.timeout(60), pytest.mark.integration]


async def test_login_refuses_bad_credentials_and_accepts_a_configured_token(
        tmp_path: Path) -> None:
    async with rig(tmp_path, [("1007", "Heidi")]) as r, aiohttp.ClientSession() as http:
        async with http.post(f"{r.base}/api/v1/login",
                             json={"username": "1007", "password": "wrong"}) as response:
            assert response.status == 401
        async with http.post(f"{r.base}/api/v1/login",
                             json={"username": "nobody", "password": "x"}) as response:
            assert response.status == 401
        async with http.post(f"{r.base}/api/v1/login", json={"user": "1007"}) as response:
            assert response.status == 422
        async with http.post(f"{r.base}/api/v1/login", json={"token": STATIC_TOKEN}) as response:
            assert response.status == 200
            assert (await response.json())["subject"] == "1007"
        # The configured token opens the socket directly too.
        desk = await DeskClient.open(http, r.base, STATIC_TOKEN)
        welcome = await desk.of_type("welcome")
        assert welcome["agent_id"] == "1007" and welcome["v"] == 1
        await desk.close()
        refused = await DeskClient.open(http, r.base, "forged.token")
        error = await refused.of_type("error")
        assert error["code"] == "unauthorized"
        await refused.close()


async def test_the_pop_reaches_the_ringing_agent_then_progress_and_disposition(
        tmp_path: Path) -> None:
    async with rig(tmp_path, [("1007", "Heidi")]) as r, aiohttp.ClientSession() as http:
        token = await login(http, r.base, "1007")
        desk = await DeskClient.open(http, r.base, token)
        welcome = await desk.of_type("welcome")
        assert welcome["pause_reasons"][:2] == ["break", "lunch"]
        snapshot = await desk.of_type("snapshot")
        assert snapshot["agent"]["state"] == "logged_out"
        ack = await desk.command("ready")
        assert ack["type"] == "ack" and ack["result"]["state"] == "available"

        await r.call(VIP_NUMBER, name="Alice")
        pop = (await desk.of_type("pop"))["pop"]
        assert pop["customer"]["name"] == "Alice Dupont"
        assert pop["vip"] is True and pop["identified_by"] == "phone"
        assert pop["service"] == "support" and pop["rule"]
        assert pop["history"][0]["agent_name"] == "Carol"
        assert pop["history"][0]["notes"] == "asked about her invoice"
        call_id = pop["call_id"]
        # The pop came while the phone was still ringing.
        kinds = [(m["type"], m.get("progress")) for m in desk.messages]
        connected = await desk.of_type("call_progress", progress="connected", call_id=call_id)
        assert kinds.index(("pop", None)) < desk.messages.index(connected)
        assert ("call_progress", "ringing") in [(m["type"], m.get("progress"))
                                                 for m in desk.messages]
        await desk.of_type("call_progress", progress="ended", call_id=call_id)
        await desk.of_type("state", within=5.0)

        ack = await desk.command("disposition", "d-1", call_id=call_id,
                                 disposition="resolved", notes="refund sent")
        assert ack["type"] == "ack" and ack["result"]["customer_id"] == "c-vip"
        again = await desk.command("disposition", "d-1", call_id=call_id,
                                   disposition="resolved", notes="refund sent")
        assert again["type"] == "ack" and again["result"] == ack["result"]
        history = await r.server.customers.history("c-vip")  # written before the ack
        assert len(history) == 2
        latest = history[0]
        assert (latest.agent_id, latest.agent_name) == ("1007", "Heidi")
        assert latest.disposition == "resolved" and latest.notes == "refund sent"
        assert 3.0 <= latest.duration_s <= 8.0
        second = await desk.command("disposition", "d-2", call_id=call_id,
                                    disposition="other")
        assert second["code"] == "already_recorded"
        assert desk.stream_seqs == list(range(1, len(desk.stream_seqs) + 1))
        await desk.close()


async def test_bad_input_gets_an_error_and_changes_nothing(tmp_path: Path) -> None:
    async with rig(tmp_path, [("1007", "Heidi")]) as r, aiohttp.ClientSession() as http:
        desk = await DeskClient.open(http, r.base, await login(http, r.base, "1007"))
        await desk.of_type("snapshot")
        await desk.command("pause", reason="lunch")
        state = r.server.switchboard.agents["1007"]
        cases = [
            ({"type": "teleport", "id": "x1"}, "unknown_type"),
            ({"type": "pause", "id": "x2", "reason": "x" * 41}, "invalid"),
            ({"type": "pause", "id": "x3", "reason": "nap"}, "bad_reason"),
            ({"type": "end_wrap_up", "id": "x4"}, "not_allowed"),
            ({"type": "disposition", "id": "x5", "call_id": "nope", "disposition": "a"},
             "unknown_call"),
            ({"type": "pause", "id": "x6", "reason": "break", "v": 2}, "invalid"),
            ({"type": "pause", "id": "x7", "reason": "break", "extra": 1}, "invalid"),
        ]
        for message, code in cases:
            since = len(desk.messages)
            await desk.ws.send_str(json.dumps(message))
            error = await desk.of_type("error", since=since)
            assert error["code"] == code, (message, error)
        since = len(desk.messages)
        await desk.ws.send_str("{not json")
        assert (await desk.of_type("error", since=since))["code"] == "bad_json"
        since = len(desk.messages)
        await desk.ws.send_str(json.dumps({"type": "ping", "id": "big", "pad": "x" * 20_000}))
        assert (await desk.of_type("error", since=since))["code"] == "too_large"
        assert r.server.switchboard.agents["1007"] == state
        assert (await desk.command("ping"))["type"] == "ack"  # the socket is still usable
        await desk.close()


async def test_a_reconnecting_tab_gets_what_it_missed_and_tabs_agree(tmp_path: Path) -> None:
    async with rig(tmp_path, [("1007", "Heidi"), ("1001", "Bob")]) as r, \
            aiohttp.ClientSession() as http:
        token = await login(http, r.base, "1007")
        first = await DeskClient.open(http, r.base, token)
        second = await DeskClient.open(http, r.base, token)
        bob = await DeskClient.open(http, r.base, await login(http, r.base, "1001"))
        welcome = await first.of_type("welcome")
        await second.of_type("snapshot")
        await bob.of_type("snapshot")
        await first.command("pause", "p-1", reason="break")
        # The same command id from the other tab acts once.
        assert (await second.command("pause", "p-1", reason="break"))["type"] == "ack"
        await second.of_type("state", within=5.0)
        last = first.stream_seqs[-1]
        await first.close()
        await second.command("ready")
        await second.command("pause", reason="lunch")
        back = await DeskClient.open(http, r.base, token, stream=welcome["stream"],
                                     last_seq=last)
        await back.of_type("welcome")
        await back.wait(lambda m: m["type"] == "state" and m["agent"]["reason"] == "lunch")
        assert back.stream_seqs[0] == last + 1
        assert not any(m["type"] == "snapshot" for m in back.messages)
        assert back.stream_seqs == second.stream_seqs[-len(back.stream_seqs):]
        states = [m["agent"]["state"] for m in second.messages if m["type"] == "state"]
        assert states.count("paused") == 2  # p-1 paused once, then lunch
        # Bob saw none of Heidi's stream.
        assert all(m.get("agent", {}).get("id") in (None, "1001") for m in bob.messages)
        # Too old for another run of the server: a snapshot.
        stale = await DeskClient.open(http, r.base, token, stream="other", last_seq=1)
        assert (await stale.of_type("snapshot"))["agent"]["reason"] == "lunch"
        for desk in (second, bob, back, stale):
            await desk.close()
