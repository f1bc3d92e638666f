"""The shipped flows (dialplans/ivr) end to end: the server as `cti serve`
builds it (the IVR feature listening for FastAGI), the simulated PBX
running [cti-inbound] of dialplans/cti.conf (AGI to the server, then
queueing with CTI_SERVICE), callers keying digits, a real redis-server.

The server's clock is shifted to a known weekday morning (or Sunday
evening) so business hours do not depend on when the suite runs.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from cti.app import Server
from cti.center import center_from
from cti.config import load_settings
from cti.customers.directory import RedisDirectory
from cti.customers.models import Customer
from cti.customers.pins import hash_pin
from cti.customers.store import CustomerStore
from cti.ivr.feature import outcome_key
from cti.sim import start_sim
from cti.store.connection import open_store
from cti.switchboard import SwitchboardEvent, TaskQueued
from tests.ami_client import AmiClient
from tests.servers import free_port, redis_server

pytestmark = pytest.mark.timeout(60)

SAMPLES = Path(__file__).parent.parent / "dialplans" / "ivr"
PARIS = ZoneInfo("Europe/Paris")
OPEN = datetime(2026, 3, 10, 10, 0, tzinfo=PARIS)  # a Tuesday morning
CLOSED = datetime(2026, 3, 15, 20, 0, tzinfo=PARIS)  # a Sunday evening
SPEED = 3.0
SECRET = "e2e-secret"
MAIN_DID = "0140000010"
BALANCE_DID = "0140000020"

VERA = Customer(id="c-vera", name="Vera", tier="vip", phones=["+33611111111"],
                account="900001", pin_hash=hash_pin("9999"))
ALICE = Customer(id="c-alice", name="Alice", phones=["+33622222222"], account="123456",
                 balance=Decimal("1234.56"), pin_hash=hash_pin("4321"))


@dataclass
class Floor:
    server: Server
    ami: AmiClient
    queued: list[TaskQueued]

    async def call(self, did: str, number: str, *, digits: str = "",
                   patience: int = 60) -> str:
        """A caller on `did` who keys `digits` 3 s after answer (`w`/`W`
        pause); returns the uniqueid of its ;1, the IVR's channel."""
        exten = f"{patience}-{digits}" if digits else str(patience)
        since = len(self.ami.received)
        action_id = self.ami.send(
            "Originate", ("Channel", f"Local/{exten}@sim-caller"), ("Context", "cti-inbound"),
            ("Exten", did), ("CallerID", f'"Caller" <{number}>'), ("Async", "true"))
        response = await self.ami.event("OriginateResponse", since=since, ActionID=action_id)
        assert response.get("Response") == "Success", response
        return response.get("Uniqueid") or ""

    async def pop(self, call: str, within: float = 20.0) -> dict[str, object]:
        """The IVR outcome the screen pop reads, once written."""
        redis = self.server.store.redis
        deadline = time.monotonic() + within
        while (raw := await redis.get(outcome_key(call))) is None:
            assert time.monotonic() < deadline, f"no IVR outcome for {call}"
            await asyncio.sleep(0.05)
        ttl = await redis.ttl(outcome_key(call))
        assert 86_000 < ttl <= 86_400
        result: dict[str, object] = json.loads(raw)
        return result

    async def task(self, call: str, within: float = 10.0) -> TaskQueued:
        deadline = time.monotonic() + within
        while not (found := [q for q in self.queued if q.call == call]):
            assert time.monotonic() < deadline, f"call {call} was not queued"
            await asyncio.sleep(0.05)
        return found[0]

    def commands(self, call: str) -> list[str]:
        return [m.get("Command") or "" for m in self.ami.received
                if m.get("Event") == "AGIExecStart" and m.get("Uniqueid") == call]


def shifted(to: datetime) -> Callable[[], float]:
    offset = to.timestamp() - time.time()
    return lambda: time.time() + offset


@asynccontextmanager
async def floor(tmp_path: Path, now: datetime = OPEN) -> AsyncIterator[Floor]:
    agi_port = free_port()
    with redis_server(tmp_path) as url:
        store = await open_store(url)
        await CustomerStore(store.redis).put_many([VERA, ALICE])
        sim = await start_sim(None, port=0, speed=SPEED, secret=SECRET, inbound_agi=True,
                              agi_url=f"agi://127.0.0.1:{agi_port}", login_failure_delay=0.05)
        settings = load_settings(None, {
            "CTI_AMI_PORT": str(sim.port), "CTI_AMI_SECRET": SECRET,
            "CTI_HTTP_PORT": str(free_port()), "CTI_AGI_PORT": str(agi_port),
            "CTI_CENTER_FLOWS": str(SAMPLES)})
        center = center_from({
            "services": {name: {"skills": {name: 1}}
                         for name in ("support", "sales", "accounts", "premium")},
            "agents": [{"id": "1001", "name": "Bob", "device": "Local/1001@sim-agent",
                        "skills": {"support": 1}}],
            "default_service": "support",
        }, "e2e center")
        # No VIP look-up of the router's own: priority comes from the IVR.
        server = Server(settings, center, store, clock=shifted(now))
        queued: list[TaskQueued] = []

        def listen(event: SwitchboardEvent) -> None:
            if isinstance(event, TaskQueued):
                queued.append(event)

        server.switchboard.listeners.append(listen)
        ami = await AmiClient.connect(sim.port)
        try:
            await server.start()
            await ami.login("on", secret=SECRET)
            deadline = time.monotonic() + 10
            while server.link.state.value != "connected":
                assert time.monotonic() < deadline, "the server did not connect to the sim"
                await asyncio.sleep(0.05)
            yield Floor(server, ami, queued)
        finally:
            await ami.close()
            await server.stop()
            await sim.close()
            await store.close()


async def test_a_menu_choice_lands_in_the_service_the_server_routes_on(tmp_path: Path) -> None:
    async with floor(tmp_path) as f:
        call = await f.call(MAIN_DID, "+33699999999", digits="1")
        queued = await f.task(call)
        assert (queued.info.task.service, queued.info.vip) == ("sales", False)
        assert await f.pop(call) == {
            "flow": "main", "choices": [{"step": "main_menu", "digit": "1"}],
            "customer_id": None, "verified": False, "service": "sales",
            "priority": "standard", "language": "en", "ended": "handoff"}
        event = await f.ami.event("UserEvent", UserEvent="CTIQueued", Uniqueid=call)
        assert event.get("CtiService") == "sales"
        assert f.server.tracker.calls[call].variables["CTI_SERVICE"] == "sales"
        assert "GET DATA cti/main-menu 5000 1" in f.commands(call)


async def test_a_vip_recognised_by_number_goes_to_the_priority_service(tmp_path: Path) -> None:
    async with floor(tmp_path) as f:
        call = await f.call(MAIN_DID, "+33611111111")
        queued = await f.task(call)
        assert (queued.info.task.service, queued.info.task.priority) == ("premium", "vip")
        pop = await f.pop(call)
        assert (pop["customer_id"], pop["priority"], pop["choices"]) == ("c-vera", "vip", [])
        assert not [c for c in f.commands(call) if c.startswith("GET DATA")]


async def test_the_right_pin_says_the_balance_and_the_caller_leaves_self_served(
        tmp_path: Path) -> None:
    async with floor(tmp_path) as f:
        call = await f.call(BALANCE_DID, "+33699999999", digits="123456#4321#")
        pop = await f.pop(call)
        assert (pop["flow"], pop["customer_id"], pop["verified"]) == ("balance", "c-alice", True)
        assert pop["ended"] == "hangup"
        commands = f.commands(call)
        assert [c for c in commands if c.startswith("SAY NUMBER")] == [
            'SAY NUMBER 1234 ""', 'SAY NUMBER 56 ""']
        assert "4321" not in " ".join(c for c in commands if not c.startswith("GET DATA"))
        await f.ami.event("Hangup", Uniqueid=call)
        assert not [q for q in f.queued if q.call == call]


async def test_three_wrong_pins_lock_self_service_and_go_to_an_agent(tmp_path: Path) -> None:
    async with floor(tmp_path) as f:
        # Each retry follows the wrong-PIN prompt, which keys cannot cut.
        call = await f.call(BALANCE_DID, "+33699999999",
                            digits="123456#1111#WW1111#WW1111#")
        queued = await f.task(call, within=30.0)
        assert queued.info.task.service == "accounts"
        pop = await f.pop(call)
        assert (pop["customer_id"], pop["verified"], pop["ended"]) == ("c-alice", False,
                                                                        "handoff")
        assert not [c for c in f.commands(call) if c.startswith("SAY NUMBER")]
        directory = RedisDirectory(
            f.server.customers, clock=lambda: datetime.fromtimestamp(f.server.clock(), UTC))
        lock = await directory.self_service_lock("c-alice")
        assert lock is not None and "3 wrong PINs" in lock.reason


async def test_a_caller_hanging_up_mid_menu_ends_the_flow_cleanly(tmp_path: Path) -> None:
    async with floor(tmp_path) as f:
        call = await f.call(MAIN_DID, "+33699999999", patience=3)
        pop = await f.pop(call)
        assert (pop["ended"], pop["service"], pop["choices"]) == ("caller_hung_up", None, [])
        await f.ami.event("Hangup", Uniqueid=call)
        assert not [q for q in f.queued if q.call == call]
        deadline = time.monotonic() + 5
        while f.server.features and _ivr_active(f.server):
            assert time.monotonic() < deadline, "the FastAGI session did not end"
            await asyncio.sleep(0.05)


async def test_closed_hours_say_goodbye_without_queueing(tmp_path: Path) -> None:
    async with floor(tmp_path, CLOSED) as f:
        call = await f.call(MAIN_DID, "+33699999999")
        pop = await f.pop(call, within=30.0)
        assert (pop["ended"], pop["service"]) == ("hangup", None)
        commands = f.commands(call)
        assert commands.count("GET DATA cti/closed-offer-callback 5000 1") == 2
        assert 'STREAM FILE cti/closed-goodbye ""' in commands
        await f.ami.event("Hangup", Uniqueid=call)
        assert not [q for q in f.queued if q.call == call]


def _ivr_active(server: Server) -> int:
    from cti.ivr.feature import IvrFeature

    return sum(f.agi.active for f in server.features if isinstance(f, IvrFeature))
