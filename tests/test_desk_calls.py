"""The agent's actions on a live call over `/ws/agent`: hang up, hold on the
phone, blind transfer to a named colleague, and an attended transfer done
on the phone (Atxfer, recording 06b) that the pop follows. Refusals change
nothing. In process against `cti.sim` over TCP (tests/desk_kit.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cti.routing import AgentState
from cti.switchboard import (
    AgentChanged,
    CallFinished,
    CallHandedOver,
    CallHeld,
    SwitchboardEvent,
    TaskOffered,
)
from cti.wallboard.feature import WallboardFeature
from tests.desk_kit import VIP_NUMBER, DeskClient, Rig, login, rig

pytestmark = [pytest.mark.timeout(60), pytest.mark.integration]

# Sim phones: 1003 Dave never answers; 1005 Frank rings 1 s, talks 120 s;
# 1006 Grace rings 2 s, talks 120 s; 1007 Heidi rings 2 s, talks 5 s.


async def ready_desk(http: aiohttp.ClientSession, r: Rig, agent_id: str) -> DeskClient:
    desk = await DeskClient.open(http, r.base, await login(http, r.base, agent_id))
    await desk.of_type("snapshot")
    assert (await desk.command("ready"))["type"] == "ack"
    return desk


async def connected_call(r: Rig, desk: DeskClient) -> str:
    await r.call(VIP_NUMBER, name="Alice")
    call_id: str = (await desk.of_type("pop"))["pop"]["call_id"]
    await desk.of_type("call_progress", progress="connected", call_id=call_id)
    return call_id


def progress_of(desk: DeskClient, call_id: str) -> list[str]:
    return [m["progress"] for m in desk.messages
            if m["type"] == "call_progress" and m["call_id"] == call_id]


def frozen(r: Rig, call_id: str) -> tuple[Any, ...]:
    """What a refused command must leave as it was."""
    board = r.server.switchboard
    return (dict(board.offers), dict(board.agents), board.tasks[call_id],
            r.server.tracker.calls[call_id].state)


# -- hang up -----------------------------------------------------------------------------


async def test_hangup_ends_the_agents_call_once_and_its_retry_gets_the_first_answer(
        tmp_path: Path) -> None:
    async with rig(tmp_path, [("1005", "Frank"), ("1006", "Grace")]) as r, \
            aiohttp.ClientSession() as http:
        seen: list[SwitchboardEvent] = []
        r.server.switchboard.listeners.append(seen.append)
        frank = await ready_desk(http, r, "1005")
        grace = await DeskClient.open(http, r.base, await login(http, r.base, "1006"))
        await grace.of_type("snapshot")
        call_id = await connected_call(r, frank)

        # Not Grace's call, not a call of Frank's: refused, nothing moves.
        before = frozen(r, call_id)
        refused = await grace.command("hangup", call_id=call_id)
        assert (refused["type"], refused["code"]) == ("error", "not_allowed")
        refused = await frank.command("hangup", call_id="1795369606.0")
        assert (refused["type"], refused["code"]) == ("error", "not_allowed")
        assert frozen(r, call_id) == before

        ack = await frank.command("hangup", "h-1", call_id=call_id)
        assert (ack["type"], ack["result"]) == ("ack", {"call_id": call_id})
        await frank.of_type("call_progress", progress="ended", call_id=call_id)
        await frank.wait(lambda m: m["type"] == "state" and m["agent"]["state"] == "wrap_up")
        assert call_id not in r.server.tracker.calls
        [finished] = [e for e in seen if isinstance(e, CallFinished)]
        assert finished.event.record.hung_up_by_caller is False
        assert finished.event.record.agent == "Local/1005@sim-agent"

        # The same id again: the first answer, not a second Hangup (which the
        # PBX would refuse now that the channel is gone).
        again = await frank.command("hangup", "h-1", call_id=call_id)
        assert {**again, "seq": 0} == {**ack, "seq": 0}  # `seq`: the stream position now
        # A new id on the ended call is refused.
        late = await frank.command("hangup", "h-2", call_id=call_id)
        assert (late["type"], late["code"]) == ("error", "not_allowed")
        assert progress_of(frank, call_id) == ["ringing", "connected", "ended"]
        assert [m for m in grace.messages if m["type"] in ("pop", "call_progress")] == []
        for desk in (frank, grace):
            await desk.close()


async def test_hangup_while_the_phone_still_rings_is_refused_and_the_call_goes_on(
        tmp_path: Path) -> None:
    async with rig(tmp_path, [("1006", "Grace")]) as r, aiohttp.ClientSession() as http:
        grace = await ready_desk(http, r, "1006")
        await r.call(VIP_NUMBER, name="Alice")
        call_id = (await grace.of_type("pop"))["pop"]["call_id"]
        assert r.server.switchboard.agents["1006"].state in (AgentState.RESERVED,
                                                             AgentState.RINGING)
        refused = await grace.command("hangup", call_id=call_id)
        assert (refused["type"], refused["code"]) == ("error", "not_allowed")
        await grace.of_type("call_progress", progress="connected", call_id=call_id)
        assert call_id in r.server.tracker.calls
        await grace.close()


# -- hold ------------------------------------------------------------------------------


async def test_hold_on_the_phone_shows_on_hold_then_connected_on_that_agents_desk_only(
        tmp_path: Path) -> None:
    async with rig(tmp_path, [("1005", "Frank"), ("1006", "Grace")]) as r, \
            aiohttp.ClientSession() as http:
        seen: list[SwitchboardEvent] = []
        r.server.switchboard.listeners.append(seen.append)
        frank = await ready_desk(http, r, "1005")
        call_id = await connected_call(r, frank)
        grace = await ready_desk(http, r, "1006")  # free, on nobody's call

        assert r.sim.press_hold("1005")
        await frank.of_type("call_progress", progress="on_hold", call_id=call_id)
        # A desk opened now sees the pop on hold in its snapshot.
        tab = await DeskClient.open(http, r.base, await login(http, r.base, "1005"))
        assert (await tab.of_type("snapshot"))["pop"]["progress"] == "on_hold"
        mark = len(frank.messages)
        assert r.sim.press_hold("1005", on=False)
        await frank.of_type("call_progress", progress="connected", call_id=call_id, since=mark)
        await tab.of_type("call_progress", progress="connected", call_id=call_id)

        assert progress_of(frank, call_id) == ["ringing", "connected", "on_hold", "connected"]
        assert [(e.call, e.agent_id, e.on_hold) for e in seen if isinstance(e, CallHeld)] \
            == [(call_id, "1005", True), (call_id, "1005", False)]
        assert [m for m in grace.messages if m["type"] == "call_progress"] == []
        assert r.server.switchboard.agents["1005"].state is AgentState.ON_CALL
        assert not r.sim.press_hold("1007")  # a phone in no call has nothing to hold
        for desk in (frank, grace, tab):
            await desk.close()


# -- blind transfer to a named agent ----------------------------------------------------

AGENTS = [("1005", "Frank"), ("1006", "Grace"), ("1007", "Heidi")]
# Grace is the best agent for support; Heidi has no support skill at all.
SKILLS = {"1005": {"support": 5}, "1006": {"support": 9}, "1007": {"level2": 3}}


async def test_a_blind_transfer_to_a_colleague_rings_only_her_with_the_first_notes(
        tmp_path: Path) -> None:
    async with rig(tmp_path, AGENTS, skills=SKILLS) as r, aiohttp.ClientSession() as http:
        board = r.server.switchboard
        seen: list[SwitchboardEvent] = []
        board.listeners.append(seen.append)
        frank = await ready_desk(http, r, "1005")
        welcome = next(m for m in frank.messages if m["type"] == "welcome")
        assert welcome["agents"] == [{"id": "1006", "name": "Grace"},
                                     {"id": "1007", "name": "Heidi"}]
        call_id = await connected_call(r, frank)
        # Grace is free first (longest idle) and best skilled: the router's
        # choice for support, were the caller not sent to Heidi by name.
        grace = await ready_desk(http, r, "1006")
        heidi = await ready_desk(http, r, "1007")

        note = "wants the March invoice refunded; identity checked"
        ack = await frank.command("transfer", "t-1", call_id=call_id, agent="1007", notes=note)
        assert (ack["type"], ack["result"]) == ("ack", {"call_id": call_id, "agent": "1007"})
        await frank.of_type("call_progress", progress="ended", call_id=call_id)
        assert board.agents["1005"].state is AgentState.WRAP_UP

        pop = (await heidi.of_type("pop"))["pop"]
        assert pop["call_id"] == call_id and pop["service"] == "support"
        assert pop["customer"]["id"] == "c-vip" and pop["vip"] is True
        assert pop["rule"] == "transferred by agent 1005"
        assert [(n["agent_name"], n["service"], n["notes"]) for n in pop["previous_notes"]] \
            == [("Frank", "support", note)]
        await heidi.of_type("call_progress", progress="connected", call_id=call_id)
        await heidi.of_type("call_progress", progress="ended", call_id=call_id)  # talks 5 s

        offers = [e for e in seen if isinstance(e, TaskOffered)]
        assert [o.assignment.agent_id for o in offers] == ["1005", "1007"]
        assert offers[1].info.task.enqueued_at == offers[0].info.task.enqueued_at
        assert offers[1].info.task.priority == offers[0].info.task.priority == "vip"
        [finished] = [e for e in seen if isinstance(e, CallFinished)]
        assert finished.event.record.agent == "Local/1007@sim-agent"
        assert finished.event.record.transfers == 1
        assert [m for m in grace.messages if m["type"] in ("pop", "call_progress")] == []
        assert progress_of(frank, call_id) == ["ringing", "connected", "ended"]
        for desk in (frank, grace, heidi):
            await desk.close()


async def test_a_transfer_to_an_unknown_absent_or_same_agent_is_refused_and_changes_nothing(
        tmp_path: Path) -> None:
    async with rig(tmp_path, AGENTS, skills=SKILLS) as r, aiohttp.ClientSession() as http:
        board = r.server.switchboard
        frank = await ready_desk(http, r, "1005")
        call_id = await connected_call(r, frank)
        board.login("1007")
        board.pause("1007", "lunch")  # Grace stays logged out
        before = frozen(r, call_id)

        cases: list[tuple[dict[str, str], str, str]] = [
            ({"agent": "9999"}, "unknown_agent", "no agent '9999'"),
            ({"agent": "1005"}, "same_agent", "themselves"),
            ({"agent": "1006"}, "agent_not_available", "logged_out"),
            ({"agent": "1007"}, "agent_not_available", "paused (lunch)"),
            ({"agent": "1007", "service": "support-l2"}, "invalid", "exactly one"),
            ({}, "invalid", "exactly one"),
            ({"agent": "Heidi"}, "invalid", "agent"),
        ]
        for fields, code, says in cases:
            refused = await frank.command("transfer", call_id=call_id, notes="x", **fields)
            assert (refused["type"], refused["code"]) == ("error", code), fields
            assert says in refused["message"], refused
        refused = await frank.command("transfer", call_id="other", agent="1007")
        assert refused["code"] == "not_allowed"
        refused = await frank.command("notes", call_id="other", notes="x")
        assert refused["code"] == "not_allowed"

        assert frozen(r, call_id) == before
        assert await r.server.store.redis.lrange(f"cti:call:{call_id}:notes", 0, -1) == []
        assert progress_of(frank, call_id) == ["ringing", "connected"]
        await frank.close()


async def test_a_colleague_who_lets_the_transfer_ring_out_sends_the_caller_back_to_the_queue(
        tmp_path: Path) -> None:
    # Dave (1003) never answers; speed 4: his 10 s ring timeout takes 2.5 s.
    agents = [("1005", "Frank"), ("1003", "Dave"), ("1006", "Grace")]
    async with rig(tmp_path, agents, speed=4.0) as r, aiohttp.ClientSession() as http:
        board = r.server.switchboard
        seen: list[SwitchboardEvent] = []
        board.listeners.append(seen.append)
        frank = await ready_desk(http, r, "1005")
        call_id = await connected_call(r, frank)
        dave = await ready_desk(http, r, "1003")
        grace = await ready_desk(http, r, "1006")

        note = "second line of support, as agreed with Dave"
        ack = await frank.command("transfer", call_id=call_id, agent="1003", notes=note)
        assert ack["type"] == "ack", ack
        assert (await dave.of_type("pop"))["pop"]["rule"] == "transferred by agent 1005"
        withdrawn = await dave.of_type("pop_withdrawn", call_id=call_id)
        assert withdrawn["reason"] == "not_answered"
        await dave.wait(lambda m: m["type"] == "state" and m["agent"]["reason"] == "no answer")

        pop = (await grace.of_type("pop"))["pop"]
        assert pop["call_id"] == call_id and pop["service"] == "support"
        assert pop["rule"] != "transferred by agent 1005"
        assert [n["notes"] for n in pop["previous_notes"]] == [note]
        await grace.of_type("call_progress", progress="connected", call_id=call_id)

        offers = [e for e in seen if isinstance(e, TaskOffered)]
        assert [o.assignment.agent_id for o in offers] == ["1005", "1003", "1006"]
        assert len({o.info.task.enqueued_at for o in offers}) == 1  # its place kept
        assert {o.info.task.priority for o in offers} == {"vip"}
        for desk in (frank, dave, grace):
            await desk.close()


async def test_a_caller_waits_for_a_busy_colleague_only_as_long_as_the_center_says(
        tmp_path: Path) -> None:
    agents = [("1006", "Grace"), ("1005", "Frank"), ("1001", "Bob")]
    async with rig(tmp_path, agents, transfer_wait_seconds=5) as r, \
            aiohttp.ClientSession() as http:
        board = r.server.switchboard
        grace = await ready_desk(http, r, "1006")
        await connected_call(r, grace)  # Grace talks 120 s with a first caller
        frank = await ready_desk(http, r, "1005")
        call_id = await connected_call(r, frank)
        bob = await ready_desk(http, r, "1001")

        ack = await frank.command("transfer", call_id=call_id, agent="1006", notes="for Grace")
        assert ack["type"] == "ack", ack  # busy is fine: the caller waits for her
        await frank.of_type("call_progress", progress="ended", call_id=call_id)
        sent = r.server.clock()
        pop = (await bob.of_type("pop", within=10.0))["pop"]
        assert r.server.clock() - sent >= 4.5  # held for Grace until the wait was over
        assert pop["call_id"] == call_id and pop["rule"] != "transferred by agent 1005"
        assert [n["notes"] for n in pop["previous_notes"]] == ["for Grace"]
        assert board.agents["1006"].state is AgentState.ON_CALL
        for desk in (grace, frank, bob):
            await desk.close()


async def test_a_colleague_who_stops_taking_calls_releases_the_caller_waiting_for_her(
        tmp_path: Path) -> None:
    agents = [("1006", "Grace"), ("1005", "Frank"), ("1001", "Bob")]
    async with rig(tmp_path, agents) as r, aiohttp.ClientSession() as http:
        grace = await ready_desk(http, r, "1006")
        first = await connected_call(r, grace)
        frank = await ready_desk(http, r, "1005")
        call_id = await connected_call(r, frank)
        bob = await ready_desk(http, r, "1001")
        ack = await frank.command("transfer", call_id=call_id, agent="1006")
        assert ack["type"] == "ack", ack
        await frank.of_type("call_progress", progress="ended", call_id=call_id)

        # Grace asks for a break (pending while she talks), then ends her call.
        assert (await grace.command("pause", reason="lunch"))["result"]["pending"] is True
        assert [m for m in bob.messages if m["type"] == "pop"] == []  # still held for Grace
        assert (await grace.command("hangup", call_id=first))["type"] == "ack"
        await grace.wait(lambda m: m["type"] == "state" and m["agent"]["state"] == "paused")
        pop = (await bob.of_type("pop"))["pop"]  # at once, not at the end of the wait
        assert pop["call_id"] == call_id
        assert [m for m in grace.messages if m["type"] == "pop"
                and m["pop"]["call_id"] == call_id] == []
        for desk in (grace, frank, bob):
            await desk.close()


# -- attended transfer on the phone ---------------------------------------------------


async def until(check: Any, within: float = 10.0) -> None:
    """Wait (bounded) for a condition on the server's live state."""
    async with asyncio.timeout(within):
        while not check():
            await asyncio.sleep(0.05)


async def test_an_attended_transfer_on_the_phone_moves_the_pop_to_the_colleague_who_took_it(
        tmp_path: Path) -> None:
    async with rig(tmp_path, AGENTS) as r, aiohttp.ClientSession() as http:
        board, tracker = r.server.switchboard, r.server.tracker
        seen: list[SwitchboardEvent] = []
        board.listeners.append(seen.append)
        frank = await ready_desk(http, r, "1005")
        call_id = await connected_call(r, frank)
        grace = await ready_desk(http, r, "1006")
        heidi = await ready_desk(http, r, "1007")  # free too: must get nothing

        note = "refund agreed, Grace sends the form"
        ack = await frank.command("notes", call_id=call_id, notes=note)
        assert ack["result"] == {"call_id": call_id, "notes": True}
        # A second version replaces the first: one note per agent and call.
        ack = await frank.command("notes", call_id=call_id, notes=note + ".")
        assert ack["type"] == "ack"

        # Frank's phone: Atxfer to Grace (recording 06b), then he hangs up
        # once she answered the consultation.
        franks = r.channel_of(call_id, "1005")
        response = await r.ami.action("Atxfer", ("Channel", franks), ("Exten", "1006"),
                                      ("Context", "sim-agent"))
        assert response.response == "Success", response
        await frank.of_type("call_progress", progress="on_hold", call_id=call_id)
        await until(lambda: any(c.name.startswith("Local/1006@sim-agent-") and c.bridge
                                and c.state == 6 for c in tracker.channels.values()))
        assert [m for m in grace.messages if m["type"] == "pop"] == []  # still consulting
        response = await r.ami.action("Hangup", ("Channel", franks))
        assert response.response == "Success", response

        pop = (await grace.of_type("pop"))["pop"]
        assert pop["call_id"] == call_id and pop["progress"] == "connected"
        assert pop["customer"]["id"] == "c-vip" and pop["vip"] is True
        assert pop["history"][0]["agent_name"] == "Carol"
        assert pop["rule"] == "transferred by Frank"
        assert [(n["agent_name"], n["notes"]) for n in pop["previous_notes"]] \
            == [("Frank", note + ".")]
        await grace.of_type("call_progress", progress="connected", call_id=call_id)
        await frank.of_type("call_progress", progress="ended", call_id=call_id)
        assert board.agents["1005"].state is AgentState.WRAP_UP
        assert board.agents["1006"].state is AgentState.ON_CALL
        assert board.offers[call_id] == "1006"
        assert [(e.call, e.from_agent, e.to_agent) for e in seen
                if isinstance(e, CallHandedOver)] == [(call_id, "1005", "1006")]

        # Grace is on the call for the server too: she can hang it up.
        assert (await grace.command("hangup", call_id=call_id))["type"] == "ack"
        await grace.of_type("call_progress", progress="ended", call_id=call_id)
        [finished] = [e for e in seen if isinstance(e, CallFinished)]
        record = finished.event.record
        assert (record.agent, record.transfers) == ("Local/1006@sim-agent", 1)
        assert board.agents["1005"].calls_handled == board.agents["1006"].calls_handled == 1
        # The wallboard credits each agent their own part of the talk.
        await asyncio.sleep(0)  # its observers hear of the end right after
        [handed] = [e for e in seen if isinstance(e, CallHandedOver)]
        [frank_on_call] = [e.agent.state_since for e in seen if isinstance(e, AgentChanged)
                           and e.agent.id == "1005" and e.agent.state is AgentState.ON_CALL]
        wallboard = next(f for f in r.server.features if isinstance(f, WallboardFeature))
        days = wallboard.floor.agents.agents
        frank_part = handed.at - frank_on_call
        assert days["1005"].calls_handled == days["1006"].calls_handled == 1
        assert days["1005"].handle_s >= frank_part - 0.01  # (and his wrap-up, once over)
        assert days["1006"].handle_s == pytest.approx((record.talk_ms or 0) / 1000 - frank_part,
                                                      abs=0.05)
        assert progress_of(frank, call_id) == ["ringing", "connected", "on_hold", "ended"]
        assert progress_of(grace, call_id) == ["connected", "ended"]
        assert [m for m in heidi.messages if m["type"] in ("pop", "call_progress")] == []
        assert not [e for e in seen if isinstance(e, TaskOffered)
                    and e.assignment.agent_id != "1005"]
        for desk in (frank, grace, heidi):
            await desk.close()


async def test_an_attended_transfer_to_a_phone_of_no_agent_leaves_the_call_with_the_first(
        tmp_path: Path) -> None:
    # 2001 (the supervisor's phone in the sim) is no agent of this center.
    # It could as well be the agent's own phone under another channel name
    # (a Local channel optimised away): only a colleague ends her part.
    async with rig(tmp_path, AGENTS) as r, aiohttp.ClientSession() as http:
        board = r.server.switchboard
        seen: list[SwitchboardEvent] = []
        board.listeners.append(seen.append)
        frank = await ready_desk(http, r, "1005")
        call_id = await connected_call(r, frank)
        grace = await ready_desk(http, r, "1006")
        franks = r.channel_of(call_id, "1005")
        since = len(r.ami.received)
        response = await r.ami.action("Atxfer", ("Channel", franks), ("Exten", "2001"),
                                      ("Context", "sim-agent"))
        assert response.response == "Success", response
        await r.ami.wait_for(lambda m: m.event == "Newstate" and m.get("ChannelStateDesc")
                             == "Up" and (m.get("Channel") or "").startswith(
                                 "Local/2001@sim-agent"), since=since)
        await r.ami.action("Hangup", ("Channel", franks))
        await r.ami.event("AttendedTransfer", since=since, Result="Success")
        await until(lambda: r.server.tracker.calls[call_id].agent == "Local/2001@sim-agent")
        assert board.agents["1005"].state is AgentState.ON_CALL
        assert board.offers[call_id] == "1005"
        assert not [e for e in seen if isinstance(e, CallHandedOver)]

        await r.ami.action("Hangup", ("Channel", r.server.tracker.channels[
            r.server.tracker.calls[call_id].customer or ""].name))
        await frank.of_type("call_progress", progress="ended", call_id=call_id)
        assert board.agents["1005"].state is AgentState.WRAP_UP
        assert [m for m in grace.messages if m["type"] in ("pop", "call_progress")] == []
        for desk in (frank, grace):
            await desk.close()


async def test_a_colleague_consulted_on_the_phone_is_not_offered_a_call_meanwhile(
        tmp_path: Path) -> None:
    # Frank consults Grace on the phone (Atxfer): her phone is busy with a
    # call the router did not place. A caller arriving then goes to Heidi,
    # not to Grace, though Grace is "available" and has been idle longer.
    async with rig(tmp_path, AGENTS) as r, aiohttp.ClientSession() as http:
        board, tracker = r.server.switchboard, r.server.tracker
        offers: list[TaskOffered] = []
        board.listeners.append(lambda e: offers.append(e) if isinstance(e, TaskOffered)
                               else None)
        frank = await ready_desk(http, r, "1005")
        call_id = await connected_call(r, frank)
        grace = await ready_desk(http, r, "1006")
        franks = r.channel_of(call_id, "1005")
        response = await r.ami.action("Atxfer", ("Channel", franks), ("Exten", "1006"),
                                      ("Context", "sim-agent"))
        assert response.response == "Success", response
        await until(lambda: any(c.name.startswith("Local/1006@sim-agent-") and c.bridge
                                and c.state == 6 for c in tracker.channels.values()))
        await until(lambda: board.index.engaged("1006"))
        assert board.agents["1006"].state is AgentState.AVAILABLE
        heidi = await ready_desk(http, r, "1007")
        await r.call("+33699000111", name="Second")
        pop = (await heidi.of_type("pop"))["pop"]
        assert [o.assignment.agent_id for o in offers] == ["1005", "1007"]
        assert [m for m in grace.messages if m["type"] == "pop"
                and m["pop"]["call_id"] == pop["call_id"]] == []
        # The consultation over (Grace hangs up her side): she takes calls again.
        grace_leg = next(c.name for c in tracker.channels.values()
                         if c.name.startswith("Local/1006@sim-agent-") and c.name.endswith(";1"))
        assert (await r.ami.action("Hangup", ("Channel", grace_leg))).response == "Success"
        await until(lambda: not board.index.engaged("1006"))
        for desk in (frank, grace, heidi):
            await desk.close()
