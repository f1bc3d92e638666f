"""The routing policy and the pure rules that read it: effective priority
with aging, the skill requirements of a task at a given time (relaxation and
overflow, as ordered tiers), agent ranking keys, ring-no-answer exclusion
and the sticky-agent window."""

from __future__ import annotations

from collections.abc import Container, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType

from cti.routing.agents import BUSY_STATES, Agent, AgentState
from cti.routing.errors import InvalidPolicy, UnknownPriorityClass, UnknownService
from cti.routing.models import (
    AnyLevel,
    LowerLevel,
    Overflow,
    Relaxation,
    RingNoAnswer,
    Service,
    Task,
    TaskKind,
)


class AgentChoice(Enum):
    """How the router picks among qualified free agents of the same tier.

    BEST_SKILL_THEN_LONGEST_IDLE scores an agent by the SUM of their levels on
    the skills the task requires: the sum rewards being good at everything
    the task needs, where the max would send a two-skill task to a one-skill
    specialist. Ties go to the agent idle longest, then to the agent id.
    """

    BEST_SKILL_THEN_LONGEST_IDLE = "best-skill-level then longest-idle"
    LONGEST_IDLE = "longest-idle"


@dataclass(frozen=True, slots=True)
class PriorityClass:
    """effective priority = base + service weight + aging_per_second * waited."""

    base: float
    aging_per_second: float


# Every class ages at the same rate, so the bases are head starts measured in
# seconds of waiting: a VIP is served before standard calls that arrived up
# to 90 s before it, and a standard call that waited 3 minutes outranks a VIP
# who just arrived. Callbacks keep their original enqueue time and have no
# head start: below live VIP calls, level with the standard calls of their
# era. Preview dials only fill time nobody else needs for ten minutes.
DEFAULT_CLASSES: Mapping[str, PriorityClass] = MappingProxyType({
    "vip": PriorityClass(base=90.0, aging_per_second=1.0),
    "standard": PriorityClass(base=0.0, aging_per_second=1.0),
    "callback": PriorityClass(base=0.0, aging_per_second=1.0),
    "preview": PriorityClass(base=-600.0, aging_per_second=1.0),
})

DEFAULT_KIND_PRIORITY: Mapping[TaskKind, str] = MappingProxyType({
    TaskKind.INBOUND_CALL: "standard",
    TaskKind.CALLBACK: "callback",
    TaskKind.OUTBOUND_PREVIEW: "preview",
})


@dataclass(frozen=True, slots=True)
class Policy:
    """Everything a routing decision reads besides tasks, agents and time.

    `no_answer_retry_seconds`: an agent who let a task ring out is not
    offered that task again before this many seconds. `explain_limit`: how
    many runners-up an Assignment lists.
    """

    services: Mapping[str, Service]
    classes: Mapping[str, PriorityClass] = field(default_factory=lambda: DEFAULT_CLASSES)
    kind_priority: Mapping[TaskKind, str] = field(
        default_factory=lambda: DEFAULT_KIND_PRIORITY)
    agent_choice: AgentChoice = AgentChoice.BEST_SKILL_THEN_LONGEST_IDLE
    no_answer_retry_seconds: float = 60.0
    explain_limit: int = 3
    # Each service's relaxation steps, stably sorted by `after`: the steps
    # active at a time are then a prefix, counted by `stage`.
    _steps: Mapping[str, tuple[Relaxation, ...]] = field(
        init=False, repr=False, compare=False, default_factory=dict)
    _numbers: Mapping[str, str] = field(
        init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        # Read-only copies: the derived tables below must not go stale.
        for name in ("services", "classes", "kind_priority"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))
        numbers: dict[str, str] = {}
        for name, service in self.services.items():
            for number in service.numbers:
                if numbers.setdefault(number, name) != name:
                    raise InvalidPolicy(f"number {number!r} leads to both {numbers[number]!r}"
                                        f" and {name!r}")
            if name != service.name:
                raise InvalidPolicy(f"service {service.name!r} is filed under {name!r}")
            for step in service.relaxation:
                if isinstance(step, Overflow) and (
                        step.service == name or step.service not in self.services):
                    raise InvalidPolicy(f"service {name!r} overflows to {step.service!r},"
                                        " which is not another service of the policy")
        for name, priority in self.classes.items():
            if priority.aging_per_second < 0:
                raise InvalidPolicy(f"priority class {name!r} ages at a negative rate")
        for kind in TaskKind:
            if self.kind_priority.get(kind) not in self.classes:
                raise InvalidPolicy(f"{kind.value} tasks have no default priority class"
                                    " among the policy's classes")
        if self.explain_limit < 0 or self.no_answer_retry_seconds < 0:
            raise InvalidPolicy("explain_limit and no_answer_retry_seconds must be >= 0")
        steps = {name: tuple(sorted(s.relaxation, key=lambda step: step.after))
                 for name, s in self.services.items()}
        object.__setattr__(self, "_steps", MappingProxyType(steps))
        object.__setattr__(self, "_numbers", MappingProxyType(numbers))

    def service_for_number(self, number: str) -> Service | None:
        """The service a dialled number (DNIS) or IVR exit leads to."""
        name = self._numbers.get(number)
        return None if name is None else self.services[name]

    def service(self, name: str) -> Service:
        try:
            return self.services[name]
        except KeyError:
            raise UnknownService(name) from None

    def steps(self, service: str) -> tuple[Relaxation, ...]:
        """The service's relaxation steps sorted by `after`."""
        try:
            return self._steps[service]
        except KeyError:
            raise UnknownService(service) from None

    def priority_class(self, task: Task) -> PriorityClass:
        name = task.priority if task.priority is not None else self.kind_priority[task.kind]
        try:
            return self.classes[name]
        except KeyError:
            raise UnknownPriorityClass(name) from None


# -- priority ---------------------------------------------------------------

def waited_seconds(task: Task, now: float) -> float:
    return max(0.0, now - task.enqueued_at)


def effective_priority(task: Task, now: float, policy: Policy) -> float:
    priority = policy.priority_class(task)
    head_start = priority.base + policy.service(task.service).priority_weight
    return head_start + priority.aging_per_second * waited_seconds(task, now)


TaskRank = tuple[bool, float, float, str]


def task_rank(task: Task, now: float, policy: Policy) -> TaskRank:
    """Sort key, best first: a task pinned to an agent (a caller transferred
    to them by name, as a call to their own line) before the queue, then
    higher effective priority, then first come first served, then the task
    id so equal inputs give equal answers."""
    return (pinned_agent(task, now) is None, -effective_priority(task, now, policy),
            task.enqueued_at, task.id)


def pinned_agent(task: Task, now: float) -> str | None:
    """The one agent the task waits for at `now`, or None when it routes
    as any task: not pinned, the pin ran out, or the agent rang no answer
    on it since it was pinned."""
    pin = task.pin
    if pin is None or now >= pin.until:
        return None
    if any(miss.agent == pin.agent and miss.at >= pin.since for miss in task.no_answers):
        return None
    return pin.agent


# -- requirements -------------------------------------------------------------

class TierKind(Enum):
    STRICT = "strict"
    RELAXED = "relaxed"
    OVERFLOW = "overflow"


@dataclass(frozen=True, slots=True)
class Tier:
    """One set of minimum levels that qualifies an agent for a task. A task's
    tiers are ordered: an agent belongs to the first tier they qualify for,
    and agents of an earlier tier are preferred (a relaxed requirement
    accepts more agents, it does not make them as good as qualified ones)."""

    kind: TierKind
    levels: Mapping[str, int]
    # RELAXED: the active level steps, by `after`; OVERFLOW: the step.
    steps: tuple[LowerLevel | AnyLevel, ...] = ()
    overflow: Overflow | None = None
    source: str = ""

    def qualifies(self, agent: Agent) -> bool:
        skills = agent.skills
        return all(skills.get(skill, 0) >= level for skill, level in self.levels.items())

    def label(self) -> str:
        """Why an agent of this tier lost to one of an earlier tier."""
        if self.kind is TierKind.OVERFLOW and self.overflow is not None:
            return f"overflow agent ({self.overflow.service}), own-service agents first"
        return "qualifies only after relaxation, fully qualified agents first"


def stage(policy: Policy, task: Task, now: float) -> int:
    """How many of the task's relaxation steps are active at `now`.

    Compares absolute times (now >= enqueued_at + after) rather than the
    waited seconds, so that a timer set at enqueued_at + after by
    `next_wakeup` always finds the step active (the subtraction could round
    just below `after`)."""
    count = 0
    for step in policy.steps(task.service):
        if now < task.enqueued_at + step.after:
            break
        count += 1
    return count


def tiers_at(policy: Policy, service: str, extra: Mapping[str, int],
             active: int) -> tuple[Tier, ...]:
    """The tiers of a task of `service` with `extra` skills when its first
    `active` relaxation steps (by `after`) apply."""
    strict = dict(policy.service(service).skills)
    for skill, level in extra.items():
        strict[skill] = max(strict.get(skill, 0), level)
    relaxed = dict(strict)
    level_steps: list[LowerLevel | AnyLevel] = []
    overflows: list[Overflow] = []
    for step in policy.steps(service)[:active]:
        if isinstance(step, Overflow):
            overflows.append(step)
            continue
        floor = 1 if isinstance(step, AnyLevel) else step.level
        if step.skill in strict and floor < strict[step.skill]:
            level_steps.append(step)
            relaxed[step.skill] = min(relaxed[step.skill], floor)
    tiers = [Tier(TierKind.STRICT, MappingProxyType(strict), source=service)]
    if level_steps:
        tiers.append(Tier(TierKind.RELAXED, MappingProxyType(relaxed), tuple(level_steps),
                          source=service))
    seen = {service}
    for step in overflows:
        if step.service in seen:
            continue
        seen.add(step.service)
        levels = dict(policy.service(step.service).skills)
        for skill, level in extra.items():
            levels[skill] = max(levels.get(skill, 0), level)
        tiers.append(Tier(TierKind.OVERFLOW, MappingProxyType(levels), overflow=step,
                          source=service))
    return tuple(tiers)


def task_tiers(policy: Policy, task: Task, now: float) -> tuple[Tier, ...]:
    return tiers_at(policy, task.service, task.skills, stage(policy, task, now))


def tier_of(agent: Agent, tiers: tuple[Tier, ...]) -> int | None:
    for index, tier in enumerate(tiers):
        if tier.qualifies(agent):
            return index
    return None


AgentKey = tuple[int, int, float, str]


def agent_key(agent: Agent, tier_index: int, tier: Tier, choice: AgentChoice) -> AgentKey:
    """Sort key, best first: earlier tier, then (for best-skill) the higher
    sum of levels on the tier's skills, then longest idle, then agent id."""
    score = 0
    if choice is AgentChoice.BEST_SKILL_THEN_LONGEST_IDLE:
        skills = agent.skills
        score = sum(skills[skill] for skill in tier.levels)
    return (tier_index, -score, agent.state_since, agent.id)


# -- ring-no-answer and sticky agent -------------------------------------------

def no_answer_block(task: Task, agent: str, now: float, policy: Policy) -> RingNoAnswer | None:
    """The ring-no-answer that still keeps `agent` away from `task`, if any."""
    for miss in reversed(task.no_answers):
        if miss.agent == agent and now < miss.at + policy.no_answer_retry_seconds:
            return miss
    return None


def sticky_window_end(task: Task, policy: Policy) -> float | None:
    seconds = policy.service(task.service).sticky_seconds
    if task.preferred_agent is None or seconds <= 0:
        return None
    return task.enqueued_at + seconds


class Sticky(Enum):
    NONE = "none"   # route normally
    TAKE = "take"   # give the task to the preferred agent now
    HOLD = "hold"   # keep the task waiting for the preferred agent


def sticky(task: Task, preferred: Agent | None, tiers: tuple[Tier, ...], *, now: float,
           policy: Policy, taken: Container[str] = ()) -> Sticky:
    """Sticky routing: within the service's window from enqueue, a task goes
    to its preferred agent if free, and waits for them if they are logged in
    and busy (an agent taken earlier in the same pass counts as busy). A
    preferred agent who is paused, logged out, unqualified or who rang no
    answer on the task does not hold it."""
    end = sticky_window_end(task, policy)
    if end is None or now >= end or preferred is None:
        return Sticky.NONE
    if no_answer_block(task, preferred.id, now, policy) or tier_of(preferred, tiers) is None:
        return Sticky.NONE
    if preferred.state is AgentState.AVAILABLE:
        return Sticky.HOLD if preferred.id in taken else Sticky.TAKE
    return Sticky.HOLD if preferred.state in BUSY_STATES else Sticky.NONE
