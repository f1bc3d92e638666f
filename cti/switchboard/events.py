"""What the switchboard tells its listeners and its features: the events it
emits (an agent's change, a task queued or offered, a call held, handed
over or finished, Asterisk's own queue ringing an agent), the task facts it
keeps beside the router's view (`TaskInfo`), and the contract of a detached
task's feature (`Origination`, `DetachedResult`, `OnOffer`, `OnResult`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from cti.calls.model import CallEnded
from cti.pbx.commands import Originate
from cti.routing import Agent, Assignment, Task


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """What the shell knows of a task besides the router's view."""

    task: Task
    vip: bool
    customer: str | None


@dataclass(frozen=True, slots=True)
class AgentChanged:
    agent: Agent


@dataclass(frozen=True, slots=True)
class TaskQueued:
    info: TaskInfo
    call: str


@dataclass(frozen=True, slots=True)
class TaskOffered:
    assignment: Assignment
    info: TaskInfo
    call: str


@dataclass(frozen=True, slots=True)
class CallFinished:
    """A routed call ended: its record and how it was classified."""

    event: CallEnded
    info: TaskInfo | None


@dataclass(frozen=True, slots=True)
class DetachedResult:
    """How the call of a task submitted without a call ended (a callback):
    `dial_status` is the customer leg's DIALSTATUS (ANSWER, BUSY, NOANSWER,
    CONGESTION, CHANUNAVAIL...; UNALLOCATED for a number the network does
    not know; ORIGINATE when the Originate was refused), "" when nothing
    says (the agent hung up before it ended). `requeued`: customer-first,
    the customer answered but the reserved agent did not, and the call
    now waits for another agent (the call id is its task id)."""

    task_id: str
    agent_id: str
    call_id: str
    dial_status: str
    at: float
    requeued: bool = False


@dataclass(frozen=True, slots=True)
class Origination:
    """The call a detached task's feature wants placed once an agent is
    reserved: the Originate (its ChannelId is the call id: the channel is
    the first of its call, so it is the Linkedid) and whether it rings the
    customer first (`cti-callback-customer`) or the agent (`cti-callback`)."""

    originate: Originate
    customer_first: bool = False

    def __post_init__(self) -> None:
        if self.originate.channel_id is None:
            raise ValueError("a detached task's Originate needs a ChannelId")

    @property
    def call_id(self) -> str:
        assert self.originate.channel_id is not None
        return self.originate.channel_id


# The feature behind a detached task: `OnOffer` says which call to place
# for the reserved agent (the switchboard originates it), or None to
# withdraw the task; `OnResult` hears the outcome.
OnOffer = Callable[[Agent, Task], Awaitable[Origination | None]]
OnResult = Callable[[DetachedResult], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class QueueRing:
    """Asterisk's own queue (app_queue, any strategy: ringall rings several
    agents at once) rang an agent for a call, the agent answered it, or
    their phone stopped ringing. The switchboard does not route these
    calls; the desk follows them."""

    call: str
    agent_id: str
    queue: str
    kind: Literal["ringing", "answered", "stopped"]
    at: float


@dataclass(frozen=True, slots=True)
class CallHeld:
    """The agent talking with a routed caller put them on hold (`on_hold`)
    or took them back: the tracker's ON_HOLD state (Hold / Unhold, music on
    hold for the bridged caller)."""

    call: str
    agent_id: str
    on_hold: bool
    at: float


@dataclass(frozen=True, slots=True)
class CallHandedOver:
    """A routed caller now talks with another agent of the center than the
    one the switchboard connected: a transfer done on the phone (attended,
    Atxfer as in recording 06, or blind). `from_agent`'s part of the call
    is over (wrap-up); `to_agent` holds the call now, or None when that
    colleague cannot hold it here (logged out, or on another call)."""

    call: str
    info: TaskInfo
    from_agent: str
    to_agent: str | None
    at: float


SwitchboardEvent = (AgentChanged | TaskQueued | TaskOffered | CallFinished | CallHeld
                    | CallHandedOver | QueueRing)
Listener = Callable[[SwitchboardEvent], None]
