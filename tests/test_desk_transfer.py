"""Transfers and level-1 -> level-2 escalation with the context kept: the
caller goes back to waiting with their place and VIP class, the first
agent wraps up, the second agent's pop has the customer and the first
agent's notes, and the call ends once, with the second agent. In process
against `cti.sim` over TCP (tests/desk_kit.py)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from cti.center import CenterError, center_from
from cti.routing import AgentState, NotAgentsCall, UnknownCall, UnknownService
from cti.switchboard import CallFinished, SwitchboardEvent, TaskOffered
from tests.desk_kit import VIP_NUMBER, DeskClient, login, rig

pytestmark = [pytest.mark.timeout(60), pytest.mark.integration]

# Frank (1005: rings 1 s, talks 120 s) is level 1 only; Heidi (1007: rings
# 2 s, talks 5 s) is level 2 only.
AGENTS = [("1005", "Frank"), ("1007", "Heidi")]
SKILLS = {"1005": {"support": 5}, "1007": {"level2": 3}}


async def test_an_escalated_call_reaches_level_2_with_the_customer_and_the_first_notes(
        tmp_path: Path) -> None:
    async with rig(tmp_path, AGENTS, skills=SKILLS) as r, aiohttp.ClientSession() as http:
        board = r.server.switchboard
        seen: list[SwitchboardEvent] = []
        board.listeners.append(seen.append)
        frank = await DeskClient.open(http, r.base, await login(http, r.base, "1005"))
        heidi = await DeskClient.open(http, r.base, await login(http, r.base, "1007"))
        for desk in (frank, heidi):
            await desk.of_type("snapshot")
            assert (await desk.command("ready"))["type"] == "ack"

        await r.call(VIP_NUMBER, name="Alice")
        first = (await frank.of_type("pop"))["pop"]
        call_id = first["call_id"]
        assert first["service"] == "support" and first["previous_notes"] == []
        await frank.of_type("call_progress", progress="connected", call_id=call_id)

        note = "wants the March invoice refunded; identity checked"
        ack = await frank.command("escalate", "e-1", call_id=call_id, notes=note)
        assert ack["type"] == "ack", ack
        assert ack["result"] == {"call_id": call_id, "service": "support-l2"}
        await frank.of_type("call_progress", progress="ended", call_id=call_id)
        assert board.agents["1005"].state is AgentState.WRAP_UP
        assert board.agents["1005"].task_service == "support"
        assert call_id in r.server.tracker.calls  # the call lives on

        second = (await heidi.of_type("pop"))["pop"]
        assert second["call_id"] == call_id
        assert second["service"] == "support-l2"
        assert second["customer"]["id"] == "c-vip" and second["vip"] is True
        assert [(n["agent_name"], n["service"], n["notes"]) for n in second["previous_notes"]] \
            == [("Frank", "support", note)]
        await heidi.of_type("call_progress", progress="ringing", call_id=call_id)
        await heidi.of_type("call_progress", progress="connected", call_id=call_id)
        await heidi.of_type("call_progress", progress="ended", call_id=call_id)

        offers = [e for e in seen if isinstance(e, TaskOffered)]
        assert [o.assignment.agent_id for o in offers] == ["1005", "1007"]
        # Same place in the queue and the same VIP class.
        assert offers[1].info.task.enqueued_at == offers[0].info.task.enqueued_at
        assert offers[1].info.task.priority == offers[0].info.task.priority == "vip"
        finished = [e for e in seen if isinstance(e, CallFinished)]
        assert len(finished) == 1
        record = finished[0].event.record
        assert record.call == call_id and record.agent == "Local/1007@sim-agent"
        assert record.transfers == 1 and record.outcome.value == "answered"
        assert board.agents["1007"].state is AgentState.WRAP_UP
        assert board.agents["1005"].calls_handled == board.agents["1007"].calls_handled == 1
        # Frank's call ended once on his desk, at the escalation.
        assert sum(1 for m in frank.messages if m["type"] == "call_progress"
                   and m["progress"] == "ended") == 1
        for desk in (frank, heidi):
            await desk.close()


async def test_a_transfer_is_refused_for_an_unknown_call_another_agent_or_service(
        tmp_path: Path) -> None:
    async with rig(tmp_path, AGENTS, skills=SKILLS) as r, aiohttp.ClientSession() as http:
        board = r.server.switchboard
        frank = await DeskClient.open(http, r.base, await login(http, r.base, "1005"))
        await frank.of_type("snapshot")
        await frank.command("ready")
        board.login("1007")
        await r.call(VIP_NUMBER, name="Alice")
        call_id = (await frank.of_type("pop"))["pop"]["call_id"]
        await frank.of_type("call_progress", progress="connected", call_id=call_id)
        before = (dict(board.offers), dict(board.agents), board.tasks[call_id])

        with pytest.raises(UnknownCall, match="nope"):
            await board.transfer_to_service("nope", "support-l2", by_agent="1005")
        with pytest.raises(NotAgentsCall, match="1007"):
            await board.transfer_to_service(call_id, "support-l2", by_agent="1007")
        with pytest.raises(NotAgentsCall):
            await board.transfer_to_service(call_id, "support-l2", by_agent="9999")
        with pytest.raises(UnknownService, match="billing"):
            await board.transfer_to_service(call_id, "billing", by_agent="1005")
        assert (dict(board.offers), dict(board.agents), board.tasks[call_id]) == before

        # The desk answers the same refusals with an error and no note kept.
        refused = await frank.command("transfer", call_id=call_id, service="billing",
                                      notes="x")
        assert refused["code"] == "unknown_service"
        refused = await frank.command("transfer", call_id="other", service="support-l2")
        assert refused["code"] == "not_allowed"
        pop = await r.server.store.redis.lrange(f"cti:call:{call_id}:notes", 0, -1)
        assert pop == []
        assert board.agents["1005"].state is AgentState.ON_CALL
        await frank.close()


async def test_a_desk_without_a_level_2_service_cannot_escalate(tmp_path: Path) -> None:
    async with rig(tmp_path, [("1005", "Frank")], skills={"1005": {"level2": 1}}) as r, \
            aiohttp.ClientSession() as http:
        frank = await DeskClient.open(http, r.base, await login(http, r.base, "1005"))
        await frank.of_type("snapshot")
        await frank.command("ready")
        # Routed straight to the level-2 service: it has no escalation.
        r.server.switchboard.set_skills("1005", {"level2": 1})
        await r.ami.action("Originate", ("Channel", "Local/60@sim-caller"),
                           ("Context", "cti-inbound"), ("Exten", "0140000001"),
                           ("Priority", "1"), ("CallerID", f'"A" <{VIP_NUMBER}>'),
                           ("Variable", "CTI_SERVICE=support-l2"), ("Async", "true"))
        pop = (await frank.of_type("pop"))["pop"]
        assert pop["service"] == "support-l2"
        await frank.of_type("call_progress", progress="connected", call_id=pop["call_id"])
        refused = await frank.command("escalate", call_id=pop["call_id"], notes="help")
        assert refused["code"] == "no_escalation"
        await frank.close()


def test_an_escalation_names_an_existing_other_service() -> None:
    base = {"agents": [], "services": {"support": {"escalation": "support-l2"},
                                       "support-l2": {}}}
    assert center_from(base).escalations == {"support": "support-l2"}
    with pytest.raises(CenterError, match="escalation: 'expert' is not a service"):
        center_from({"services": {"support": {"escalation": "expert"}}})
    with pytest.raises(CenterError, match="cannot escalate to itself"):
        center_from({"services": {"support": {"escalation": "support"}}})
