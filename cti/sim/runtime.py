"""The simulator's run-time: the PBX thread of each channel (dialplan
interpreter), scaled time, and the tasks it owns.

Every channel that runs dialplan gets one task here; `close()` cancels and
awaits them all. Time is scaled by `speed` (speed=10 makes every Wait 10x
shorter) without changing any event.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from enum import Enum
from typing import Any

from cti.sim.channels import Channel, Switch
from cti.sim.dialplan import Dialplan, substitute


class Outcome(Enum):
    NEXT = "next"  # go on with the next priority
    JUMP = "jump"  # the application moved the channel (Goto)
    HANGUP = "hangup"  # the PBX ends: hang the channel up


App = Callable[["Runtime", Channel, list[str]], Awaitable[Outcome]]


class Runtime:
    def __init__(
        self,
        switch: Switch,
        dialplan: Dialplan,
        apps: dict[str, App],
        speed: float = 1.0,
        seed: int = 0,
    ) -> None:
        self.switch = switch
        self.dialplan = dialplan
        self.apps = apps
        self.speed = speed
        self.rng = random.Random(seed)
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        # ${EPOCH} runs at `speed` from the wall clock at start.
        self._started = (time.time(), time.monotonic())
        self.failures: list[BaseException] = []

    # ------------------------------------------------------------ time
    def real(self, seconds: float) -> float:
        return seconds / self.speed

    def epoch(self) -> int:
        """${EPOCH}: seconds of simulated time (Wait 10 moves it by 10)."""
        wall, mono = self._started
        return int(wall + (time.monotonic() - mono) * self.speed)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(self.real(seconds))

    async def wait(self, chans: list[Channel], seconds: float | None) -> None:
        """Wait `seconds` of simulated time or until one channel is poked."""
        await self.switch.wait_any(chans, None if seconds is None else self.real(seconds))

    async def hold(self, chan: Channel, seconds: float) -> bool:
        """Stay `seconds` on `chan` (Wait, MusicOnHold). False when the
        channel was interrupted (hangup or redirect) before the end."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.real(seconds)
        while not chan.interrupted:
            left = deadline - loop.time()
            if left <= 0:
                return True
            await self.switch.wait_any([chan], left)
        return False

    # ------------------------------------------------------------ tasks
    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a channel thread; held until it ends, cancelled on close."""
        if self._closing:
            coro.close()
            return
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            # A bug in a simulated channel must be loud: kept and re-raised
            # by close() rather than lost in the loop's exception handler.
            self.failures.append(error)

    async def close(self) -> None:
        self._closing = True
        while self._tasks:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self.failures:
            raise RuntimeError("a simulated channel failed") from self.failures[0]

    # ------------------------------------------------------------ dialplan
    def expand(self, chan: Channel, data: str) -> str:
        globals_ = self.switch.globals
        extra = self.dialplan.expressions(chan, globals_)
        if "EPOCH" in data:  # the clocks are read for the steps that use it
            extra["EPOCH"] = str(self.epoch())
        return substitute(data, chan, globals_, extra)

    def start_pbx(self, chan: Channel) -> None:
        chan.pbx = True
        self.spawn(self.run_pbx(chan))

    async def run_pbx(self, chan: Channel) -> None:
        """ast_pbx_run: execute priorities until the channel hangs up or
        falls off the dialplan (autofallthrough = yes)."""
        while chan.alive and not chan.hangup_requested:
            if chan.goto is not None:
                chan.context, chan.exten, chan.priority = chan.goto
                chan.goto = None
            steps = self.dialplan.lookup(chan.context, chan.exten, chan.uniqueid)
            if steps is None or not 1 <= chan.priority <= len(steps):
                break
            step = steps[chan.priority - 1]
            data = self.expand(chan, step.data)
            self.switch.newexten(chan, step.app, data)
            outcome = await self.apps[step.app](self, chan, app_args(step.app, data))
            if outcome is Outcome.HANGUP:
                break
            if chan.redirected:
                continue
            if outcome is Outcome.NEXT:
                chan.priority += 1
        self.end_pbx(chan)

    def end_pbx(self, chan: Channel) -> None:
        if not chan.alive:
            return
        self.switch.soft_hangup(chan)
        if chan.hangupcause == 0 and not chan.hangup_requested:
            chan.hangupcause = 16
        self.switch.hangup(chan)


def app_args(app: str, data: str) -> list[str]:
    """An application's arguments; those that take the whole text (a Set
    value, the app call of an ExecIf) get it as one argument."""
    if app in ("NoOp", "Set", "Verbose", "ExecIf", "GotoIf"):
        return [data]
    return data.split(",") if data else []
