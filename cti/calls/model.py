"""The call model the tracker keeps: channels, calls, their states and the
record of a call that ended.

Plain mutable dataclasses inside the tracker; frozen views (`CallRecord`)
and changes leave it. No IO here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum

# Asterisk names a channel `<tech>/<resource>-<8 hex digits>`, Local
# channels add `;1` / `;2` for the two halves.
_CHANNEL_SUFFIX = re.compile(r"-[0-9a-f]{8}(;[12])?$")

CHANNEL_UP = 6


def interface_of(channel_name: str) -> str:
    """The interface a channel was dialled as: `Local/1001@sim-agent-0000000a;1`
    becomes `Local/1001@sim-agent`, `PJSIP/1001-0000001f` becomes `PJSIP/1001`."""
    return _CHANNEL_SUFFIX.sub("", channel_name)


def local_half(channel_name: str) -> int | None:
    if channel_name.startswith("Local/") and channel_name[-2:] in (";1", ";2"):
        return int(channel_name[-1])
    return None


class CallState(Enum):
    RINGING = "ringing"
    IN_IVR = "in_ivr"
    WAITING = "waiting"
    CONNECTING = "connecting"
    TALKING = "talking"
    ON_HOLD = "on_hold"
    ENDED = "ended"


class Outcome(Enum):
    ANSWERED = "answered"
    ABANDONED = "abandoned"
    UNANSWERED = "unanswered"
    FAILED = "failed"


class Direction(Enum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    CALLBACK = "callback"


@dataclass(slots=True)
class Channel:
    uniqueid: str
    call: str
    name: str
    state: int
    caller_number: str | None
    caller_name: str | None
    context: str
    exten: str
    created_at: float
    last_seen: float
    ever_up: bool = False
    peer: str | None = None  # the other half of a Local channel
    bridge: str | None = None
    bridged_seq: int = 0  # order of entry into its current bridge
    on_hold: bool = False
    moh: bool = False


@dataclass(slots=True)
class Call:
    id: str
    started_at: float
    state: CallState = CallState.RINGING
    direction: Direction = Direction.INBOUND
    origin: str | None = None  # uniqueid of the channel that started the call
    customer: str | None = None  # the customer's channel (the origin, unless a callback)
    agent_leg: str | None = None  # an agent-first callback's originated agent channel
    originated: bool = False
    origin_up: bool = False  # the originating channel was answered (Up)
    originate_failed: bool = False
    caller_number: str | None = None
    caller_name: str | None = None
    did: str | None = None
    service: str | None = None
    queue: str | None = None
    ringing_agent: str | None = None
    wait_started_at: float | None = None
    bridged_at: float | None = None
    agent: str | None = None
    transfers: int = 0
    customer_hungup_at: float | None = None
    first_request: tuple[str, bool] | None = None  # (uniqueid, soft) on the customer side
    variables: dict[str, str] = field(default_factory=dict)
    channels: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class CallRecord:
    """What is known of a call when it ended (for the replay, history, KPIs)."""

    call: str
    direction: Direction
    caller_number: str | None
    caller_name: str | None
    did: str | None
    service: str | None
    outcome: Outcome
    agent: str | None
    wait_ms: int | None
    talk_ms: int | None
    transfers: int
    started_at: float
    ended_at: float
    hung_up_by_caller: bool


@dataclass(frozen=True, slots=True)
class CallStarted:
    at: float
    call: str


@dataclass(frozen=True, slots=True)
class CallStateChanged:
    at: float
    call: str
    previous: CallState
    state: CallState
    agent: str | None


@dataclass(frozen=True, slots=True)
class CallAgentChanged:
    """The caller is bridged with another agent than before: a transfer,
    blind or attended (recording 06), or the next agent after a transfer to
    a service. `previous` and `agent` are interfaces (`interface_of`)."""

    at: float
    call: str
    previous: str
    agent: str


@dataclass(frozen=True, slots=True)
class CallEnded:
    at: float
    record: CallRecord


CallChange = CallStarted | CallStateChanged | CallAgentChanged | CallEnded
