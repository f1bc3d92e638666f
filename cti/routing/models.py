"""The routing vocabulary besides agents: tasks (any routed unit of work),
services with their relaxation steps, and the explained `Assignment` the
router returns. Plain immutable values; no behaviour beyond validation."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType

from cti.routing.agents import frozen_levels


class TaskKind(Enum):
    INBOUND_CALL = "inbound_call"
    CALLBACK = "callback"
    OUTBOUND_PREVIEW = "outbound_preview"


@dataclass(frozen=True, slots=True)
class RingNoAnswer:
    """An agent was offered the task at `at` and did not answer."""

    agent: str
    at: float


@dataclass(frozen=True, slots=True)
class Pin:
    """A task held for one agent: a caller an agent (`by`) transferred to a
    named colleague waits for that colleague alone from `since` until
    `until`, unless the colleague lets it ring out in that time; then it is
    routed as any task of its service again, with its place kept."""

    agent: str
    by: str
    since: float
    until: float


@dataclass(frozen=True, slots=True)
class Task:
    """A piece of work waiting for an agent.

    `enqueued_at` is the original enqueue time: a "keep my place" callback
    keeps the time of the call it replaces, so it keeps its rank and its
    relaxation progress. `skills` are requirements on top of the service's
    (e.g. the language chosen in the IVR); the stricter level wins.
    `priority` names a priority class of the policy; None takes the policy's
    default for the task's kind. `preferred_agent` is the sticky agent, who
    last served this customer: the shell resolves it from the customer's
    contact history when it creates the task, so the router stays pure.
    `pin` holds the task for one agent (a transfer to a named agent).
    """

    id: str
    service: str
    enqueued_at: float
    kind: TaskKind = TaskKind.INBOUND_CALL
    priority: str | None = None
    skills: Mapping[str, int] = field(default_factory=dict)
    customer: str | None = None
    preferred_agent: str | None = None
    no_answers: tuple[RingNoAnswer, ...] = ()
    pin: Pin | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "skills", frozen_levels(self.skills, f"task {self.id}"))
        if self.pin is not None and self.pin.until < self.pin.since:
            raise ValueError(f"task {self.id}: pinned until {self.pin.until}"
                             f" before {self.pin.since}")

    @property
    def attempts(self) -> int:
        return len(self.no_answers)

    def with_no_answer(self, agent: str, at: float) -> Task:
        """The task back in the queue after `agent` let it ring out."""
        return dataclasses.replace(self, no_answers=(*self.no_answers, RingNoAnswer(agent, at)))


@dataclass(frozen=True, slots=True)
class ServiceLevel:
    """`percent` of offered tasks answered within `seconds` (80% in 20 s)."""

    percent: float = 80.0
    seconds: float = 20.0


@dataclass(frozen=True, slots=True)
class LowerLevel:
    """After `after` seconds of waiting, accept `level` or more for `skill`."""

    after: float
    skill: str
    level: int

    def describe(self) -> str:
        return f"{self.skill}>={self.level} after {self.after:g}s"


@dataclass(frozen=True, slots=True)
class AnyLevel:
    """After `after` seconds of waiting, accept any level of `skill` (the
    agent must still have the skill)."""

    after: float
    skill: str

    def describe(self) -> str:
        return f"{self.skill} at any level after {self.after:g}s"


@dataclass(frozen=True, slots=True)
class Overflow:
    """After `after` seconds of waiting, the task is also eligible for the
    agents of `service` (qualified for that service's required skills and
    the task's own extra skills)."""

    after: float
    service: str


Relaxation = LowerLevel | AnyLevel | Overflow


@dataclass(frozen=True, slots=True)
class Service:
    """A service (queue): what its tasks require and how long they wait
    before the requirements relax.

    `numbers` are the DNIS numbers and IVR exits that lead to it.
    `priority_weight` is added to the base priority of every task of the
    service (a sales line can weigh more than a survey line).
    `sticky_seconds`: how long after enqueue a task waits for its preferred
    agent when that agent is logged in and busy (0: no sticky routing).
    """

    name: str
    skills: Mapping[str, int] = field(default_factory=dict)
    numbers: tuple[str, ...] = ()
    target: ServiceLevel = ServiceLevel()
    wrap_up_seconds: float = 10.0
    ring_timeout_seconds: float = 15.0
    relaxation: tuple[Relaxation, ...] = ()
    priority_weight: float = 0.0
    sticky_seconds: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "skills", frozen_levels(self.skills, f"service {self.name}"))
        for step in self.relaxation:
            if step.after < 0:
                raise ValueError(f"service {self.name}: relaxation after {step.after} < 0")
            if isinstance(step, LowerLevel):
                frozen_levels({step.skill: step.level}, f"service {self.name} relaxation")


@dataclass(frozen=True, slots=True)
class Assignment:
    """One routing decision, explained.

    `rule` is what chose the agent: the strategy name (e.g. "best-skill-level
    then longest-idle"), "sticky-agent", "relaxed: billing>=5 after 30s" or
    "overflow from sales to support after 120s". `passed_over` lists the
    runners-up in rank order and free agents that rang no answer on this
    task, each with the reason it was not chosen: worded when read (a log
    line, a supervisor's "why"), not while the decision is made.
    """

    task_id: str
    agent_id: str
    rule: str
    effective_priority: float
    waited_seconds: float
    why: Callable[[], tuple[tuple[str, str], ...]] = field(
        default=lambda: (), compare=False, repr=False)

    @property
    def passed_over(self) -> tuple[tuple[str, str], ...]:
        return self.why()


EMPTY_LEVELS: Mapping[str, int] = MappingProxyType({})
