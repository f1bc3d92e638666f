"""Routing: the pure core that pairs waiting tasks (calls, callbacks, preview
calls) with agents by skills, priority with aging, relaxation, overflow and
sticky agents, tasks pinned to one agent (transfers), and explains each
choice; plus the incremental index the routing shell keeps for
sub-millisecond decisions."""

from cti.routing.agents import Agent, AgentState
from cti.routing.errors import (
    AgentNotAvailable,
    CallRefused,
    HangupFailed,
    IllegalTransition,
    InvalidPolicy,
    NotAgentsCall,
    RoutingError,
    TransferFailed,
    TransferRefused,
    TransferToSelf,
    UnknownAgent,
    UnknownCall,
    UnknownPriorityClass,
    UnknownService,
)
from cti.routing.index import RoutingIndex
from cti.routing.models import (
    AnyLevel,
    Assignment,
    LowerLevel,
    Overflow,
    Pin,
    Relaxation,
    RingNoAnswer,
    Service,
    ServiceLevel,
    Task,
    TaskKind,
)
from cti.routing.policy import (
    DEFAULT_CLASSES,
    AgentChoice,
    Policy,
    PriorityClass,
    effective_priority,
    pinned_agent,
)
from cti.routing.router import assign, due_wrapups, next_wakeup, wrap_up_end

__all__ = [
    "DEFAULT_CLASSES",
    "Agent",
    "AgentChoice",
    "AgentNotAvailable",
    "AgentState",
    "AnyLevel",
    "Assignment",
    "CallRefused",
    "HangupFailed",
    "IllegalTransition",
    "InvalidPolicy",
    "LowerLevel",
    "NotAgentsCall",
    "Overflow",
    "Pin",
    "Policy",
    "PriorityClass",
    "Relaxation",
    "RingNoAnswer",
    "RoutingError",
    "RoutingIndex",
    "Service",
    "ServiceLevel",
    "Task",
    "TaskKind",
    "TransferFailed",
    "TransferRefused",
    "TransferToSelf",
    "UnknownAgent",
    "UnknownCall",
    "UnknownPriorityClass",
    "UnknownService",
    "assign",
    "due_wrapups",
    "effective_priority",
    "next_wakeup",
    "pinned_agent",
    "wrap_up_end",
]
