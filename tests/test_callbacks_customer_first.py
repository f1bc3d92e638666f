"""Customer-first callbacks against a real server, redis-server and the
simulated PBX: the customer is dialled first (service caller id, E.164
number through the trunk) and connected to the reserved agent once they
answered; a busy, unanswered or failed customer frees the agent at once
(no wrap-up) and the retry follows the backoff; an agent who does not
answer after the customer did is paused and the customer goes to the next
agent, never hung up on. And in both modes, a burst of due callbacks never
has more customers dialled at once than agents free to take them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from cti.callbacks.store import CallbackStore
from cti.calls.model import CallRecord, Direction
from cti.calls.model import Outcome as CallOutcome
from cti.pbx.actions import AmiAction
from cti.routing import AgentState
from cti.sim.population import RECORDED_AGENTS, RECORDED_CUSTOMERS, Phone, Population
from cti.switchboard import AgentChanged, CallFinished
from tests.ami_client import AmiClient
from tests.callback_floor import Floor, eventually, floor

pytestmark = pytest.mark.timeout(120)

CALLER_ID = "0140000001"
CUSTOMER_FIRST = {"callback_mode": "customer-first", "caller_id": CALLER_ID}
TRUNK = {"CTI_CALLBACKS_TRUNK": "Local/{number}@sim-customer",
         "CTI_CALLBACKS_CUSTOMER_RING_SECONDS": "6"}
BOB = [{"id": "1001", "skills": {"support": 5}}]       # rings 2 s, talks 8 s


def population(*customers: Phone) -> Population:
    return Population(agents={p.number: p for p in RECORDED_AGENTS},
                      customers={p.number: p for p in (*RECORDED_CUSTOMERS, *customers)})


@asynccontextmanager
async def watching(f: Floor) -> AsyncIterator[AmiClient]:
    """An events-on AMI session on the simulated PBX: what it did, in order."""
    ami = await AmiClient.connect(f.sim_port)
    await ami.login(secret="s3cret")
    try:
        yield ami
    finally:
        await ami.close()


def originates(f: Floor) -> list[AmiAction]:
    """Every Originate the server sends from now on (the real link sends it)."""
    sent: list[AmiAction] = []
    original = f.server.link.send

    async def spy(action: AmiAction, **kwargs: Any) -> Any:
        if action.name == "Originate":
            sent.append(action)
        return await original(action, **kwargs)

    f.server.link.send = spy  # type: ignore[method-assign]
    return sent


def states_of(f: Floor, agent_id: str) -> list[str]:
    """Every state the agent goes through from now on."""
    seen: list[str] = []

    def listen(event: object) -> None:
        if isinstance(event, AgentChanged) and event.agent.id == agent_id \
                and (not seen or seen[-1] != event.agent.state.value):
            seen.append(event.agent.state.value)

    f.server.switchboard.listeners.append(listen)
    return seen


async def final(f: Floor, callback_id: str, within: float = 60.0) -> dict[str, Any]:
    """The callback once final, as the requester sees it (the store is
    polled, not the API: its reads are rate-limited)."""
    store = CallbackStore(f.redis)
    async with asyncio.timeout(within):
        while True:
            record = await store.get(callback_id)
            if record is not None and record.status.final:
                break
            await asyncio.sleep(0.2)
    status, shown = await f.get(f"/api/v1/callbacks/{callback_id}")
    assert status == 200
    return dict(shown)


async def stored_attempts(f: Floor, callback_id: str) -> list[dict[str, Any]]:
    record = await CallbackStore(f.redis).get(callback_id)
    assert record is not None
    return [a.supervisor() for a in record.attempts]


def index(events: list[Any], predicate: Any) -> int:
    return next(i for i, m in enumerate(events) if predicate(m))


async def test_the_customer_is_dialled_first_and_connected_to_the_reserved_agent(
        tmp_path: Path) -> None:
    async with floor(tmp_path, BOB, env=TRUNK, **CUSTOMER_FIRST) as f, watching(f) as ami:
        sent = originates(f)
        bob = states_of(f, "1001")
        ended: list[CallRecord] = []
        f.server.switchboard.listeners.append(
            lambda e: ended.append(e.event.record) if isinstance(e, CallFinished) else None)
        _, body = await f.post({"number": "06 11 22 33 44"})
        shown = await final(f, body["id"])
        assert shown["outcome"] == "answered" and len(shown["attempts"]) == 1
        [originate] = sent
        fields = dict(originate.fields)
        assert fields["Channel"] == "Local/+33611223344@sim-customer"
        assert (fields["Context"], fields["Exten"]) == ("cti-callback-customer", "+33611223344")
        assert fields["CallerID"] == f"<{CALLER_ID}>" and fields["Timeout"] == "6000"
        variables = dict(v.split("=", 1) for k, v in originate.fields if k == "Variable")
        assert variables["CTI_AGENT"] == "1001"
        assert variables["CTI_AGENT_DEVICE"] == "Local/1001@sim-agent"
        assert variables["CTI_CALLBACK_ID"] == body["id"]
        # Nobody waited on a ringing line: Bob's phone rang only once the
        # customer had answered.
        events = ami.events
        answered = index(events, lambda m: m.event == "UserEvent"
                         and m.get("UserEvent") == "CTICallbackAnswered")
        agent_rings = index(events, lambda m: m.event == "Newchannel"
                            and (m.get("Channel") or "").startswith("Local/1001@sim-agent"))
        assert answered < agent_rings
        await eventually(lambda: f.server.switchboard.agents["1001"].state
                         in (AgentState.WRAP_UP, AgentState.AVAILABLE))
        assert bob[:4] == ["reserved", "ringing", "on_call", "wrap_up"]
        [attempt] = await stored_attempts(f, body["id"])
        assert attempt["mode"] == "customer-first" and attempt["agent"] == "1001"
        assert attempt["requeued"] is False
        # The call as the tracker recorded it: a callback to that number,
        # answered by Bob, not an outbound call from the center's number.
        [record] = ended
        assert record.call == dict(originate.fields)["ChannelId"]
        assert (record.direction, record.caller_number) == (Direction.CALLBACK, "+33611223344")
        assert (record.outcome, record.agent) == (CallOutcome.ANSWERED, "Local/1001@sim-agent")


@pytest.mark.parametrize(("number", "outcome", "dial_status"), [
    ("0699999999", "busy", "BUSY"),
    ("0688888888", "no_answer", "NOANSWER"),      # rings out after 6 s
    ("0677777777", "failed", "CONGESTION"),
])
async def test_a_customer_who_does_not_answer_frees_the_agent_at_once_and_is_retried(
        tmp_path: Path, number: str, outcome: str, dial_status: str) -> None:
    env = {**TRUNK, "CTI_CALLBACKS_MAX_ATTEMPTS": "2"}
    async with floor(tmp_path, BOB, env=env, **CUSTOMER_FIRST) as f:
        bob = states_of(f, "1001")
        _, body = await f.post({"number": number})
        shown = await final(f, body["id"])
        assert shown["status"] == "failed" and shown["outcome"] == outcome
        assert [a["outcome"] for a in shown["attempts"]] == [outcome, outcome]
        attempts = await stored_attempts(f, body["id"])
        assert [a["dial_status"] for a in attempts] == [dial_status, dial_status]
        # Reserved while the customer rang, then straight back: no ringing,
        # no call, no wrap-up, no pause.
        assert bob == ["reserved", "available", "reserved", "available"]
        assert await f.redis.zcard("cti:cb:claimed") == 0


async def test_a_trunk_that_refuses_the_number_fails_the_attempt_and_frees_the_agent(
        tmp_path: Path) -> None:
    # Not a Local channel: the simulated PBX refuses the Originate at once,
    # with no channel at all (OriginateResponse Failure, Reason 0).
    env = {"CTI_CALLBACKS_TRUNK": "PJSIP/{number}@trunk", "CTI_CALLBACKS_MAX_ATTEMPTS": "1"}
    async with floor(tmp_path, BOB, env=env, **CUSTOMER_FIRST) as f:
        bob = states_of(f, "1001")
        _, body = await f.post({"number": "0611223344"})
        shown = await final(f, body["id"], within=20)
        assert shown["status"] == "failed" and shown["outcome"] == "failed"
        assert bob == ["reserved", "available"]


async def test_an_agent_who_does_not_answer_is_paused_and_the_customer_goes_to_the_next(
        tmp_path: Path) -> None:
    # Dave (1003) never answers and ranks first; Bob takes the customer,
    # who answered and stays on the line a minute.
    patient = Phone("0611000010", "customer answering, patient", ring_s=1, talk_s=60)
    agents = [{"id": "1003", "skills": {"support": 9}}, {"id": "1001", "skills": {"support": 2}}]
    async with floor(tmp_path, agents, env=TRUNK, population=population(patient),
                     ring_timeout_seconds=5, **CUSTOMER_FIRST) as f, watching(f) as ami:
        sent = originates(f)
        _, body = await f.post({"number": "0611000010"})
        board = f.server.switchboard.agents
        await eventually(lambda: board["1003"].state is AgentState.PAUSED, within=30)
        await eventually(lambda: board["1001"].state is AgentState.ON_CALL, within=30)
        assert board["1003"].pause_reason == "no answer"
        shown = await final(f, body["id"], within=10)
        assert shown["outcome"] == "answered" and len(shown["attempts"]) == 1
        [attempt] = await stored_attempts(f, body["id"])
        assert attempt["agent"] == "1003" and attempt["requeued"] is True
        # One call to the customer, who waited in cti-wait and was redirected
        # to Bob: never dialled twice.
        assert len(sent) == 1
        customer_legs = [m for m in ami.events if m.event == "Newchannel" and (
            m.get("Channel") or "").startswith("Local/+33611000010@sim-customer")]
        assert len(customer_legs) == 2   # the ;1 and ;2 halves of one Local channel
        assert [m for m in ami.events if m.event == "MusicOnHoldStart"]
        # Bob is on that very call: its task is the originated call.
        offers = f.server.switchboard.offers
        assert [t for t, a in offers.items() if a == "1001"] == [
            dict(sent[0].fields)["ChannelId"]]


async def test_a_pause_asked_while_the_customer_rings_applies_when_the_call_ends(
        tmp_path: Path) -> None:
    slow = Phone("0611000011", "customer answering after 3 s", ring_s=3, talk_s=4)
    async with floor(tmp_path, BOB, env=TRUNK, population=population(slow),
                     **CUSTOMER_FIRST) as f, watching(f) as ami:
        bob = states_of(f, "1001")
        switchboard = f.server.switchboard
        _, body = await f.post({"number": "0611000011"})
        await ami.wait_for(lambda m: m.event == "DialState" and m.get("DialStatus") == "RINGING")
        # The customer's phone is ringing for Bob: the pause waits.
        assert switchboard.pause("1001", "break").state is AgentState.RESERVED
        shown = await final(f, body["id"], within=30)
        assert shown["outcome"] == "answered"
        await eventually(lambda: switchboard.agents["1001"].state is AgentState.PAUSED)
        assert switchboard.agents["1001"].pause_reason == "break"
        assert bob == ["reserved", "ringing", "on_call", "paused"]


# -- the rule of both modes -------------------------------------------------------------

BURST = [Phone(f"06110000{n:02d}", f"customer {n}", ring_s=2, talk_s=2) for n in range(1, 7)]


@pytest.mark.parametrize("mode", ["agent-first", "customer-first"])
async def test_a_burst_of_due_callbacks_never_dials_more_customers_than_free_agents(
        tmp_path: Path, mode: str) -> None:
    # Two agents can take support callbacks; Carol (1002) only does sales
    # and is free all along: she must not count.
    agents = [{"id": "1001", "skills": {"support": 5}},
              {"id": "1007", "skills": {"support": 5}},
              {"id": "1002", "skills": {"sales": 5}}]
    service = {"callback_mode": mode, "caller_id": CALLER_ID}
    async with floor(tmp_path, agents, env=TRUNK, population=population(*BURST),
                     **service) as f, watching(f) as ami:
        carol = states_of(f, "1002")
        ids = []
        for phone in BURST:
            status, body = await f.post({"number": phone.number})
            assert status == 202, body
            ids.append(body["id"])
        for callback_id in ids:
            assert (await final(f, callback_id, within=90))["outcome"] == "answered"
        # The customers' legs as the PBX saw them, in order: at no moment
        # were more than two of them up or ringing.
        live: set[str] = set()
        most = 0
        dialled = set()
        for m in ami.events:
            channel = m.get("Channel") or ""
            if not channel.startswith("Local/+336110000") or not channel.endswith(";1"):
                continue
            if m.event == "Newchannel":
                live.add(channel)
                dialled.add(channel.split("@")[0])
                most = max(most, len(live))
            elif m.event == "Hangup":
                live.discard(channel)
        assert len(dialled) == len(BURST)
        assert most == 2
        assert carol == []


@pytest.mark.parametrize("mode", [{}, CUSTOMER_FIRST])
async def test_an_originate_whose_answer_is_lost_frees_the_agent_and_is_retried(
        tmp_path: Path, mode: dict[str, str]) -> None:
    # The first Originate is taken by the link and lost (as when the AMI
    # link drops before Asterisk answers): no channel, no OriginateResponse.
    # Bob is not held for it: once its answer is overdue he is free again
    # and the callback is dialled a second time, which goes through.
    env = {**TRUNK, "CTI_CALLBACKS_MAX_ATTEMPTS": "2"}
    async with floor(tmp_path, BOB, env=env, ring_timeout_seconds=5, **mode) as f:
        bob = states_of(f, "1001")
        sent: list[AmiAction] = []
        original = f.server.link.send

        async def lose_first(action: AmiAction, **kwargs: Any) -> Any:
            if action.name == "Originate":
                sent.append(action)
                if len(sent) == 1:
                    return []  # accepted by the link, never answered
            return await original(action, **kwargs)

        f.server.link.send = lose_first  # type: ignore[method-assign]
        _, body = await f.post({"number": "06 11 22 33 44"})
        shown = await final(f, body["id"], within=60)
        assert shown["status"] == "completed" and shown["outcome"] == "answered"
        assert len(sent) == 2
        attempts = await stored_attempts(f, body["id"])
        assert [a["dial_status"] for a in attempts] == ["ORIGINATE", "ANSWER"]
        # Reserved for the lost call, freed without a pause or a wrap-up.
        assert bob[:2] == ["reserved", "available"]
        assert await f.redis.zcard("cti:cb:claimed") == 0
