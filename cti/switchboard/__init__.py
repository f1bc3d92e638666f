"""The routing shell: the IO around the pure router.

It owns the live agents and waiting tasks, turns the tracker's call changes
into tasks, offers each to the agent the router chooses (reserved in Redis,
the call moved into `cti-connect`) and follows it to its end; it runs the
agents' requests and their actions on a call; and it routes work with no
call yet (a callback), placing that call once an agent is reserved for it.

    events.py        what it tells listeners and features (the dataclasses)
    state.py         the state every part shares, and the bookkeeping on it
    core.py          `Switchboard`: events in, offers, ring-no-answer, timers
    detached.py      tasks without a call: submit, originate, follow
    call_actions.py  an agent's transfer, escalation and hang-up; pins

This module only re-exports the public face.
"""

from cti.switchboard.core import Switchboard
from cti.switchboard.events import (
    AgentChanged,
    CallFinished,
    CallHandedOver,
    CallHeld,
    DetachedResult,
    Listener,
    OnOffer,
    OnResult,
    Origination,
    QueueRing,
    SwitchboardEvent,
    TaskInfo,
    TaskOffered,
    TaskQueued,
)
from cti.switchboard.state import NO_ANSWER_STATUSES, Clock, Send, VipLookup

__all__ = [
    "NO_ANSWER_STATUSES",
    "AgentChanged",
    "CallFinished",
    "CallHandedOver",
    "CallHeld",
    "Clock",
    "DetachedResult",
    "Listener",
    "OnOffer",
    "OnResult",
    "Origination",
    "QueueRing",
    "Send",
    "Switchboard",
    "SwitchboardEvent",
    "TaskInfo",
    "TaskOffered",
    "TaskQueued",
    "VipLookup",
]
