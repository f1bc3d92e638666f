"""Composition of the simulator: switch + dialplan + runtime + AMI server,
and the generator of inbound callers. `start_sim()` is the public entry.
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
from cti.sim.population import Population
from cti.sim.runtime import App, Runtime


@dataclass(frozen=True, slots=True)
class SimSettings:
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
    "MusicOnHold": apps.music_on_hold,
    "SendDTMF": apps.send_dtmf,
    "ChanSpy": apps.chan_spy,
    "Dial": dial,
    "AGI": agi,
}


class Sim:
    """A running simulated PBX. `port` is the AMI port actually bound."""

    def __init__(self, settings: SimSettings) -> None:
        self.settings = settings
        population = settings.population
        self.ami = AmiServer(settings.username, settings.secret, settings.login_failure_delay)
        hints = {exten: f"Local/{exten}@sim-agent" for exten in population.hints}
        self.switch = Switch(self.ami.broadcast, hints)
        self.switch.globals["CTI_DEFAULT_RING_TIMEOUT"] = "10"
        self.runtime = Runtime(self.switch, Dialplan(
            population, _rng(settings.seed, 1), settings.agi_url, settings.agent_interface,
        ), APPS, settings.speed, settings.seed)
        Actions(self.ami, self.runtime)
        self.port = 0
        self._traffic: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.port = await self.ami.start(self.settings.host, self.settings.port)
        if self.settings.population.traffic.rate_per_hour > 0:
            self._traffic = asyncio.get_running_loop().create_task(self._callers())

    async def close(self) -> None:
        if self._traffic is not None:
            self._traffic.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._traffic
        await self.ami.close()
        await self.runtime.close()

    async def _callers(self) -> None:
        """Poisson arrivals of simulated callers, each an Originate of
        `Local/<patience>@sim-caller` into the inbound context, like the
        recordings' driver does."""
        population = self.settings.population
        rng = _rng(self.settings.seed, 2)
        serial = 0
        while True:
            gap = population.next_gap(rng)
            if gap is None:
                return
            await self.runtime.sleep(gap)
            serial += 1
            caller = population.next_caller(rng, serial)
            number = caller.callerid.rsplit("<", 1)[1].rstrip(">")
            name = caller.callerid.split('"')[1]
            request = OriginateRequest(
                channel=f"Local/{caller.exten}@sim-caller", context=caller.context,
                exten=caller.did, callerid=(number, name), timeout_s=15.0,
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
