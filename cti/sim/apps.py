"""Dialplan applications of the simulator (NoOp, Set, Answer, Wait,
MusicOnHold, Background, WaitExten, UserEvent, Goto, GotoIf, ExecIf,
Hangup, Ringing, Busy, Congestion, SendDTMF, ChanSpy), each emitting what
the Asterisk 22 application emits.

Dial lives in `cti.sim.dial` and AGI in `cti.sim.agi_client`.
"""

from __future__ import annotations

import asyncio
import re

from cti.sim.channels import Channel, State
from cti.sim.runtime import Outcome, Runtime, app_args

_APP_CALL = re.compile(r"\s*(\w+)(?:\((.*)\))?\s*\Z", re.DOTALL)
_MUSIC_CLASS = re.compile(r"m(?:\(([^()]*)\))?")
# Sound lengths in seconds (8 kHz samples = seconds * 8000, the `endpos`),
# measured in recording 08; other files play 1 s.
SOUNDS = {"hello-world": 1.42, "you-entered": 0.98, "auth-thankyou": 0.96,
          "basic-pbx-ivr-main": 4.0, "agent-pass": 1.2}


async def noop(rt: Runtime, chan: Channel, args: list[str]) -> Outcome:
    return Outcome.NEXT


async def set_var(rt: Runtime, chan: Channel, args: list[str]) -> Outcome:
    name, _, value = args[0].partition("=")
    rt.switch.set_var(chan, name, value)
    return Outcome.NEXT


def answer_channel(rt: Runtime, chan: Channel) -> None:
    """Answer: Newstate Up on this half, then on the Local ;1 it is
    connected to (which is what the caller of the Local channel sees)."""
    if chan.state == State.UP:
        return
    rt.switch.set_state(chan, State.UP)
    rt.switch.indicate(chan, "answer")


async def answer(rt: Runtime, chan: Channel, args: list[str]) -> Outcome:
    answer_channel(rt, chan)
    return Outcome.NEXT


async def wait(rt: Runtime, chan: Channel, args: list[str]) -> Outcome:
    seconds = float(args[0]) if args else 0.0
    await rt.hold(chan, seconds)
    return Outcome.HANGUP if chan.hangup_requested else Outcome.NEXT


async def hangup(rt: Runtime, chan: Channel, args: list[str]) -> Outcome:
    if args and args[0].isdigit():
        chan.hangupcause = int(args[0])
    rt.switch.soft_hangup(chan)
    return Outcome.HANGUP


async def ringing(rt: Runtime, chan: Channel, args: list[str]) -> Outcome:
    rt.switch.indicate(chan, "ringing")
    return Outcome.NEXT


async def _refuse(rt: Runtime, chan: Channel, args: list[str], cause: int, what: str) -> Outcome:
    # Busy()/Congestion() put the channel in state Busy (7), keep their
    # cause for the Hangup (17 / 34, recording 07) and signal the caller.
    rt.switch.set_state(chan, State.BUSY)
    chan.hangupcause = cause
    rt.switch.indicate(chan, what)
    await rt.hold(chan, float(args[0]) if args else 10.0)
    return Outcome.HANGUP


async def busy(rt: Runtime, chan: Channel, args: list[str]) -> Outcome:
    return await _refuse(rt, chan, args, 17, "busy")


async def congestion(rt: Runtime, chan: Channel, args: list[str]) -> Outcome:
    return await _refuse(rt, chan, args, 34, "congestion")


async def user_event(rt: Runtime, chan: Channel, args: list[str]) -> Outcome:
    name, *rest = args or [""]
    pairs = [*chan.fields(), ("UserEvent", name)]
    for item in rest:
        key, _, value = item.partition(":")
        pairs.append((key.strip(), value.strip()))
    rt.switch.emit("UserEvent", "user", pairs)
    return Outcome.NEXT


async def goto(rt: Runtime, chan: Channel, args: list[str]) -> Outcome:
    """Goto([[context,]exten,]priority|label)."""
    context, exten = chan.context, chan.exten
    if len(args) >= 3:
        context, exten, target = args[0], args[1], args[2]
    elif len(args) == 2:
        exten, target = args
    else:
        target = args[0] if args else ""
    priority = rt.dialplan.priority(context, exten, target.strip())
    if priority is None:
        # Asterisk refuses an unknown label and the channel hangs up
        return Outcome.HANGUP
    chan.context, chan.exten, chan.priority = context, exten, priority
    return Outcome.JUMP


def _true(condition: str) -> bool:
    """pbx_checkcondition: empty and 0 are false, any other text is true."""
    text = condition.strip()
    if not text:
        return False
    try:
        return float(text) != 0
    except ValueError:
        return True


def _branches(text: str) -> tuple[str, str]:
    """`iftrue:iffalse`, split at the first `:` outside parentheses."""
    depth = 0
    for index, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == ":" and depth == 0:
            return text[:index], text[index + 1:]
    return text, ""


async def goto_if(rt: Runtime, chan: Channel, args: list[str]) -> Outcome:
    """GotoIf(condition?[iftrue][:iffalse]); no branch taken = next priority."""
    condition, _, branches = (args[0] if args else "").partition("?")
    when_true, when_false = _branches(branches)
    target = when_true if _true(condition) else when_false
    if not target:
        return Outcome.NEXT
    return await goto(rt, chan, target.split(","))


async def exec_if(rt: Runtime, chan: Channel, args: list[str]) -> Outcome:
    """ExecIf(condition?app(args)[:app(args)]): runs the application without
    a Newexten of its own, as Asterisk does."""
    condition, _, branches = (args[0] if args else "").partition("?")
    when_true, when_false = _branches(branches)
    call = when_true if _true(condition) else when_false
    if not call.strip():
        return Outcome.NEXT
    match = _APP_CALL.match(call)
    runner = rt.apps.get(match.group(1)) if match is not None else None
    if match is None or runner is None:
        # "Could not find application": the channel hangs up
        return Outcome.HANGUP
    return await runner(rt, chan, app_args(match.group(1), match.group(2) or ""))


async def music_on_hold(rt: Runtime, chan: Channel, args: list[str]) -> Outcome:
    klass = args[0] if args and args[0] else "default"
    seconds = float(args[1]) if len(args) > 1 and args[1] else 86400.0
    rt.switch.emit("MusicOnHoldStart", "call", [*chan.fields(), ("Class", klass)])
    await rt.hold(chan, seconds)
    rt.switch.emit("MusicOnHoldStop", "call", chan.fields())
    return Outcome.HANGUP if chan.hangup_requested else Outcome.NEXT


async def send_dtmf(rt: Runtime, chan: Channel, args: list[str]) -> Outcome:
    """Digits played on a Local ;2 arrive on ;1 as DTMFBegin/DTMFEnd with
    Direction: Received, 100 ms on, 250 ms apart (recording 08). As in
    Asterisk, `w` pauses 500 ms and `W` one second (a caller waiting for
    the next prompt)."""
    target = chan.partner
    for digit in args[0] if args else "":
        if chan.hangup_requested or target is None or not target.alive:
            break
        if digit in "wW":
            await rt.sleep(0.5 if digit == "w" else 1.0)
            continue
        await rt.sleep(0.1)
        fields = [*target.fields(), ("Digit", digit), ("Direction", "Received")]
        rt.switch.emit("DTMFBegin", "dtmf", fields)
        await rt.sleep(0.1)
        if target.gone:
            break
        rt.switch.emit(
            "DTMFEnd",
            "dtmf",
            [*target.fields(), ("Digit", digit), ("DurationMs", "100"), ("Direction", "Received")],
        )
        target.dtmf.append(digit)
        target.poke()
        await rt.sleep(0.15)
    return Outcome.HANGUP if chan.hangup_requested else Outcome.NEXT


async def chan_spy(rt: Runtime, chan: Channel, args: list[str]) -> Outcome:
    """ChanSpy(<channel>,<options>) as a supervisor originate runs it
    (recording 10): ChanSpyStart, the spied bridge re-announces BRIDGEPEER,
    and on the spy's hangup ChanSpyStop between the two BRIDGEPEER."""
    switch = rt.switch
    prefix = args[0] if args else ""
    options = args[1] if len(args) > 1 else ""
    spyee = next(
        (c for c in switch.channels.values() if c.name.startswith(prefix) and c is not chan),
        None,
    )
    if spyee is None or not prefix:
        return Outcome.NEXT
    await rt.sleep(0.1)
    pairs = [*chan.fields("Spyer"), *spyee.fields("Spyee")]
    switch.emit("ChanSpyStart", "call", pairs)
    _bridge_refresh(rt, spyee)
    while not chan.interrupted and spyee.alive:
        await rt.wait([chan, spyee], None)
    if "w" in options:
        # whispering adds a second audiohook: one more BRIDGEPEER round
        _bridge_refresh(rt, spyee)
    bridge = spyee.bridge
    if bridge is not None and spyee.alive:
        switch.set_var(spyee, "BRIDGEPEER", _peer(spyee))
    switch.emit("ChanSpyStop", "call", [*chan.fields("Spyer"), *spyee.fields("Spyee")])
    if bridge is not None:
        for member in list(bridge.members):
            if member is not spyee:
                switch.set_var(member, "BRIDGEPEER", _peer(member))
    return Outcome.HANGUP if chan.hangup_requested else Outcome.NEXT


def _peer(chan: Channel) -> str:
    bridge = chan.bridge
    if bridge is None:
        return ""
    return ",".join(m.name for m in bridge.members if m is not chan)


def _bridge_refresh(rt: Runtime, spyee: Channel) -> None:
    bridge = spyee.bridge
    if bridge is None:
        return
    members = [spyee, *[m for m in bridge.members if m is not spyee]]
    rt.switch.bridge_peers(bridge, members)


async def _listen(rt: Runtime, chan: Channel, seconds: float) -> str | None:
    """The first key the caller presses within `seconds` (a key pressed
    before, still unread, counts: Asterisk queues it on the channel), ""
    when none, None when the channel was hung up or redirected."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + rt.real(seconds)
    while not chan.interrupted:
        if chan.dtmf:
            return chan.dtmf.popleft()
        left = deadline - loop.time()
        if left <= 0:
            return ""
        await rt.switch.wait_any([chan], left)
    return None


def _to_extension(rt: Runtime, chan: Channel, key: str) -> Outcome:
    """A key ends Background/WaitExten: the pbx loop goes to that
    extension of the current context, else to `i` with INVALID_EXTEN, else
    hangs up ("sent to invalid extension but no invalid handler"). Only
    one-key extensions: the simulator does not wait for a longer match."""
    if rt.dialplan.lookup(chan.context, key) is not None:
        chan.exten, chan.priority = key, 1
        return Outcome.JUMP
    if rt.dialplan.lookup(chan.context, "i") is not None:
        rt.switch.set_var(chan, "INVALID_EXTEN", key)
        chan.exten, chan.priority = "i", 1
        return Outcome.JUMP
    return Outcome.HANGUP


def _ended(chan: Channel) -> Outcome:
    return Outcome.HANGUP if chan.hangup_requested else Outcome.NEXT


async def background(rt: Runtime, chan: Channel, args: list[str]) -> Outcome:
    """Background(file): the prompt plays and a key cuts it short."""
    name = args[0] if args else ""
    key = await _listen(rt, chan, SOUNDS.get(name, 1.0))
    if not key:  # played to the end, or hung up / redirected meanwhile
        return _ended(chan)
    return _to_extension(rt, chan, key)


async def wait_exten(rt: Runtime, chan: Channel, args: list[str]) -> Outcome:
    """WaitExten([seconds][,m[(class)]]): wait for a key, with music on
    hold when asked (MusicOnHoldStart/Stop, as the application starts and
    stops it); at the timeout the dialplan goes on at `t` (hang-up when the
    context has none, as Asterisk does)."""
    seconds = float(args[0]) if args and args[0] else 10.0
    music = _MUSIC_CLASS.fullmatch(args[1]) if len(args) > 1 else None
    if music is not None:
        klass = music.group(1) or "default"
        rt.switch.emit("MusicOnHoldStart", "call", [*chan.fields(), ("Class", klass)])
    key = await _listen(rt, chan, seconds)
    if music is not None and chan.alive:
        rt.switch.emit("MusicOnHoldStop", "call", chan.fields())
    if key is None:
        return _ended(chan)
    if key:
        return _to_extension(rt, chan, key)
    if rt.dialplan.lookup(chan.context, "t") is None:
        return Outcome.HANGUP
    chan.exten, chan.priority = "t", 1
    return Outcome.JUMP
