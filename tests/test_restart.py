"""Asterisk restarting under the routing shell (`core restart now`, as in
recording 11): the calls of the old process end without a word, the link
reconnects and resyncs, the tracker ends those calls and the switchboard
releases their agents; the next caller is routed as usual."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import pytest

from cti.app import Server
from cti.center import center_from
from cti.config import load_settings
from cti.pbx.link import LinkState
from cti.routing import AgentState
from cti.sim.server import start_sim
from cti.store.connection import open_store
from cti.switchboard import CallFinished, TaskOffered
from tests.ami_client import AmiClient

pytestmark = pytest.mark.timeout(60)


async def eventually(predicate: Callable[[], bool], within: float = 15.0) -> None:
    async with asyncio.timeout(within):
        while not predicate():
            await asyncio.sleep(0.05)


async def _call(ami: AmiClient) -> None:
    reply = await ami.action(
        "Originate", ("Channel", "Local/300@sim-caller"), ("Context", "cti-inbound"),
        ("Exten", "0140000001"), ("Priority", "1"),
        ("CallerID", '"Alice" <+33612345678>'), ("Async", "true"))
    assert reply.response == "Success"


async def _logged_in(port: int) -> AmiClient:
    """A client once the restarted PBX listens again."""
    async with asyncio.timeout(10):
        while True:
            try:
                ami = await AmiClient.connect(port)
            except ConnectionRefusedError:
                await asyncio.sleep(0.05)
                continue
            try:
                await ami.login(secret="s3cret")
            except ConnectionError:  # accepted and reset by the dying process
                with contextlib.suppress(ConnectionError):
                    await ami.close()
                await asyncio.sleep(0.05)
                continue
            return ami


async def test_calls_of_a_restarted_asterisk_end_and_the_next_caller_is_routed() -> None:
    sim = await start_sim(port=0, secret="s3cret")
    settings = load_settings(None, {"CTI_AMI_PORT": str(sim.port), "CTI_AMI_SECRET": "s3cret",
                                    "CTI_HTTP_PORT": "1", "CTI_LOG_LEVEL": "warning"})
    center = center_from({
        "services": {"support": {"skills": {"support": 1}, "numbers": ["0140000001"],
                                 "wrap_up_seconds": 1, "ring_timeout_seconds": 20}},
        # Frank (1005) talks 120 s: the second caller waits
        "agents": [{"id": "1005", "device": "Local/1005@sim-agent", "login_at_start": True,
                    "name": "Frank", "skills": {"support": 5}}],
    })
    store = await open_store(None)
    server = Server(settings, center, store)
    offers: list[TaskOffered] = []
    finished: list[CallFinished] = []
    server.switchboard.listeners.append(
        lambda e: offers.append(e) if isinstance(e, TaskOffered) else None)
    server.switchboard.listeners.append(
        lambda e: finished.append(e) if isinstance(e, CallFinished) else None)
    server.switchboard.start()
    await server.link.start()
    ami = await AmiClient.connect(sim.port)
    try:
        await ami.login(secret="s3cret")
        await _call(ami)
        await eventually(lambda: server.switchboard.agents["1005"].state is AgentState.ON_CALL)
        await _call(ami)
        await eventually(lambda: bool(server.switchboard.index.waiting()))
        before = set(server.tracker.calls)
        assert len(before) == 2
        received = server.link.events_received

        ami.send("Command", ("Command", "core restart now"))
        await asyncio.wait_for(ami.closed.wait(), 5)
        await ami.close()
        ami = await _logged_in(sim.port)

        await eventually(lambda: server.link.reconnects == 1
                         and server.link.state is LinkState.CONNECTED)
        await eventually(lambda: {f.event.record.call for f in finished} == before)
        assert not before & set(server.tracker.calls)
        assert not server.tracker.channels
        assert not server.switchboard.index.waiting()
        assert server.switchboard.agents["1005"].state is not AgentState.ON_CALL
        assert server.link.events_received > received  # FullyBooted, the resync lists

        await _call(ami)
        await eventually(lambda: len(offers) == 2)
        assert offers[1].call not in before
        assert offers[1].assignment.agent_id == "1005"
        await eventually(lambda: server.switchboard.agents["1005"].state is AgentState.ON_CALL)
    finally:
        await ami.close()
        await server.switchboard.drain()
        await server.link.close()
        await sim.close()
        await store.close()
