"""The simulated switch core: channels, Local pairs, bridges, device states,
and every channel-level AMI event they emit.

Each helper here emits exactly the events Asterisk 22 emits for the same
step (checked against `tests/fixtures/asterisk-22/`); the dialplan
applications in `cti.sim.apps` are written in terms of these helpers so the
per-channel event sequences stay the same as the recordings'.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import IntEnum

Pairs = list[tuple[str, str]]
EventSink = Callable[[str, str, Pairs], None]
"""(event name, privilege class e.g. "call", fields after Event/Privilege)."""


class State(IntEnum):
    DOWN = 0
    RING = 4
    RINGING = 5
    UP = 6
    BUSY = 7


STATE_DESC = {0: "Down", 4: "Ring", 5: "Ringing", 6: "Up", 7: "Busy"}
CAUSE_TEXT = {
    0: "Unknown",
    16: "Normal Clearing",
    17: "User busy",
    19: "No user responding",
    26: "Answered elsewhere",
    34: "Circuit/channel congestion",
}
UNKNOWN = "<unknown>"


def presentation(num: str) -> tuple[str, str]:
    """The CID-CallingPres of a NewCallerid carrying `num`."""
    if num == UNKNOWN:
        return ("CID-CallingPres", "67 (Number Unavailable)")
    return ("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")


@dataclass(eq=False)
class Channel:
    name: str
    uniqueid: str
    linkedid: str
    device: str
    context: str
    exten: str
    priority: int = 1
    state: State = State.DOWN
    cid_num: str = UNKNOWN
    cid_name: str = UNKNOWN
    conn_num: str = UNKNOWN
    conn_name: str = UNKNOWN
    variables: dict[str, str] = field(default_factory=dict)
    partner: Channel | None = None
    half: int = 1
    created: float = field(default_factory=time.monotonic)
    application: str = ""
    app_data: str = ""
    published: tuple[str, str, int] | None = None
    bridge: Bridge | None = None
    alive: bool = True
    hangup_requested: bool = False
    hangupcause: int = 0
    soft_hangup_sent: bool = False
    pbx: bool = False
    goto: tuple[str, str, int] | None = None
    controls: deque[str] = field(default_factory=deque)
    dtmf: deque[str] = field(default_factory=deque)
    waiters: set[asyncio.Event] = field(default_factory=set)
    # a caller id the Local ;1 passed on (connected line, cti.sim.transfer),
    # reported by Asterisk only when this half hangs up
    caller_update: tuple[str, str] | None = None

    def poke(self) -> None:
        """Wake whatever this channel's thread is waiting in."""
        for waiter in self.waiters:
            waiter.set()

    @property
    def redirected(self) -> bool:
        return self.goto is not None

    @property
    def gone(self) -> bool:
        return not self.alive

    @property
    def interrupted(self) -> bool:
        return self.hangup_requested or self.goto is not None

    def fields(self, prefix: str = "") -> Pairs:
        return [
            (f"{prefix}Channel", self.name),
            (f"{prefix}ChannelState", str(int(self.state))),
            (f"{prefix}ChannelStateDesc", STATE_DESC[int(self.state)]),
            (f"{prefix}CallerIDNum", self.cid_num),
            (f"{prefix}CallerIDName", self.cid_name),
            (f"{prefix}ConnectedLineNum", self.conn_num),
            (f"{prefix}ConnectedLineName", self.conn_name),
            (f"{prefix}Language", "en"),
            (f"{prefix}AccountCode", ""),
            (f"{prefix}Context", self.context),
            (f"{prefix}Exten", self.exten),
            (f"{prefix}Priority", str(self.priority)),
            (f"{prefix}Uniqueid", self.uniqueid),
            (f"{prefix}Linkedid", self.linkedid),
        ]


@dataclass(eq=False)
class Bridge:
    uniqueid: str
    members: list[Channel] = field(default_factory=list)

    def fields(self) -> Pairs:
        return [
            ("BridgeUniqueid", self.uniqueid),
            ("BridgeType", "basic"),
            ("BridgeTechnology", "simple_bridge"),
            ("BridgeCreator", UNKNOWN),
            ("BridgeName", UNKNOWN),
            ("BridgeNumChannels", str(len(self.members))),
            ("BridgeVideoSourceMode", "none"),
        ]


class Switch:
    """Owns the live channels and emits their events through `sink`.

    `hints` maps a hint extension (context `hints`) to its device, for
    `ExtensionStatus`.
    """

    def __init__(self, sink: EventSink, hints: dict[str, str], epoch: float | None = None) -> None:
        self._sink = sink
        self._hints = hints
        self._epoch = int(epoch if epoch is not None else time.time())
        self._next_id = 0
        self._next_local = 0
        self._next_bridge = 0
        self.channels: dict[str, Channel] = {}
        self.bridges: dict[str, Bridge] = {}  # live ones, for BridgeList
        self.globals: dict[str, str] = {}
        self._hint_state: dict[str, int] = dict.fromkeys(hints, 0)
        # Indexes that keep a device change O(its own channels and hints):
        # with a thousand agents a scan of every channel or hint per
        # Newstate makes the event loop fall behind at speed > 1.
        self._on_device: dict[str, set[Channel]] = {}
        self._hints_of: dict[str, list[str]] = {}
        for exten, device in hints.items():
            self._hints_of.setdefault(device, []).append(exten)

    # ------------------------------------------------------------ identities
    def new_uniqueid(self) -> str:
        # Uniqueid is `<epoch>.<n>`, n counting every channel since start.
        value = f"{int(time.time())}.{self._next_id}"
        self._next_id += 1
        return value

    def emit(self, event: str, privilege: str, pairs: Pairs) -> None:
        self._sink(event, privilege, pairs)

    def find(self, name: str) -> Channel | None:
        return self.channels.get(name)

    def of_device(self, device: str) -> list[Channel]:
        """The live channels of a device (`Local/1005@sim-agent`), oldest first."""
        return sorted(self._on_device.get(device, ()), key=lambda chan: chan.created)

    # ------------------------------------------------------------ channels
    def local_pair(
        self,
        exten: str,
        context: str,
        linkedid: str | None = None,
        ids: tuple[str | None, str | None] = (None, None),
    ) -> tuple[Channel, Channel]:
        """A Local channel pair `Local/<exten>@<context>-<8 hex>;1/;2`
        (Newchannel ;1 Down, Newchannel ;2 Ring, as in every recording)."""
        base = f"Local/{exten}@{context}"
        suffix = f"{self._next_local:08x}"
        self._next_local += 1
        one_id = ids[0] or self.new_uniqueid()
        two_id = ids[1] or self.new_uniqueid()
        linked = linkedid or one_id
        one = Channel(f"{base}-{suffix};1", one_id, linked, base, context, exten)
        two = Channel(
            f"{base}-{suffix};2", two_id, linked, base, context, exten, state=State.RING, half=2
        )
        one.partner, two.partner = two, one
        for chan in (one, two):
            self.channels[chan.name] = chan
            self._on_device.setdefault(base, set()).add(chan)
            self.emit("Newchannel", "call", chan.fields())
        return one, two

    def set_state(self, chan: Channel, state: State) -> None:
        if chan.state == state or not chan.alive:
            return
        chan.state = state
        self.emit("Newstate", "call", chan.fields())
        self.device_changed(chan.device)

    def set_var(self, chan: Channel, name: str, value: str) -> None:
        chan.variables[name] = value
        self.emit("VarSet", "dialplan", [*chan.fields(), ("Variable", name), ("Value", value)])

    def set_global(self, name: str, value: str) -> None:
        self.globals[name] = value
        self.emit(
            "VarSet",
            "dialplan",
            [("Channel", "none"), ("Uniqueid", "none"), ("Variable", name), ("Value", value)],
        )

    def newexten(self, chan: Channel, app: str, data: str) -> None:
        """Newexten is published when the dialplan location changes (the
        channel snapshot rule): a redirected bridged channel shows its new
        location with the old application (recording 06a) and the first
        priority there then publishes nothing."""
        chan.application, chan.app_data = app, data
        where = (chan.context, chan.exten, chan.priority)
        if where == chan.published:
            return
        chan.published = where
        self.emit(
            "Newexten",
            "dialplan",
            [*chan.fields(), ("Extension", chan.exten), ("Application", app), ("AppData", data)],
        )

    def set_callerid(self, chan: Channel, num: str, name: str, conn: tuple[str, str]) -> None:
        chan.cid_num, chan.cid_name = num, name
        self.emit(
            "NewCallerid",
            "call",
            [*chan.fields(), ("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")],
        )
        chan.conn_num, chan.conn_name = conn
        self.emit("NewConnectedLine", "call", chan.fields())

    def local_bridge(self, one: Channel, two: Channel) -> None:
        self.emit(
            "LocalBridge",
            "call",
            [
                *one.fields("LocalOne"),
                *two.fields("LocalTwo"),
                ("Context", two.context),
                ("Exten", two.exten),
                ("LocalOptimization", "Yes"),
            ],
        )

    def dial_event(
        self, event: str, caller: Channel | None, dest: Channel, tail: Pairs
    ) -> None:
        head = caller.fields() if caller is not None else []
        self.emit(event, "call", [*head, *dest.fields("Dest"), *tail])

    def indicate(self, chan: Channel, control: str) -> None:
        """A Local ;2 indication (ringing/answer/busy/congestion) reaches ;1."""
        partner = chan.partner
        if chan.half != 2 or partner is None or not partner.alive:
            return
        if control == "ringing":
            self.set_state(partner, State.RINGING)
        elif control == "answer":
            self.set_state(partner, State.UP)
        partner.controls.append(control)
        partner.poke()

    # ------------------------------------------------------------ hangups
    def soft_hangup(self, chan: Channel) -> None:
        """SoftHangupRequest: the channel's own PBX thread ends (Hangup()
        app, or the PBX noticing a queued hangup). Cause is always 16 in
        the recordings, whatever the hangup cause (03, 07, 09)."""
        if chan.soft_hangup_sent:
            return
        chan.soft_hangup_sent = True
        self.emit("SoftHangupRequest", "call", [*chan.fields(), ("Cause", "16")])

    def request_hangup(self, chan: Channel, cause: int) -> None:
        """A hangup queued on `chan` by its Local partner (HangupRequest)."""
        if not chan.alive or chan.hangup_requested:
            return
        chan.hangup_requested = True
        if chan.hangupcause == 0:
            chan.hangupcause = cause
        self.emit("HangupRequest", "call", [*chan.fields(), ("Cause", str(cause))])
        chan.poke()

    def ami_hangup(self, chan: Channel, cause: int | None) -> None:
        """AMI Hangup: flags the channel; its thread reports it (no event
        here, the SoftHangupRequest comes when the PBX ends, recording 06a)."""
        if cause is not None:
            chan.hangupcause = cause
        chan.hangup_requested = True
        chan.poke()

    def hangup(self, chan: Channel, device_state: str | None = None) -> None:
        """ast_hangup: the Local driver queues a hangup on the partner
        (HangupRequest) before the Hangup of this half (finding 18)."""
        if not chan.alive:
            return
        partner = chan.partner
        if partner is not None and partner.alive:
            self.request_hangup(partner, chan.hangupcause)
        cause = chan.hangupcause
        if chan.caller_update is not None:
            chan.cid_num, chan.cid_name = chan.caller_update
        self.emit(
            "Hangup",
            "call",
            [*chan.fields(), ("Cause", str(cause)),
             ("Cause-txt", CAUSE_TEXT.get(cause, "Unknown"))],
        )
        if chan.caller_update is not None:
            self.emit("NewCallerid", "call", [*chan.fields(), presentation(chan.cid_num)])
        chan.alive = False
        self.channels.pop(chan.name, None)
        on_device = self._on_device.get(chan.device)
        if on_device is not None:
            on_device.discard(chan)
            if not on_device:
                del self._on_device[chan.device]
        self.device_changed(chan.device, device_state)

    # ------------------------------------------------------------ bridges
    def bridge_create(self) -> Bridge:
        self._next_bridge += 1
        bridge = Bridge(f"{self._epoch:08x}-sim0-4000-8000-{self._next_bridge:012x}")
        self.bridges[bridge.uniqueid] = bridge
        self.emit("BridgeCreate", "call", bridge.fields())
        return bridge

    def bridge_enter(self, bridge: Bridge, chan: Channel) -> None:
        bridge.members.append(chan)
        chan.bridge = bridge
        self.emit("BridgeEnter", "call", [*bridge.fields(), *chan.fields()])

    def bridge_leave(self, chan: Channel) -> None:
        bridge = chan.bridge
        if bridge is None:
            return
        bridge.members.remove(chan)
        chan.bridge = None
        self.emit("BridgeLeave", "call", [*bridge.fields(), *chan.fields()])

    def bridge_destroy(self, bridge: Bridge) -> None:
        self.bridges.pop(bridge.uniqueid, None)
        self.emit("BridgeDestroy", "call", bridge.fields())

    def bridge_peers(self, bridge: Bridge, members: Iterable[Channel]) -> None:
        """BRIDGEPEER on each member (set to the other member's name)."""
        for chan in members:
            others = [m.name for m in bridge.members if m is not chan]
            self.set_var(chan, "BRIDGEPEER", ",".join(others))

    # ------------------------------------------------------------ devices
    def device_state(self, device: str) -> str:
        # A Local device is in use while one of its pairs has both halves up
        # and no hangup pending (core_local.c checks the ;1 owner).
        for chan in self._on_device.get(device, ()):
            partner = chan.partner
            if (
                chan.half == 1
                and partner is not None
                and partner.alive
                and not chan.hangup_requested
                and not partner.hangup_requested
            ):
                return "INUSE"
        return "NOT_INUSE"

    def device_changed(self, device: str, state: str | None = None) -> None:
        value = state or self.device_state(device)
        self.emit("DeviceStateChange", "call", [("Device", device), ("State", value)])
        for exten in self._hints_of.get(device, ()):
            status = 1 if value == "INUSE" else 0
            if status != self._hint_state[exten]:
                self._hint_state[exten] = status
                self.emit(
                    "ExtensionStatus",
                    "call",
                    [
                        ("Exten", exten),
                        ("Context", "hints"),
                        ("Hint", device),
                        ("Status", str(status)),
                        ("StatusText", "InUse" if status else "Idle"),
                    ],
                )

    def hinted(self) -> dict[str, str]:
        return dict(self._hints)

    def devices(self) -> set[str]:
        """Devices with a live channel or a hint (DeviceStateList)."""
        return set(self._on_device) | set(self._hints_of)

    def hint_status(self, exten: str) -> int | None:
        return self._hint_state.get(exten)

    async def wait_any(self, chans: Iterable[Channel], seconds: float | None) -> None:
        """Sleep until one of `chans` is poked or `seconds` (real) elapse."""
        waiter = asyncio.Event()
        members = list(chans)
        for chan in members:
            chan.waiters.add(waiter)
        try:
            if seconds is None:
                await waiter.wait()
            elif seconds > 0:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for
                # swallows a cancel that lands as the waiter is set, and the
                # channel would then sit out its whole MusicOnHold on close.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(seconds):
                        await waiter.wait()
        finally:
            for chan in members:
                chan.waiters.discard(waiter)
