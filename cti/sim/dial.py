"""Outgoing calls on Local channels: the Dial application and Originate.

Both create a Local pair, start the `;2` half in its dialplan and wait for
its indications; what they emit around it follows recordings 01, 03, 06a
(Dial, bridge, blind transfer by Redirect) and 07 (Originate results and
reason codes).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cti.sim.channels import Channel, State
from cti.sim.runtime import Outcome, Runtime

_LOCAL = re.compile(r"Local/([^@/]+)@([^/,]+?)(?:/n)?\Z", re.IGNORECASE)
DIAL_VARS = (
    "DIALSTATUS",
    "DIALEDPEERNUMBER",
    "DIALEDPEERNAME",
    "ANSWEREDTIME",
    "ANSWEREDTIME_MS",
    "DIALEDTIME",
    "DIALEDTIME_MS",
    "RINGTIME",
    "RINGTIME_MS",
    "PROGRESSTIME",
    "PROGRESSTIME_MS",
)
# OriginateResponse Reason (finding 2): answered, busy, rang out, congestion.
REASON = {"answer": 4, "busy": 5, "noanswer": 3, "congestion": 8, "chanunavail": 1}


def parse_local(target: str) -> tuple[str, str] | None:
    match = _LOCAL.match(target.strip())
    return (match.group(1), match.group(2)) if match else None


async def await_answer(
    rt: Runtime,
    caller: Channel | None,
    one: Channel,
    ring_s: float | None,
    on_ringing: Callable[[], None],
) -> str:
    """Wait for the Local ;2 to answer, refuse, or for the time to run out.
    Returns answer/busy/congestion/noanswer/chanunavail/cancel."""
    loop = asyncio.get_running_loop()
    deadline = None if ring_s is None else loop.time() + rt.real(ring_s)
    watch = [one] if caller is None else [one, caller]
    while True:
        while one.controls:
            control = one.controls.popleft()
            if control == "ringing":
                on_ringing()
            elif control in ("answer", "busy", "congestion"):
                return control
        if caller is not None and caller.interrupted:
            return "cancel"
        if one.hangup_requested or not one.alive:
            return "chanunavail"
        left = None if deadline is None else deadline - loop.time()
        if left is not None and left <= 0:
            return "noanswer"
        await rt.switch.wait_any(watch, left)


def _elapsed(since: float) -> tuple[str, str]:
    ms = int((time.monotonic() - since) * 1000)
    return str(ms // 1000), str(ms)


async def dial(rt: Runtime, chan: Channel, args: list[str]) -> Outcome:
    """Dial(Local/<exten>@<context>,<timeout>,<options>) with one target."""
    switch = rt.switch
    started = time.monotonic()
    timeout = float(args[1]) if len(args) > 1 and args[1] else None
    for name in DIAL_VARS:
        switch.set_var(chan, name, "")
    target = parse_local(args[0] if args else "")
    if target is None:
        switch.set_var(chan, "DIALSTATUS", "CHANUNAVAIL")
        return Outcome.NEXT
    exten, context = target
    dialstring = f"{exten}@{context}"
    one, two = switch.local_pair(exten, context, linkedid=chan.linkedid)
    switch.set_var(one, "DIALEDPEERNUMBER", dialstring)
    one.cid_num, one.cid_name = exten, chan.cid_name
    switch.newexten(one, "AppDial", "(Outgoing Line)")
    switch.set_callerid(one, exten, chan.cid_name, (chan.cid_num, chan.cid_name))
    switch.set_var(two, "DIALEDPEERNUMBER", dialstring)
    switch.set_callerid(two, chan.cid_num, chan.cid_name, (chan.cid_num, chan.cid_name))
    if not rt.dialplan.exists(context, exten):
        refuse_unknown(rt, one, two)
        switch.set_var(chan, "DIALSTATUS", "CHANUNAVAIL")
        return Outcome.NEXT
    switch.local_bridge(one, two)
    switch.dial_event("DialBegin", chan, one, [("DialString", dialstring)])
    rt.start_pbx(two)

    def ringing() -> None:
        seconds, ms = _elapsed(started)
        switch.set_var(chan, "RINGTIME", seconds)
        switch.set_var(chan, "RINGTIME_MS", ms)
        switch.dial_event("DialState", chan, one, [("DialStatus", "RINGING")])

    result = await await_answer(rt, chan, one, timeout, ringing)
    if result != "answer":
        status = {"chanunavail": "CHANUNAVAIL", "cancel": "CANCEL"}.get(result, result.upper())
        switch.dial_event("DialEnd", chan, one, [("DialStatus", status)])
        switch.hangup(one)
        switch.set_var(chan, "DIALSTATUS", status)
        return Outcome.HANGUP if chan.hangup_requested else Outcome.NEXT
    switch.set_var(chan, "DIALSTATUS", "ANSWER")
    switch.set_var(chan, "DIALEDPEERNAME", one.name)
    switch.set_var(chan, "DIALEDPEERNUMBER", dialstring)
    switch.dial_event("DialEnd", chan, one, [("DialStatus", "ANSWER")])
    return await _bridged(rt, chan, one, started)


async def _bridged(rt: Runtime, chan: Channel, one: Channel, started: float) -> Outcome:
    switch = rt.switch
    bridge = switch.bridge_create()
    one.exten = ""  # the answered dial leg shows an empty Exten (recording 01)
    switch.newexten(one, "AppDial", "(Outgoing Line)")
    switch.bridge_enter(bridge, one)
    switch.bridge_enter(bridge, chan)
    switch.set_var(one, "BRIDGEPEER", chan.name)
    switch.set_var(chan, "BRIDGEPEER", one.name)
    while True:
        # after an attended transfer (cti.sim.transfer) the far end is the
        # target; while the transferer consults, its own hangup is not ours
        one = next((m for m in bridge.members if m is not chan), one)
        if chan.interrupted or (one.bridge is bridge
                                and (one.hangup_requested or not one.alive)):
            break
        await rt.wait([chan, one], None)
    if chan.goto is not None and not chan.hangup_requested:
        # Redirect of a bridged channel (blind transfer, recording 06a): the
        # new location is published with the old application, the callee
        # leg is hung up, and only DIALSTATUS is set.
        switch.set_var(chan, "BRIDGEPEER", "")
        chan.context, chan.exten, chan.priority = chan.goto
        chan.goto = None
        switch.newexten(chan, chan.application, chan.app_data)
        switch.set_var(one, "BRIDGEPEER", "")
        switch.bridge_leave(chan)
        switch.bridge_leave(one)
        switch.set_var(chan, "DIALSTATUS", "ANSWER")
        switch.bridge_destroy(bridge)
        one.hangupcause = one.hangupcause or 16
        switch.hangup(one)
        return Outcome.JUMP
    if chan.hangup_requested:
        # The caller side ends (AMI Hangup, or its own Local partner): a
        # bridged channel hangs up with 16 even without a Cause (finding 9).
        chan.hangupcause = chan.hangupcause or 16
        switch.set_var(chan, "BRIDGEPEER", "")
        switch.set_var(one, "BRIDGEPEER", "")
        switch.bridge_leave(chan)
        switch.bridge_leave(one)
        one.hangupcause = one.hangupcause or 16
        switch.hangup(one)
        switch.bridge_destroy(bridge)
    else:
        # The called party hung up (recordings 01, 03, 07).
        switch.set_var(one, "BRIDGEPEER", "")
        switch.set_var(chan, "BRIDGEPEER", "")
        switch.bridge_leave(one)
        switch.hangup(one)
        switch.bridge_leave(chan)
        switch.bridge_destroy(bridge)
    seconds, ms = _elapsed(started)
    switch.set_var(chan, "ANSWEREDTIME", seconds)
    switch.set_var(chan, "ANSWEREDTIME_MS", ms)
    switch.set_var(chan, "DIALEDTIME", seconds)
    switch.set_var(chan, "DIALEDTIME_MS", ms)
    switch.set_var(chan, "DIALSTATUS", "ANSWER")
    return Outcome.HANGUP


def refuse_unknown(rt: Runtime, one: Channel, two: Channel) -> None:
    """No such extension behind the Local channel: both halves go at once
    with cause 0 and the device reads INVALID (recording 07, 0600000000)."""
    one.hangup_requested = True
    rt.switch.hangup(two, device_state="INVALID")
    rt.switch.hangup(one, device_state="INVALID")


@dataclass(slots=True)
class OriginateRequest:
    channel: str
    context: str = ""
    exten: str = ""
    priority: int = 1
    application: str = ""
    data: str = ""
    callerid: tuple[str, str] | None = None
    timeout_s: float = 30.0
    variables: list[tuple[str, str]] = field(default_factory=list)
    ids: tuple[str | None, str | None] = (None, None)


@dataclass(slots=True)
class OriginateResult:
    success: bool
    reason: int
    channel: Channel | None


async def originate(rt: Runtime, req: OriginateRequest) -> OriginateResult:
    """The originate thread: call the Local channel, and once its ;2
    answered run the dialplan location or the application on ;1."""
    switch = rt.switch
    target = parse_local(req.channel)
    if target is None:
        return OriginateResult(False, 0, None)
    exten, context = target
    one, two = switch.local_pair(exten, context, ids=req.ids)
    switch.newexten(one, "AppDial2", "(Outgoing Line)")
    for name, value in req.variables:
        switch.set_var(one, name, value)
    if req.callerid is not None:
        num, name = req.callerid
        switch.set_callerid(one, num, name, (num, name))
    for name, value in req.variables:
        switch.set_var(two, name, value)
    if req.callerid is not None:
        num, name = req.callerid
        switch.set_callerid(two, num, name, (num, name))
    if not rt.dialplan.exists(context, exten):
        refuse_unknown(rt, one, two)
        return OriginateResult(False, 0, None)
    switch.local_bridge(one, two)
    switch.dial_event("DialBegin", None, one, [("DialString", f"{exten}@{context}")])
    rt.start_pbx(two)

    def ringing() -> None:
        switch.dial_event("DialState", None, one, [("DialStatus", "RINGING")])

    result = await await_answer(rt, None, one, req.timeout_s, ringing)
    if result == "answer":
        switch.dial_event("DialEnd", None, one, [("DialStatus", "ANSWER")])
        if req.application:
            rt.spawn(_run_application(rt, one, req.application, req.data))
        else:
            one.context, one.exten, one.priority = req.context, req.exten, req.priority
            rt.start_pbx(one)
        return OriginateResult(True, 4, one)
    if result in ("busy", "congestion"):
        switch.dial_event("DialEnd", None, one, [("DialStatus", result.upper())])
    elif result == "noanswer":
        # ringing until the Originate Timeout: cause 19 on both halves, no
        # DialEnd (recording 07, 0688888888)
        one.hangupcause = 19
    switch.hangup(one)
    return OriginateResult(False, REASON[result], None)


async def _run_application(rt: Runtime, chan: Channel, app: str, data: str) -> None:
    """An originated application runs on ;1 without a PBX: no Newexten and
    no SoftHangupRequest (recording 10, ChanSpy)."""
    runner = rt.apps.get(app)
    if runner is not None and chan.state == State.UP:
        await runner(rt, chan, data.split(",") if data else [])
    if chan.hangupcause == 0 and not chan.hangup_requested:
        chan.hangupcause = 16
    rt.switch.hangup(chan)
