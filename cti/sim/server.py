"""Composition of the simulator: switch + dialplan + runtime + AMI server,
the generator of inbound callers, and `core restart`. `start_sim()` is the
public entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass, field, replace

from cti.sim import apps
from cti.sim.agi_client import agi
from cti.sim.ami_actions import Actions
from cti.sim.ami_server import AmiServer
from cti.sim.channels import Switch
from cti.sim.dial import OriginateRequest, dial, originate
from cti.sim.dialplan import Dialplan
from cti.sim.hold import press_hold
from cti.sim.population import Population
from cti.sim.queues import QueueActions, Queues
from cti.sim.runtime import App, Runtime


@dataclass(frozen=True, slots=True)
class SimSettings:
    """`inbound_agi` runs the IVR of dialplans/cti.conf (FastAGI at
    `agi_url`) in cti-inbound and its cti-wait, where 1 reaches the
    server's callback offer; `default_service` is the CTI_DEFAULT_SERVICE
    global, the service of a caller the IVR did not classify."""

    host: str = "127.0.0.1"
    port: int = 5038
    username: str = "cti"
    secret: str = "cti-secret"  # noqa: S105 - the recordings' throw-away test credential
    speed: float = 1.0
    seed: int = 0
    agi_url: str = "agi://127.0.0.1:4573"
    agent_interface: str = "Local/{exten}@sim-agent"
    login_failure_delay: float = 1.0
    population: Population = field(default_factory=Population)
    inbound_agi: bool = False
    default_service: str = "support"
    # seconds of music between two callback announcements in cti-wait
    wait_announce_s: int = 45


APPS: dict[str, App] = {
    "NoOp": apps.noop,
    "Set": apps.set_var,
    "Answer": apps.answer,
    "Wait": apps.wait,
    "Hangup": apps.hangup,
    "Ringing": apps.ringing,
    "Busy": apps.busy,
    "Congestion": apps.congestion,
    "UserEvent": apps.user_event,
    "Goto": apps.goto,
    "GotoIf": apps.goto_if,
    "ExecIf": apps.exec_if,
    "MusicOnHold": apps.music_on_hold,
    "Background": apps.background,
    "WaitExten": apps.wait_exten,
    "SendDTMF": apps.send_dtmf,
    "ChanSpy": apps.chan_spy,
    "Dial": dial,
    "AGI": agi,
}


class Sim:
    """A running simulated PBX. `port` is the AMI port actually bound;
    `callers` counts the generated callers placed so far."""

    def __init__(self, settings: SimSettings) -> None:
        self.settings = settings
        self.ami = AmiServer(settings.username, settings.secret, settings.login_failure_delay)
        self._boot()
        self.port = 0
        self.callers = 0
        self._traffic: asyncio.Task[None] | None = None
        self._restart: asyncio.Task[None] | None = None

    def _boot(self) -> None:
        """A fresh PBX behind the AMI server: no channel, no call, dialplan
        globals as configured, channel and uniqueid counters from zero."""
        settings = self.settings
        population = settings.population
        hints = {exten: f"Local/{exten}@sim-agent" for exten in population.hints}
        self.switch = Switch(self.ami.broadcast, hints)
        self.switch.globals["CTI_DEFAULT_RING_TIMEOUT"] = "10"
        self.switch.globals["CTI_DEFAULT_SERVICE"] = settings.default_service
        # dialplans/cti.conf's cti-wait (inbound_agi): asterisk-config's values
        self.switch.globals["CTI_WAIT_TIMEOUT"] = "900"
        self.switch.globals["CTI_WAIT_ANNOUNCE"] = str(settings.wait_announce_s)
        self.runtime = Runtime(self.switch, Dialplan(
            population, _rng(settings.seed, 1), settings.agi_url, settings.agent_interface,
            inbound_agi=settings.inbound_agi,
        ), dict(APPS), settings.speed, settings.seed)
        Actions(self.ami, self.runtime, self.restart)
        # app_queue: the Queue() application and the Queue* actions (these
        # replace the empty QueueStatus/QueueSummary lists of Actions)
        self.queues = Queues(self.runtime)
        self.runtime.apps["Queue"] = self.queues.run
        QueueActions(self.ami, self.queues)

    async def start(self) -> None:
        self.port = await self.ami.start(self.settings.host, self.settings.port)
        if self.settings.population.traffic.rate_per_hour > 0:
            self._traffic = asyncio.get_running_loop().create_task(self._callers())

    async def close(self) -> None:
        for task in (self._traffic, self._restart):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.ami.close()
        await self.runtime.close()

    def press_hold(self, exten: str, on: bool = True) -> bool:
        """The agent at phone `exten` presses hold (`on`) or takes the call
        back; False when that phone is in no call."""
        device = self.settings.agent_interface.format(exten=exten)
        return press_hold(self.runtime.switch, device, on) is not None

    def restart(self) -> None:
        """`core restart now`; a second one during a restart is lost with
        the session that sent it."""
        if self._restart is None or self._restart.done():
            self._restart = asyncio.get_running_loop().create_task(self._restarting())

    async def _restarting(self) -> None:
        """Recording 11, in simulated time: Shutdown at once, the sessions
        closed 0.14 s later, a connect reset then refused, the listener
        back 1 s after the close and FullyBooted 0.08 s after that.
        Channels end with the process: no Hangup, nobody is told."""
        real = self.runtime.real
        self.ami.shut_down()
        await asyncio.sleep(real(0.14))
        await self.ami.drop()
        # a closed runtime drops what is spawned meanwhile (generated callers)
        await self.runtime.close()
        await asyncio.sleep(real(0.1))
        await self.ami.stop_listening()
        await asyncio.sleep(real(0.9))
        self._boot()
        await self.ami.listen(self.settings.host, self.port)
        await asyncio.sleep(real(0.08))
        self.ami.fully_booted()

    async def _callers(self) -> None:
        """Poisson arrivals of simulated callers, each an Originate of
        `Local/<patience>@sim-caller` into the inbound context, like the
        recordings' driver does.

        Arrivals keep to their own timetable (each due time is the last one
        plus a gap) and every caller already due is placed on the same
        wake-up: a busy event loop delays callers but never thins the
        traffic (one caller per loop turn caps it at a few hundred a second).
        """
        population = self.settings.population
        rng = _rng(self.settings.seed, 2)
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            gap = population.next_gap(rng)
            if gap is None:
                return
            due += self.runtime.real(gap)
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            self._place_next(population, rng)

    def _place_next(self, population: Population, rng: random.Random) -> None:
        self.callers += 1
        caller = population.next_caller(rng, self.callers)
        request = OriginateRequest(
            channel=f"Local/{caller.exten}@sim-caller", context=caller.context,
            exten=caller.did, callerid=(caller.number, caller.name), timeout_s=15.0,
            variables=[("CTI_VIP", "1")] if caller.vip else [],
        )
        self.runtime.spawn(_place(self.runtime, request))


async def _place(rt: Runtime, request: OriginateRequest) -> None:
    # the generator does not wait for an answer: an unanswered or refused
    # generated call simply ends, as an abandoned PSTN call would
    await originate(rt, request)


def _rng(seed: int, stream: int) -> random.Random:
    """Independent seeded streams (phones, arrivals) so that adding a
    caller does not change how the phones behave."""
    return random.Random(seed * 1000 + stream)


async def start_sim(settings: SimSettings | None = None, **overrides: object) -> Sim:
    """Start a simulated PBX; `await sim.close()` stops it and every call."""
    base = settings or SimSettings()
    if overrides:
        base = replace(base, **overrides)  # type: ignore[arg-type]
    sim = Sim(base)
    await sim.start()
    return sim
