"""The simulated PBX as the server and the demo use it: cti-connect dialling
the device the server set, cti-inbound with the server's IVR over FastAGI
(dialplans/cti.conf), generated callers the server can recognise, the demo
floor of `demo_population()`, and a floor of hundreds of agents at speed 10.

Everything goes over real loopback TCP: the sim's AMI, a tiny FastAGI
server written here, and a tiny router playing the server's part.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cti.pbx.wire import AmiMessage
from cti.sim import Sim, start_sim
from cti.sim.cli import parser, settings_from
from cti.sim.population import Pickup, Population, Traffic, demo_population
from tests.ami_client import AmiClient
from tests.servers import free_port

SPEED = 20.0
DID = "0140000001"
VIPS = ("+33600000001", "+33600000002")
KNOWN = ("+33611111111", "+33622222222", "+33633333333", "+33600000001")


@asynccontextmanager
async def running(**settings: object) -> AsyncIterator[tuple[Sim, AmiClient]]:
    options: dict[str, object] = {"port": 0, "speed": SPEED, "login_failure_delay": 0.05}
    sim = await start_sim(None, **(options | settings))
    ami = await AmiClient.connect(sim.port)
    try:
        await ami.login("on")
        yield sim, ami
    finally:
        await ami.close()
        await sim.close()


async def call_in(ami: AmiClient, *variables: str, patience: str = "60") -> str:
    """A caller on the DID, like the recordings' driver; returns its ;1."""
    since = len(ami.received)
    action_id = ami.send(
        "Originate", ("Channel", f"Local/{patience}@sim-caller"), ("Context", "cti-inbound"),
        ("Exten", DID), ("CallerID", '"Alice Dupont" <+33612345678>'), ("Async", "true"),
        *[("Variable", v) for v in variables])
    response = await ami.event("OriginateResponse", since=since, ActionID=action_id)
    assert response.get("Response") == "Success"
    return response.get("Channel") or ""


async def route(ami: AmiClient, caller: str, agent: str, **variables: str) -> int:
    """What the server does: Setvar on the caller, Redirect to cti-connect.
    Returns the index of the first message after the Redirect was sent."""
    for name, value in variables.items():
        reply = await ami.action("Setvar", ("Channel", caller), ("Variable", name),
                                 ("Value", value))
        assert reply.response == "Success"
    since = len(ami.received)
    reply = await ami.action("Redirect", ("Channel", caller), ("Context", "cti-connect"),
                             ("Exten", agent), ("Priority", "1"))
    assert reply.response == "Success"
    return since


def app_data(ami: AmiClient, channel: str, app: str, since: int = 0) -> list[str]:
    return [m.get("AppData") or "" for m in ami.received[since:]
            if m.event == "Newexten" and m.get("Channel") == channel
            and m.get("Application") == app]


# ---------------------------------------------------------------- cti-connect

async def test_connect_dials_the_device_the_server_set() -> None:
    async with running() as (_, ami):
        caller = await call_in(ami)
        await ami.event("UserEvent", UserEvent="CTIQueued")
        # agent 42's phone is 1002: the device decides, the agent id is a name
        since = await route(ami, caller, "42", CTI_AGENT="42",
                            CTI_AGENT_DEVICE="Local/1002@sim-agent", CTI_RING_TIMEOUT="15",
                            CTI_TASK="task-1")
        connecting = await ami.event("UserEvent", since=since, UserEvent="CTIConnecting")
        assert (connecting.get("CtiAgent"), connecting.get("CtiRingTimeout")) == ("42", "15")
        begin = await ami.event("DialBegin", since=since, Channel=caller)
        assert begin.get("DialString") == "1002@sim-agent"
        await ami.event("DialEnd", since=since, Channel=caller, DialStatus="ANSWER")
        assert app_data(ami, caller, "Dial", since) == ["Local/1002@sim-agent,15,t"]


async def test_connect_without_a_device_dials_the_agent_interface_with_the_default_timeout(
) -> None:
    async with running() as (_, ami):
        caller = await call_in(ami)
        await ami.event("UserEvent", UserEvent="CTIQueued")
        since = await route(ami, caller, "1001", CTI_AGENT="1001")
        connecting = await ami.event("UserEvent", since=since, UserEvent="CTIConnecting")
        assert connecting.get("CtiRingTimeout") == "10"
        await ami.event("DialEnd", since=since, Channel=caller, DialStatus="ANSWER")
        assert app_data(ami, caller, "Dial", since) == ["Local/1001@sim-agent,10,t"]


async def test_an_unanswered_or_unreachable_device_is_a_rona_and_the_caller_waits_again(
) -> None:
    async with running() as (_, ami):
        caller = await call_in(ami)
        await ami.event("UserEvent", UserEvent="CTIQueued")
        # 1003 (Dave) never answers
        since = await route(ami, caller, "1003", CTI_AGENT="1003",
                            CTI_AGENT_DEVICE="Local/1003@sim-agent", CTI_RING_TIMEOUT="2")
        rona = await ami.event("UserEvent", since=since, UserEvent="CTIRona")
        assert (rona.get("CtiAgent"), rona.get("CtiDialStatus")) == ("1003", "NOANSWER")
        await ami.event("MusicOnHoldStart", since=since, Channel=caller)
        assert await_state(ami, caller, since) == ["ringing", "waiting", "waiting"]
        # a device the simulator has no phone for (it only runs Local channels)
        since = await route(ami, caller, "1001", CTI_AGENT="1001",
                            CTI_AGENT_DEVICE="PJSIP/1001")
        rona = await ami.event("UserEvent", since=since, UserEvent="CTIRona")
        assert (rona.get("CtiAgent"), rona.get("CtiDialStatus")) == ("1001", "CHANUNAVAIL")
        await ami.event("MusicOnHoldStart", since=since, Channel=caller)


def await_state(ami: AmiClient, channel: str, since: int) -> list[str]:
    """The CTI_STATE values set on `channel` since `since`."""
    return [m.get("Value") or "" for m in ami.received[since:]
            if m.event == "VarSet" and m.get("Channel") == channel
            and m.get("Variable") == "CTI_STATE"]


# ---------------------------------------------------------------- cti-inbound

@asynccontextmanager
async def fastagi(*commands: str) -> AsyncIterator[tuple[int, list[dict[str, str]],
                                                         list[str]]]:
    """A FastAGI server that reads the agi_ block, sends `commands` one by one
    (reading each reply) and hangs up. Yields its port, the env blocks and
    the replies."""
    envs: list[dict[str, str]] = []
    replies: list[str] = []

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        env = {}
        while (line := (await reader.readline()).decode().rstrip("\n")):
            key, _, value = line.partition(": ")
            env[key] = value
        envs.append(env)
        for command in commands:
            writer.write(f"{command}\n".encode())
            replies.append((await reader.readline()).decode().rstrip("\n"))
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(session, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1]), envs, replies
    finally:
        server.close()
        await server.wait_closed()


async def test_the_service_the_ivr_sets_is_the_one_the_caller_queues_for() -> None:
    async with fastagi("SET VARIABLE CTI_SERVICE sales") as (port, envs, replies), \
            running(inbound_agi=True, agi_url=f"agi://127.0.0.1:{port}") as (_, ami):
        caller = await call_in(ami)
        queued = await ami.event("UserEvent", UserEvent="CTIQueued")
        assert (queued.get("Channel"), queued.get("CtiDid")) == (caller, DID)
        assert queued.get("CtiService") == "sales"
        await ami.event("MusicOnHoldStart", Channel=caller)
        assert replies == ["200 result=1"]
        assert envs[0]["agi_network_script"] == f"ivr?did={DID}"
        assert envs[0]["agi_callerid"] == "+33612345678"
        assert await_state(ami, caller, 0) == ["ivr", "queued", "waiting"]
        assert app_data(ami, caller, "ExecIf") == ["0?Set(CTI_SERVICE=support)"]


async def test_an_unreachable_ivr_queues_the_caller_for_the_default_service() -> None:
    async with running(inbound_agi=True, agi_url=f"agi://127.0.0.1:{free_port()}",
                       default_service="helpdesk") as (_, ami):
        caller = await call_in(ami)
        queued = await ami.event("UserEvent", UserEvent="CTIQueued")
        assert queued.get("CtiService") == "helpdesk"
        await ami.event("VarSet", Channel=caller, Variable="AGISTATUS", Value="FAILURE")
        await ami.event("MusicOnHoldStart", Channel=caller)
        assert app_data(ami, caller, "ExecIf") == ["1?Set(CTI_SERVICE=helpdesk)"]


async def test_a_call_the_ivr_finished_hangs_up_without_queueing() -> None:
    async with fastagi("SET VARIABLE CTI_STATE done") as (port, _, _replies), \
            running(inbound_agi=True, agi_url=f"agi://127.0.0.1:{port}") as (_, ami):
        caller = await call_in(ami)
        await ami.event("Hangup", Channel=caller)
        assert not [m for m in ami.received if m.get("UserEvent") == "CTIQueued"]
        assert app_data(ami, caller, "GotoIf") == ["1?done"]


async def test_without_the_ivr_a_caller_queues_for_its_own_service_or_the_default() -> None:
    async with running(default_service="billing") as (_, ami):
        await call_in(ami)
        first = await ami.event("UserEvent", UserEvent="CTIQueued")
        since = len(ami.received)
        await call_in(ami, "CTI_SERVICE=sales")
        second = await ami.event("UserEvent", since=since, UserEvent="CTIQueued")
        assert (first.get("CtiService"), second.get("CtiService")) == ("billing", "sales")


# ---------------------------------------------------------------- callers

def _callers(traffic: Traffic, seed: int, count: int = 300) -> list[tuple[str, str, bool]]:
    population = Population(traffic=traffic)
    rng = random.Random(seed)
    return [(c.number, c.did, c.vip) for c in
            (population.next_caller(rng, n) for n in range(1, count + 1))]


@given(st.integers(0, 2**32), st.booleans())
def test_vip_callers_call_from_a_vip_number_and_the_others_never_do(
    seed: int, on_vip_did: bool
) -> None:
    traffic = Traffic(rate_per_hour=100, vip_share=0.3, vip_numbers=VIPS,
                      vip_did="0140000009" if on_vip_did else None)
    callers = _callers(traffic, seed)
    assert all((number in VIPS) == vip for number, _, vip in callers)
    assert all(number.startswith("+336") and len(number) == 12 for number, _, _ in callers)
    assert {did for _, did, vip in callers if vip} <= {"0140000009" if on_vip_did else DID}


def test_standard_callers_come_from_the_pool_and_a_seed_replays_them() -> None:
    traffic = Traffic(rate_per_hour=100, vip_share=0.2, vip_numbers=VIPS,
                      standard_numbers=KNOWN[:3], dids=(DID, "0140000002"))
    callers = _callers(traffic, seed=5)
    assert {n for n, _, vip in callers if not vip} == set(KNOWN[:3])
    assert {d for _, d, _ in callers} == {DID, "0140000002"}
    assert _callers(traffic, seed=5) == callers
    assert _callers(traffic, seed=6) != callers
    random_pool = Traffic(rate_per_hour=100, vip_share=0.2, vip_numbers=VIPS)
    assert _callers(random_pool, seed=5) == _callers(random_pool, seed=5)


def test_traffic_refuses_numbers_that_are_both_vip_and_standard() -> None:
    with pytest.raises(ValueError, match=r"\+33600000001"):
        Traffic(vip_numbers=VIPS, standard_numbers=KNOWN)
    with pytest.raises(ValueError, match="vip_numbers"):
        Traffic(vip_share=0.5, vip_numbers=())


async def test_generated_vip_callers_are_marked_and_call_from_a_vip_number() -> None:
    population = demo_population(5, seed=2, calls_per_hour=36000, vip_share=0.5,
                                 vip_numbers=VIPS, standard_numbers=KNOWN)
    async with running(seed=2, population=population) as (_, ami):
        def queued() -> list[AmiMessage]:
            return [m for m in ami.received if m.get("UserEvent") == "CTIQueued"]

        await ami.wait_for(lambda _: len(queued()) >= 6)
        vips = {m.get("Channel") for m in ami.received
                if m.event == "VarSet" and m.get("Variable") == "CTI_VIP"}
        for message in queued():
            number = message.get("CallerIDNum")
            if message.get("Channel") in vips:
                assert number in VIPS
            else:
                assert number in KNOWN[:3]
        assert any(m.get("Channel") in vips for m in queued())


# ---------------------------------------------------------------- demo floor

def test_demo_floor_numbers_phones_from_1001_with_seeded_ring_times() -> None:
    floor = demo_population(40, seed=9, calls_per_hour=600, vip_share=0.1, vip_numbers=VIPS,
                            standard_numbers=KNOWN, talk_s=60.0)
    numbers = [f"{1000 + i}" for i in range(1, 41)]
    assert [n for n in floor.agents if n.startswith("1")] == numbers
    assert floor.hints == tuple(numbers)
    assert "2001" in floor.agents  # the supervisor's phone stays
    phones = [floor.agents[n] for n in numbers]
    assert all(1.0 <= p.ring_s <= 4.0 for p in phones)
    assert len({p.ring_s for p in phones}) > 5
    assert all((p.talk_s, p.talk_spread_s) == (60.0, 20.0) for p in phones)
    assert all((p.no_answer_odds, p.busy_odds) == (0.03, 0.01) for p in phones)
    assert floor.traffic.standard_numbers == KNOWN[:3]  # the VIP taken out
    again = demo_population(40, seed=9, calls_per_hour=600, vip_share=0.1, vip_numbers=VIPS)
    other = demo_population(40, seed=10, calls_per_hour=600, vip_share=0.1, vip_numbers=VIPS)
    assert [p.ring_s for p in again.agents.values()] == [p.ring_s for p in floor.agents.values()]
    assert [p.ring_s for p in other.agents.values()] != [p.ring_s for p in floor.agents.values()]


def test_demo_phones_talk_around_the_mean_and_sometimes_do_not_answer() -> None:
    phone = demo_population(1, seed=0, calls_per_hour=0, vip_share=0,
                            vip_numbers=()).agents["1001"]
    rng = random.Random(4)
    outcomes = [phone.outcome(rng) for _ in range(4000)]
    talks = [talk for pickup, talk in outcomes if pickup is Pickup.ANSWER]
    assert min(talks) >= 60.0 and max(talks) <= 120.0
    assert 85.0 <= sum(talks) / len(talks) <= 95.0
    never = sum(pickup is Pickup.NEVER for pickup, _ in outcomes) / len(outcomes)
    busy = sum(pickup is Pickup.BUSY for pickup, _ in outcomes) / len(outcomes)
    assert 0.015 <= never <= 0.045 and 0.003 <= busy <= 0.02


def test_cli_builds_a_demo_floor_with_the_ivr() -> None:
    args = parser().parse_args([
        "--agents", "25", "--calls-per-hour", "900", "--vip-share", "0.1",
        "--vip-number", VIPS[0], "--standard-number", KNOWN[0], "--standard-number", KNOWN[1],
        "--talk", "45", "--inbound-agi", "--default-service", "sales", "--seed", "3"])
    settings = settings_from(args)
    assert (settings.inbound_agi, settings.default_service) == (True, "sales")
    population = settings.population
    assert len(population.hints) == 25 and population.agents["1025"].talk_s == 45.0
    traffic = population.traffic
    assert (traffic.rate_per_hour, traffic.vip_numbers) == (900.0, VIPS[:1])
    assert (traffic.standard_numbers, traffic.patience_s) == (KNOWN[:2], (40.0, 240.0))
    plain = settings_from(parser().parse_args([]))
    assert (plain.inbound_agi, plain.default_service) == (False, "support")
    assert plain.population.traffic.patience_s == (30.0, 180.0)
    assert "1007" in plain.population.agents  # the recordings' phones


# ---------------------------------------------------------------- load

class Router:
    """The least the server does, over AMI: each queued caller goes to the
    free agent that has waited longest; a RONA or a hangup frees the agent."""

    def __init__(self, ami: AmiClient, agents: list[str]) -> None:
        self.ami = ami
        self.free = deque(agents)
        self.waiting: deque[str] = deque()
        self.talking: dict[str, str] = {}
        self.seen = 0
        self.queued = 0
        self.answered = 0
        self.ronas = 0

    def step(self) -> None:
        for message in self.ami.received[self.seen:]:
            self.take(message)
        self.seen = len(self.ami.received)
        while self.free and self.waiting:
            caller, agent = self.waiting.popleft(), self.free.popleft()
            self.talking[caller] = agent
            for name, value in (("CTI_AGENT", agent), ("CTI_RING_TIMEOUT", "8"),
                                ("CTI_AGENT_DEVICE", f"Local/{agent}@sim-agent")):
                self.ami.send("Setvar", ("Channel", caller), ("Variable", name),
                              ("Value", value))
            self.ami.send("Redirect", ("Channel", caller), ("Context", "cti-connect"),
                          ("Exten", agent), ("Priority", "1"))

    def take(self, message: AmiMessage) -> None:
        channel = message.get("Channel") or ""
        kind = message.get("UserEvent")
        if kind == "CTIQueued":
            self.queued += 1
            self.waiting.append(channel)
        elif kind == "CTIRona":
            self.ronas += 1
            self.free.append(self.talking.pop(channel))
            self.waiting.append(channel)
        elif message.event == "DialEnd" and message.get("DialStatus") == "ANSWER" and (
                channel in self.talking):
            self.answered += 1
        elif message.event == "Hangup":
            if channel in self.talking:
                self.free.append(self.talking.pop(channel))
            elif channel in self.waiting:
                self.waiting.remove(channel)


async def run_floor(agents: int, calls_per_hour: float, speed: float,
                    seconds: float) -> tuple[Router, float, int]:
    """A routed floor for `seconds` (real); returns the router, the worst
    event-loop lag seen (s) and the number of generated callers."""
    population = demo_population(agents, seed=1, calls_per_hour=calls_per_hour,
                                 vip_share=0.1, vip_numbers=VIPS, talk_s=20.0,
                                 patience_s=(5.0, 60.0))
    loop = asyncio.get_running_loop()
    worst = 0.0
    async with running(speed=speed, seed=1, population=population) as (sim, ami):
        router = Router(ami, list(population.hints))
        end = loop.time() + seconds
        while loop.time() < end:
            before = loop.time()
            await asyncio.sleep(0.01)
            worst = max(worst, loop.time() - before - 0.01)
            router.step()
        callers = sim.callers
        # The callers who arrived in the last instant reach the dialplan
        # within half a second (a pause of the test process, a garbage
        # collection, must not count them as lost).
        grace = loop.time() + 0.5
        while loop.time() < grace and router.queued < callers:
            await asyncio.sleep(0.01)
            router.step()
        assert not sim.runtime.failures
    return router, worst, callers


async def test_two_hundred_agents_at_speed_ten_keep_up_with_a_high_call_rate() -> None:
    # 20 000 calls an hour at speed 10: about 55 arrivals a second (real)
    router, worst_lag, callers = await run_floor(200, 20_000, speed=10.0, seconds=3.0)
    expected = 20_000 / 3600 * 10 * 3.0
    assert callers >= 0.75 * expected  # the arrivals kept to their timetable
    assert router.queued >= 0.9 * callers  # ... and were in the dialplan at once
    assert router.answered >= 0.5 * router.queued
    assert worst_lag < 0.5
