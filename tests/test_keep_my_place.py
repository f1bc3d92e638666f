"""Keep my place: a caller waiting in [cti-wait] presses 1, the server's
callback offer (FastAGI `callback-offer`) confirms their number, stores a
callback with the task's ORIGINAL enqueue time and withdraws the task; the
dispatched callback then ranks ahead of callers who arrived later. If the
server cannot be reached the caller goes back to the music with their
place. An IVR flow's `callback` step keeps the place the same way.

The server as `cti serve` builds it, the simulated PBX running
dialplans/cti.conf's contexts (its callers key digits while they wait), a
real redis-server; the dialogue's branches with a scripted Asterisk
(tests/agi_caller.py) against the same server.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from cti.app import Server
from cti.callbacks import Callback, CallbackFeature
from cti.center import center_from
from cti.config import load_settings
from cti.pbx.link import LinkState
from cti.routing import Agent
from cti.routing.router import assign
from cti.sim import start_sim
from cti.sim.dialplan import Dialplan, Step
from cti.sim.population import Population
from cti.store.connection import open_store
from cti.switchboard import SwitchboardEvent, TaskOffered, TaskQueued
from tests.agi_caller import FakeAsterisk
from tests.ami_client import AmiClient
from tests.servers import free_port, redis_server

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).parent.parent
SPEED = 3.0
SECRET = "kmp-secret"
DID = "0140000001"
# Keys of a waiting caller (simulated seconds): 1 at ~7 s, in the music;
# 1 again at ~19 s, once their number was read back (1 s + 10 digits of
# 0.76 s) and the "1 to confirm" prompt plays (a 7 s window from ~16 s).
PRESS_1_THEN_CONFIRM = "WWWW1" + "W" * 11 + "1"


@dataclass
class Floor:
    server: Server
    ami: AmiClient
    agi_port: int
    queued: list[TaskQueued]
    offers: list[TaskOffered]

    async def call(self, number: str, *, digits: str = "", patience: int = 120) -> str:
        """A caller on DID who keys `digits` 3 s after answer; the call id."""
        exten = f"{patience}-{digits}" if digits else str(patience)
        since = len(self.ami.received)
        action_id = self.ami.send(
            "Originate", ("Channel", f"Local/{exten}@sim-caller"), ("Context", "cti-inbound"),
            ("Exten", DID), ("CallerID", f'"Caller" <{number}>'), ("Async", "true"))
        response = await self.ami.event("OriginateResponse", since=since, ActionID=action_id)
        assert response.get("Response") == "Success", response
        return response.get("Uniqueid") or ""

    async def task(self, call: str, within: float = 15.0) -> TaskQueued:
        await eventually(lambda: any(q.call == call for q in self.queued), within)
        return next(q for q in self.queued if q.call == call)

    def waiting(self) -> list[str]:
        return [task.id for task in self.server.switchboard.index.waiting()]

    async def callbacks(self) -> list[Callback]:
        feature = next(f for f in self.server.features if isinstance(f, CallbackFeature))
        found = []
        async for key in self.server.store.redis.scan_iter("cti:cb:rec:*"):
            callback = await feature.store.get(str(key).rsplit(":", 1)[-1])
            assert callback is not None
            found.append(callback)
        return found

    def commands(self, call: str) -> list[str]:
        return [m.get("Command") or "" for m in self.ami.received
                if m.get("Event") == "AGIExecStart" and m.get("Uniqueid") == call]


async def eventually(predicate: Callable[[], bool], within: float = 15.0) -> None:
    async with asyncio.timeout(within):
        while not predicate():
            await asyncio.sleep(0.05)


@asynccontextmanager
async def floor(tmp_path: Path, *, reachable: bool = True, flows: dict[str, str] | None = None,
                clock: Callable[[], float] = time.time,
                service: dict[str, Any] | None = None,
                vip: frozenset[str] = frozenset()) -> AsyncIterator[Floor]:
    """`vip`: the callers' numbers the directory says are VIPs."""
    agi_port = free_port()
    # Out of reach: the PBX's AGI() goes to a port nobody listens on.
    sim_agi = agi_port if reachable else free_port()
    directory = tmp_path / "flows"
    directory.mkdir()
    for name, text in (flows or {}).items():
        (directory / f"{name}.yaml").write_text(text)
    with redis_server(tmp_path) as url:
        store = await open_store(url)
        sim = await start_sim(None, port=0, speed=SPEED, secret=SECRET, inbound_agi=True,
                              agi_url=f"agi://127.0.0.1:{sim_agi}", login_failure_delay=0.05)
        settings = load_settings(None, {
            "CTI_AMI_PORT": str(sim.port), "CTI_AMI_SECRET": SECRET,
            "CTI_HTTP_PORT": str(free_port()), "CTI_AGI_PORT": str(agi_port),
            "CTI_CENTER_FLOWS": str(directory), "CTI_LOG_LEVEL": "warning",
            "CTI_CALLBACKS_POLL_SECONDS": "0.2"})
        center = center_from({
            "services": {"support": {"skills": {"support": 1}, "numbers": [DID],
                                     "wrap_up_seconds": 1, **(service or {})}},
            "agents": [{"id": "1001", "name": "Bob", "device": "Local/1001@sim-agent",
                        "skills": {"support": 1}}],
        }, "keep-my-place center")
        async def lookup(number: str) -> tuple[str | None, bool]:
            return None, number in vip

        server = Server(settings, center, store, clock=clock, vip_lookup=lookup)
        queued: list[TaskQueued] = []
        offers: list[TaskOffered] = []

        def listen(event: SwitchboardEvent) -> None:
            if isinstance(event, TaskQueued):
                queued.append(event)
            elif isinstance(event, TaskOffered):
                offers.append(event)

        server.switchboard.listeners.append(listen)
        ami = await AmiClient.connect(sim.port)
        try:
            await server.start()
            await ami.login("on", secret=SECRET)
            await eventually(lambda: server.link.state is LinkState.CONNECTED, 10)
            yield Floor(server, ami, agi_port, queued, offers)
        finally:
            await ami.close()
            await server.stop()
            await sim.close()
            await store.close()


# -- the dialplan -------------------------------------------------------------------

_EXTEN = re.compile(r"^exten => (?P<exten>[^,]+),(?P<priority>\d+),(?P<app>.*)$")
_SAME = re.compile(r"^\s+same => n(?:\((?P<label>\w+)\))?,(?P<app>.*)$")
_APP = re.compile(r"^(?P<name>\w+)(?:\((?P<data>.*)\))?$")


def read_dialplan(text: str) -> dict[str, dict[str, list[Step]]]:
    """extensions.conf syntax as cti.conf writes it: context -> exten ->
    priorities in order."""
    contexts: dict[str, dict[str, list[Step]]] = {}
    context: dict[str, list[Step]] = {}
    steps: list[Step] = []
    for raw in text.splitlines():
        line = raw.split(";", 1)[0].rstrip()
        if not line:
            continue
        if line.startswith("["):
            context = contexts.setdefault(line.strip("[]"), {})
            continue
        exten, same = _EXTEN.match(line), _SAME.match(line)
        match = exten or same
        assert match is not None, f"not dialplan: {raw!r}"
        app = _APP.match(match.group("app"))
        assert app is not None, raw
        step = Step(app.group("name"), app.group("data") or "",
                    label=(same.group("label") or "") if same else "")
        if exten is not None:
            assert exten.group("priority") == "1", raw
            steps = context.setdefault(exten.group("exten"), [])
        steps.append(step)
    return contexts


def labels(steps: list[Step]) -> set[str]:
    return {step.label for step in steps if step.label}


def test_cti_wait_offers_1_during_the_music_and_every_way_out_goes_back_to_waiting() -> None:
    dialplan = read_dialplan((ROOT / "dialplans" / "cti.conf").read_text())
    wait, offer = dialplan["cti-wait"], dialplan["cti-wait-offer"]
    assert set(wait) == {"s", "1", "t", "i"}
    hold = next(step for step in wait["s"] if step.app == "WaitExten")
    assert hold.data == "${CTI_WAIT_ANNOUNCE},m(default)"
    assert Step("Background", "cti/wait-callback-offer") in wait["s"]
    # the overall limit still leads to the overflow context
    assert wait["s"][-1] == Step("Goto", "cti-wait-timeout,s,1")
    assert "cti-wait-timeout" in dialplan
    # 1 -> the offer; the announcement's round and any other key -> back to `wait`
    assert wait["1"] == [Step("Goto", "cti-wait-offer,s,1")]
    assert wait["t"] == wait["i"] == [Step("Goto", "s,wait")]
    assert {"wait", "hold", "timeout"} <= labels(wait["s"])
    # the offer: the server over FastAGI; only CTI_STATE=done ends the call,
    # anything else (AGISTATUS FAILURE included) goes back to waiting
    apps = [step.app for step in offer["s"]]
    assert apps == ["NoOp", "AGI", "GotoIf", "Goto", "Hangup"]
    assert offer["s"][1].data == "agi://${CTI_AGI_HOST}:${CTI_AGI_PORT}/callback-offer"
    assert offer["s"][2].data == '$["${CTI_STATE}" = "done"]?done'
    assert offer["s"][3] == Step("Goto", "cti-wait,s,wait")
    assert offer["s"][4] == Step("Hangup", "", label="done")
    globals_ = (ROOT / "asterisk-config" / "extensions.conf").read_text()
    assert re.search(r"^CTI_WAIT_ANNOUNCE = \d+$", globals_, re.MULTILINE)


def test_the_simulator_runs_the_waiting_contexts_of_cti_conf() -> None:
    url = "agi://127.0.0.1:4573"
    text = (ROOT / "dialplans" / "cti.conf").read_text()
    written = read_dialplan(text.replace("agi://${CTI_AGI_HOST}:${CTI_AGI_PORT}", url))
    sim = Dialplan(Population(), random.Random(0), url, inbound_agi=True)
    for context in ("cti-wait", "cti-wait-offer"):
        for exten, steps in written[context].items():
            assert sim.lookup(context, exten) == steps, (context, exten)


# -- the offer, end to end ---------------------------------------------------------


async def test_a_waiting_caller_who_presses_1_is_called_back_in_their_place(
        tmp_path: Path) -> None:
    async with floor(tmp_path) as f:
        first = await f.call("+33622222222")
        ahead = await f.task(first)
        caller = await f.call("+33611223344", digits=PRESS_1_THEN_CONFIRM)
        mine = await f.task(caller)
        later = await f.call("+33633333333")
        behind = await f.task(later)
        assert ahead.info.task.enqueued_at < mine.info.task.enqueued_at \
            < behind.info.task.enqueued_at

        # The offer reads the caller's number back, 1 confirms, goodbye, hang-up.
        await f.ami.event("Hangup", within=30, Uniqueid=caller)
        commands = f.commands(caller)
        assert 'SAY DIGITS 0611223344 ""' in commands
        assert 'SET VARIABLE CTI_STATE "done"' in commands
        assert commands[-1] == 'STREAM FILE cti/callback-confirmed ""'
        [callback] = await f.callbacks()
        assert (callback.number, callback.service, callback.asap) == (
            "+33611223344", "support", True)
        # the ORIGINAL enqueue time, though asked for after the later caller came
        assert callback.enqueued_at == mine.info.task.enqueued_at
        assert callback.requested_at > behind.info.task.enqueued_at
        # the waiting task is gone, the others still wait
        assert caller not in f.server.switchboard.tasks
        assert caller not in f.waiting()

        # Dispatched, it waits in the router with that place: the reference
        # router, given a free agent each, serves them in this order.
        task = f"cb-{callback.id}"
        await eventually(lambda: task in f.waiting())
        waiting = f.server.switchboard.index.waiting()
        now = f.server.clock()
        free = [Agent(id=f"90{n}", name="free", interface=f"Local/90{n}@sim-agent",
                      skills={"support": 1}).login(now) for n in range(3)]
        order = [a.task_id for a in assign(waiting, free, now, f.server.center.policy)]
        assert order == [first, task, later]

        # Live: Bob logs in, takes the first caller, then the callback
        # while the later caller still waits.
        f.server.switchboard.login("1001")
        await eventually(lambda: len(f.offers) >= 2, within=40)
        assert [offer.call for offer in f.offers[:2]] == [first, task]
        assert later in f.waiting()


async def test_a_vip_who_presses_1_keeps_the_vip_head_start_in_the_callback(
        tmp_path: Path) -> None:
    async with floor(tmp_path, vip=frozenset({"+33611223344"})) as f:
        first = await f.call("+33622222222")
        ahead = await f.task(first)
        caller = await f.call("+33611223344", digits=PRESS_1_THEN_CONFIRM)
        mine = await f.task(caller)
        assert (ahead.info.task.priority, mine.info.task.priority) == (None, "vip")
        await f.ami.event("Hangup", within=30, Uniqueid=caller)
        [callback] = await f.callbacks()
        assert (callback.priority, callback.enqueued_at) == ("vip", mine.info.task.enqueued_at)
        assert callback.supervisor()["priority"] == "vip"
        # Dispatched, the callback ranks as the VIP call it replaces: ahead
        # of the standard caller who was waiting before.
        task = f"cb-{callback.id}"
        await eventually(lambda: task in f.waiting())
        waiting = f.server.switchboard.index.waiting()
        assert next(t for t in waiting if t.id == task).priority == "vip"
        now = f.server.clock()
        free = [Agent(id=f"90{n}", name="free", interface=f"Local/90{n}@sim-agent",
                      skills={"support": 1}).login(now) for n in range(2)]
        order = [a.task_id for a in assign(waiting, free, now, f.server.center.policy)]
        assert order == [task, first]


async def test_with_the_server_out_of_reach_the_caller_goes_back_to_waiting_in_place(
        tmp_path: Path) -> None:
    async with floor(tmp_path, reachable=False) as f:
        caller = await f.call("+33611223344", digits="WWWW1")
        queued = await f.task(caller)
        entered = await f.ami.event("Newexten", within=20, Uniqueid=caller,
                                    Context="cti-wait-offer")
        since = f.ami.received.index(entered)
        await f.ami.event("VarSet", since=since, Uniqueid=caller, Variable="AGISTATUS",
                          Value="FAILURE")
        # back in the music (looked for after the offer began)
        await f.ami.event("Newexten", since=since, Uniqueid=caller, Context="cti-wait",
                          Application="WaitExten")
        # still there, waiting with the time it first queued; nothing stored
        call = f.server.tracker.calls[caller]
        assert call.state.value == "waiting"
        assert [t.enqueued_at for t in f.server.switchboard.index.waiting()
                if t.id == caller] == [queued.info.task.enqueued_at]
        assert await f.callbacks() == []
        # and routed as soon as an agent is free
        f.server.switchboard.login("1001")
        await eventually(lambda: any(o.call == caller for o in f.offers))


# -- the offer's dialogue -----------------------------------------------------------


async def test_the_offer_takes_another_number_and_refuses_what_it_cannot_call(
        tmp_path: Path) -> None:
    async with floor(tmp_path) as f:
        caller = await f.call("+12025550143")   # a number of a country not called back
        queued = await f.task(caller)
        asterisk = FakeAsterisk(
            script="callback-offer", uniqueid=caller, caller="+12025550143",
            keys=["06*11223344", "0699999999", "2", "0677777777", "1"])
        await asterisk.call(f.agi_port)
        assert asterisk.sent("GET DATA cti/callback-enter-number") == [
            "GET DATA cti/callback-enter-number 5000 16"] * 3
        assert asterisk.sent("STREAM FILE cti/callback-invalid-number") != []
        assert asterisk.sent("SAY DIGITS") == ['SAY DIGITS 0699999999 ""',
                                               'SAY DIGITS 0677777777 ""']
        assert asterisk.variables == {"CTI_STATE": "done"}
        [callback] = await f.callbacks()
        assert callback.number == "+33677777777"
        assert callback.enqueued_at == queued.info.task.enqueued_at
        assert caller not in f.server.switchboard.tasks


async def test_an_offer_nobody_confirms_stores_nothing_and_keeps_the_task(
        tmp_path: Path) -> None:
    async with floor(tmp_path) as f:
        caller = await f.call("+33611223344")
        await f.task(caller)
        asterisk = FakeAsterisk(script="callback-offer", uniqueid=caller,
                                caller="+33611223344", keys=[None, "9", None])
        await asterisk.call(f.agi_port)
        assert len(asterisk.sent("SAY DIGITS 0611223344")) == 3
        assert asterisk.sent("STREAM FILE cti/callback-unavailable") != []
        assert "CTI_STATE" not in asterisk.variables
        assert await f.callbacks() == []
        assert caller in f.server.switchboard.tasks
        # a call the server has no waiting task for is refused at once
        stranger = FakeAsterisk(script="callback-offer", uniqueid="1795369761.99", keys=[])
        await stranger.call(f.agi_port)
        assert stranger.commands == ['STREAM FILE cti/callback-unavailable ""']


# -- an IVR flow's callback step ----------------------------------------------------

CALLBACK_FLOW = """
description: a callback at once (a menu reached from the waiting context)
fallback_service: support
steps:
  - id: ask
    type: callback
    service: support
    prompt: cti/callback-confirmed
"""
PARIS = ZoneInfo("Europe/Paris")
HOURS = {"timezone": "Europe/Paris", "weekly": {"mon-fri": "08:00-18:00"}}


async def test_a_flow_callback_keeps_a_waiting_callers_place_and_takes_a_slot_otherwise(
        tmp_path: Path) -> None:
    saturday = datetime(2026, 3, 28, 12, 0, tzinfo=PARIS).timestamp()  # closed
    offset = saturday - time.time()
    async with floor(tmp_path, flows={"cb": CALLBACK_FLOW}, service={"hours": HOURS},
                     clock=lambda: time.time() + offset) as f:
        caller = await f.call("+33611223344")
        queued = await f.task(caller)
        await FakeAsterisk(script="ivr?flow=cb", uniqueid=caller, caller="+33611223344",
                           keys=[]).call(f.agi_port)
        # nobody waits behind a closed service with no task: a slot
        await FakeAsterisk(script="ivr?flow=cb", uniqueid="1795369761.99",
                           caller="+33622222222", keys=[]).call(f.agi_port)
        await eventually(lambda: caller not in f.server.switchboard.tasks)
        by_number = {c.number: c for c in await f.callbacks()}
        kept = by_number["+33611223344"]
        assert (kept.asap, kept.enqueued_at) == (True, queued.info.task.enqueued_at)
        slot = by_number["+33622222222"]
        assert slot.asap is False
        assert slot.due_at == datetime.fromisoformat("2026-03-30T06:00:00+00:00").timestamp()
