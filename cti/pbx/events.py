"""Typed PBX events: what Asterisk told us, in domain words.

Only `cti.pbx.translate` builds these from AMI messages; everything else
(tracker, router, web) reads these and never an AMI field name. Every event
carries `at`, the time in seconds it was received (the recording's clock in
a replay), so the consumers never read a clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

UniqueId = str
LinkedId = str


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    """The identity part of a channel, as every channel event repeats it."""

    uniqueid: UniqueId
    linkedid: LinkedId
    name: str
    state: int
    caller_number: str | None
    caller_name: str | None
    context: str
    exten: str


@dataclass(frozen=True, slots=True)
class ChannelCreated:
    at: float
    channel: ChannelInfo


@dataclass(frozen=True, slots=True)
class ChannelStateChanged:
    at: float
    channel: ChannelInfo


@dataclass(frozen=True, slots=True)
class CallerIdChanged:
    at: float
    channel: ChannelInfo


@dataclass(frozen=True, slots=True)
class DialplanEntered:
    """The channel runs a new dialplan step (Newexten)."""

    at: float
    channel: ChannelInfo
    priority: int
    application: str
    app_data: str


@dataclass(frozen=True, slots=True)
class VariableSet:
    """A CTI-relevant channel variable was set (others are not translated)."""

    at: float
    channel: ChannelInfo
    variable: str
    value: str


@dataclass(frozen=True, slots=True)
class HangupRequested:
    """A hang-up was asked for a channel. `soft` is Asterisk's
    SoftHangupRequest (AMI Hangup, dialplan Hangup()); the other kind is a
    hang-up queued from the far side (a remote BYE, a Local peer)."""

    at: float
    channel: ChannelInfo
    cause: int
    soft: bool


@dataclass(frozen=True, slots=True)
class ChannelHungUp:
    at: float
    channel: ChannelInfo
    cause: int


@dataclass(frozen=True, slots=True)
class LocalPaired:
    """The two halves of a Local channel (`;1` and `;2`)."""

    at: float
    one: ChannelInfo
    two: ChannelInfo


@dataclass(frozen=True, slots=True)
class LocalOptimized:
    """A Local pair was optimised away: `replacement` took the place of
    `half` (LocalOptimizationEnd); the call keeps the dialled identity."""

    at: float
    half: UniqueId
    replacement: UniqueId | None


@dataclass(frozen=True, slots=True)
class DialStarted:
    at: float
    caller: ChannelInfo | None
    dest: ChannelInfo
    dial_string: str


@dataclass(frozen=True, slots=True)
class DialEnded:
    at: float
    caller: ChannelInfo | None
    dest: ChannelInfo
    status: str


@dataclass(frozen=True, slots=True)
class BridgeEntered:
    at: float
    bridge: str
    channel: ChannelInfo


@dataclass(frozen=True, slots=True)
class BridgeLeft:
    at: float
    bridge: str
    channel: ChannelInfo


@dataclass(frozen=True, slots=True)
class HoldChanged:
    """A party put the call on hold (or took it off)."""

    at: float
    channel: ChannelInfo
    on_hold: bool


@dataclass(frozen=True, slots=True)
class MusicOnHoldChanged:
    at: float
    channel: ChannelInfo
    playing: bool


@dataclass(frozen=True, slots=True)
class TransferDone:
    """Asterisk reports a transfer (AttendedTransfer / BlindTransfer)."""

    at: float
    kind: str  # "attended" | "blind"
    success: bool
    transferer: UniqueId | None


class DialplanStepKind(Enum):
    """The steps the `cti-*` contexts of dialplans/cti.conf announce."""

    QUEUED = "CTIQueued"                      # the caller is queued for a service
    RING_NO_ANSWER = "CTIRona"                # cti-connect's Dial failed
    CALLBACK_DIALING = "CTICallbackDialing"   # the agent answered; customer dialled
    CALLBACK_RESULT = "CTICallbackResult"     # the customer leg's Dial ended
    CALLBACK_ANSWERED = "CTICallbackAnswered"  # customer-first: the customer answered


@dataclass(frozen=True, slots=True)
class DialplanStep:
    """A `cti-*` step, its fields read once here: the agent extension, the
    service, the Dial status (upper case, "" when none) and the callback id."""

    at: float
    kind: DialplanStepKind
    channel: ChannelInfo | None
    agent: str | None = None
    service: str | None = None
    dial_status: str = ""
    callback: str | None = None


@dataclass(frozen=True, slots=True)
class UserEventReceived:
    """Any other dialplan UserEvent."""

    at: float
    name: str
    channel: ChannelInfo | None
    fields: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class AgiStep:
    """One AGI command ran on a channel (AGIExecStart)."""

    at: float
    channel: ChannelInfo
    command: str


@dataclass(frozen=True, slots=True)
class OriginateResult:
    """Outcome of an asynchronous Originate, correlated by action id.

    `reason` is Asterisk's originate reason: 4 answered, 5 busy, 3 no
    answer, 8 congestion, 0 no such extension or failure. A failed originate
    names the dial string (not a channel) and has no unique id.
    """

    at: float
    action_id: str | None
    success: bool
    reason: int
    uniqueid: UniqueId | None
    channel: str


@dataclass(frozen=True, slots=True)
class QueueCallerJoined:
    at: float
    queue: str
    channel: ChannelInfo
    position: int
    count: int


@dataclass(frozen=True, slots=True)
class QueueCallerLeft:
    at: float
    queue: str
    channel: ChannelInfo
    abandoned: bool
    position: int
    hold_seconds: int | None


class QueueAgentKind(Enum):
    """Which app_queue member event: AgentCalled, AgentConnect, AgentComplete,
    AgentRingNoAnswer, AgentDump."""

    CALLED = "called"
    CONNECTED = "connected"
    COMPLETED = "completed"
    RING_NO_ANSWER = "ring_no_answer"
    DUMPED = "dumped"


@dataclass(frozen=True, slots=True)
class QueueAgentEvent:
    """app_queue's view of a member leg: called, connected, completed,
    ring-no-answer or dumped. Times are normalised to milliseconds (Asterisk
    gives AgentRingNoAnswer RingTime in ms and the others in seconds)."""

    at: float
    kind: QueueAgentKind
    queue: str
    interface: str
    member_name: str
    caller: UniqueId | None
    dest: UniqueId | None
    ring_ms: int | None
    hold_ms: int | None
    talk_ms: int | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class QueueMemberChanged:
    at: float
    queue: str
    interface: str
    member_name: str
    status: int
    paused: bool
    pause_reason: str
    penalty: int
    in_call: bool
    removed: bool


@dataclass(frozen=True, slots=True)
class DeviceStateChanged:
    at: float
    device: str
    state: str

    @property
    def engaged(self) -> bool:
        """The device is on a call or ringing (Asterisk's INUSE, BUSY,
        RINGING, RINGINUSE, ONHOLD); NOT_INUSE, UNAVAILABLE, UNKNOWN,
        INVALID are not."""
        return self.state.upper() in _ENGAGED_DEVICE_STATES


_ENGAGED_DEVICE_STATES = frozenset({"INUSE", "BUSY", "RINGING", "RINGINUSE", "ONHOLD"})


@dataclass(frozen=True, slots=True)
class ExtensionStateChanged:
    at: float
    exten: str
    context: str
    hint: str
    status: int
    status_text: str


@dataclass(frozen=True, slots=True)
class PbxBooted:
    """FullyBooted: sent to a session after login and after a (re)start."""

    at: float
    uptime: int | None


@dataclass(frozen=True, slots=True)
class PbxShuttingDown:
    at: float
    restart: bool


@dataclass(frozen=True, slots=True)
class ChannelSnapshot:
    """One channel as described by a CoreShowChannels/Status list item."""

    channel: ChannelInfo
    bridge: str | None
    application: str
    seconds_up: int | None


@dataclass(frozen=True, slots=True)
class ChannelsSnapshot:
    """The complete list of live channels (resync after (re)connect).

    `started_at` is when the list was asked for: a channel the tracker saw
    after that may legitimately be missing from the list.
    """

    at: float
    started_at: float
    channels: tuple[ChannelSnapshot, ...]


@dataclass(frozen=True, slots=True)
class QueueMembersSnapshot:
    at: float
    members: tuple[QueueMemberChanged, ...]
    queues: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class DeviceStatesSnapshot:
    at: float
    devices: tuple[DeviceStateChanged, ...]


PbxEvent = (
    ChannelCreated
    | ChannelStateChanged
    | CallerIdChanged
    | DialplanEntered
    | VariableSet
    | HangupRequested
    | ChannelHungUp
    | LocalPaired
    | LocalOptimized
    | DialStarted
    | DialEnded
    | BridgeEntered
    | BridgeLeft
    | HoldChanged
    | MusicOnHoldChanged
    | TransferDone
    | DialplanStep
    | UserEventReceived
    | AgiStep
    | OriginateResult
    | QueueCallerJoined
    | QueueCallerLeft
    | QueueAgentEvent
    | QueueMemberChanged
    | DeviceStateChanged
    | ExtensionStateChanged
    | PbxBooted
    | PbxShuttingDown
    | ChannelsSnapshot
    | QueueMembersSnapshot
    | DeviceStatesSnapshot
)
