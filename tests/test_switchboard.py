"""The routing shell in process, against the simulated PBX: agent requests
during an offer or a call (logout while ringing re-routes the caller,
a pause asked for during a call applies when it ends), live skill changes,
and the Redis reservation that keeps two nodes off one agent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from cti.app import Server
from cti.center import center_from
from cti.config import load_settings
from cti.routing import AgentState
from cti.sim.server import start_sim
from cti.store.connection import open_store
from cti.store.reservations import Reservations
from cti.switchboard import TaskOffered
from tests.ami_client import AmiClient

pytestmark = pytest.mark.timeout(60)


async def eventually(predicate: Callable[[], bool], within: float = 15.0) -> None:
    async with asyncio.timeout(within):
        while not predicate():
            await asyncio.sleep(0.05)


class Floor:
    def __init__(self, server: Server, ami: AmiClient) -> None:
        self.server = server
        self.ami = ami
        self.offers: list[TaskOffered] = []
        server.switchboard.listeners.append(
            lambda e: self.offers.append(e) if isinstance(e, TaskOffered) else None)

    def state(self, agent: str) -> AgentState:
        return self.server.switchboard.agents[agent].state

    async def call(self, patience: int = 60) -> None:
        reply = await self.ami.action(
            "Originate", ("Channel", f"Local/{patience}@sim-caller"), ("Context", "cti-inbound"),
            ("Exten", "0140000001"), ("Priority", "1"),
            ("CallerID", '"Alice" <+33612345678>'), ("Async", "true"))
        assert reply.response == "Success"


@pytest.fixture
async def floor_of() -> AsyncIterator[Callable[..., Any]]:
    started: list[tuple[Server, Any, Any, AmiClient]] = []

    async def make(agents: list[dict[str, Any]], **service: Any) -> Floor:
        sim = await start_sim(port=0, secret="s3cret")
        settings = load_settings(None, {"CTI_AMI_PORT": str(sim.port), "CTI_AMI_SECRET": "s3cret",
                                        "CTI_HTTP_PORT": "1", "CTI_LOG_LEVEL": "warning"})
        center = center_from({
            "services": {"support": {"skills": {"support": 1}, "numbers": ["0140000001"],
                                     "wrap_up_seconds": 1, "ring_timeout_seconds": 20,
                                     **service}},
            "agents": [{"device": f"Local/{a['id']}@sim-agent", "login_at_start": True,
                        "name": a["id"], **a} for a in agents],
        })
        store = await open_store(None)
        server = Server(settings, center, store)
        server.switchboard.start()
        await server.link.start()
        ami = await AmiClient.connect(sim.port)
        await ami.login(secret="s3cret")
        started.append((server, sim, store, ami))
        return Floor(server, ami)

    yield make
    for server, sim, store, ami in started:
        await ami.close()
        await server.switchboard.drain()
        await server.link.close()
        await sim.close()
        await store.close()


async def test_logout_while_ringing_sends_the_caller_to_the_next_agent(
        floor_of: Callable[..., Any]) -> None:
    # Dave (1003) never answers and ranks first; he logs out while ringing.
    floor: Floor = await floor_of([{"id": "1003", "skills": {"support": 9}},
                                   {"id": "1001", "skills": {"support": 2}}])
    await floor.call()
    await eventually(lambda: floor.state("1003") is AgentState.RINGING)
    floor.server.switchboard.logout("1003")
    assert floor.state("1003") is AgentState.LOGGED_OUT
    await eventually(lambda: floor.state("1001") is AgentState.ON_CALL)
    assert [o.assignment.agent_id for o in floor.offers] == ["1003", "1001"]
    assert floor.offers[0].call == floor.offers[1].call


async def test_a_pause_asked_during_a_call_applies_when_it_ends(
        floor_of: Callable[..., Any]) -> None:
    floor: Floor = await floor_of([{"id": "1007", "skills": {"support": 5}}])  # talks 5 s
    await floor.call()
    await eventually(lambda: floor.state("1007") is AgentState.ON_CALL)
    floor.server.switchboard.pause("1007", "lunch")
    assert floor.state("1007") is AgentState.ON_CALL
    await eventually(lambda: floor.state("1007") is AgentState.PAUSED)
    assert floor.server.switchboard.agents["1007"].pause_reason == "lunch"
    # Paused: a new caller waits.
    await floor.call()
    await asyncio.sleep(1.0)
    assert len(floor.offers) == 1
    floor.server.switchboard.ready("1007")
    await eventually(lambda: len(floor.offers) == 2)


async def test_a_new_skill_takes_effect_at_once(floor_of: Callable[..., Any]) -> None:
    floor: Floor = await floor_of([{"id": "1001", "skills": {"sales": 5}}])
    await floor.call()
    await eventually(lambda: bool(floor.server.switchboard.index.waiting()))
    await asyncio.sleep(0.3)
    assert floor.offers == []
    floor.server.switchboard.set_skills("1001", {"support": 4})
    await eventually(lambda: len(floor.offers) == 1)


async def test_an_agent_reserved_by_another_node_is_not_offered(
        floor_of: Callable[..., Any]) -> None:
    floor: Floor = await floor_of([{"id": "1001", "skills": {"support": 5}},
                                   {"id": "1002", "skills": {"support": 3}}])
    # Another node holds Bob (1001) for one of its tasks.
    other = Reservations(floor.server.store.redis)
    assert await other.take("1001", "task-on-node-2", 30.0) is None
    await floor.call()
    await eventually(lambda: floor.state("1002") is AgentState.ON_CALL)
    assert [o.assignment.agent_id for o in floor.offers] == ["1001", "1002"]
    assert await other.holder("1001") == "task-on-node-2"


async def test_reservations_are_exclusive_and_only_the_holder_gives_back() -> None:
    store = await open_store(None)
    try:
        one, two = Reservations(store.redis), Reservations(store.redis)
        assert await one.take("a", "t1", 5.0) is None
        assert await one.take("a", "t1", 5.0) is None          # same task: idempotent
        taken = await two.take("a", "t2", 5.0)
        assert taken is not None and taken.holder == "t1"
        assert not await two.give_back("a", "t2")
        assert await one.give_back("a", "t1")
        assert await two.take("a", "t2", 5.0) is None
    finally:
        await store.close()


async def test_observers_hear_each_decision_after_it_in_order_and_a_failing_one_is_contained(
        floor_of: Callable[..., Any]) -> None:
    # Listeners run inside the decision (the desk's pop leaves there); the
    # observers (wallboard, counters, log lines) right after it, in order.
    floor: Floor = await floor_of([{"id": "1001", "skills": {"support": 2}}])
    board = floor.server.switchboard
    timeline: list[str] = []

    def listener(event: object) -> None:
        timeline.append(f"listener {type(event).__name__}")

    def observer(event: object) -> None:
        timeline.append(f"observer {type(event).__name__}")

    def failing(event: object) -> None:
        raise RuntimeError("a broken observer")

    board.listeners.append(listener)
    board.observers.extend([failing, observer])
    board.pause("1001", "lunch")
    # Told after the decision, not inside it.
    assert timeline == ["listener AgentChanged"]
    await asyncio.sleep(0)
    assert timeline == ["listener AgentChanged", "observer AgentChanged"]
    timeline.clear()
    board.ready("1001")
    await floor.call()
    await eventually(lambda: floor.state("1001") is AgentState.RINGING)
    heard = [line.split(" ", 1) for line in timeline]
    by_listeners = [kind for who, kind in heard if who == "listener"]
    by_observers = [kind for who, kind in heard if who == "observer"]
    assert by_observers == by_listeners  # the same events, in the same order
    assert by_listeners[:4] == ["AgentChanged", "TaskQueued", "TaskOffered", "AgentChanged"]
    # Each decision's listeners are done before its observers hear of it.
    first_offer = timeline.index("listener TaskOffered")
    assert timeline.index("observer TaskQueued") > first_offer
    # Drained: nothing is left untold.
    board.pause("1001", "lunch")
    await board.drain()
    heard = [line.split(" ", 1) for line in timeline]
    assert [kind for who, kind in heard if who == "observer"] \
        == [kind for who, kind in heard if who == "listener"]
