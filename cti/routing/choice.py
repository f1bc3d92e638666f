"""One task's choice of agent and its explanation: the agent a task is
pinned to, else the sticky agent, then the best ranked qualified free
agent, with the rule that chose it and the reason each runner-up was
passed over.

Shared by the reference router and the incremental index; they differ only
in how they rank free agents (a scan of all of them, or per-skill buckets),
so both explain a decision in the same words.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass
from typing import Protocol

from cti.routing.agents import Agent, AgentState
from cti.routing.models import AnyLevel, Assignment, RingNoAnswer, Task
from cti.routing.policy import (
    AgentKey,
    Policy,
    Sticky,
    Tier,
    TierKind,
    effective_priority,
    no_answer_block,
    pinned_agent,
    sticky,
    tier_of,
    waited_seconds,
)

Ranked = list[tuple[AgentKey, Agent]]


class Ranking(Protocol):
    def __call__(self, tiers: tuple[Tier, ...], taken: Container[str],
                 excluded: Container[str], limit: int) -> Ranked:
        """The `limit` best free agents qualified for one of `tiers`, by
        `agent_key`, leaving out `taken` and `excluded` agents."""
        ...


def decide(task: Task, tiers: tuple[Tier, ...], now: float, *, policy: Policy,
           lookup: Callable[[str], Agent | None], taken: Container[str],
           rank: Ranking) -> Assignment | None:
    """The assignment for `task` among the free agents not yet `taken`, or
    None when it must keep waiting."""
    pinned = pinned_agent(task, now)
    if pinned is not None and task.pin is not None:
        # Held for one agent, whatever the skills: a colleague chose them.
        agent = lookup(pinned)
        if agent is None or agent.state is not AgentState.AVAILABLE or agent.id in taken:
            return None
        return _assignment(task, agent, f"transferred by agent {task.pin.by}", now=now,
                           policy=policy, why=None)
    preferred = lookup(task.preferred_agent) if task.preferred_agent is not None else None
    mode = sticky(task, preferred, tiers, now=now, policy=policy, taken=taken)
    if mode is Sticky.HOLD:
        return None
    blocked = blocked_agents(task, tiers, now, policy=policy, lookup=lookup, taken=taken)
    excluded = {miss.agent for miss in task.no_answers
                if no_answer_block(task, miss.agent, now, policy) is not None}
    if mode is Sticky.TAKE and preferred is not None:
        excluded.add(preferred.id)
        ranked = rank(tiers, taken, excluded, policy.explain_limit)
        why = _Why(tuple((agent.id, key) for key, agent in ranked), tiers, blocked,
                   sticky=preferred.id)
        return _assignment(task, preferred, "sticky-agent", now=now, policy=policy, why=why)
    ranked = rank(tiers, taken, excluded, policy.explain_limit + 1)
    if not ranked:
        return None
    (best_key, best), runners = ranked[0], ranked[1:]
    why = _Why(tuple((agent.id, key) for key, agent in runners), tiers, blocked,
               best=best_key)
    rule = rule_for(tiers, best_key[0], best, policy)
    return _assignment(task, best, rule, now=now, policy=policy, why=why)


@dataclass(frozen=True, slots=True)
class _Why:
    """What a decision passed over, kept as ranks and worded when read."""

    runners: tuple[tuple[str, AgentKey], ...]
    tiers: tuple[Tier, ...]
    blocked: Sequence[tuple[Agent, RingNoAnswer]]
    best: AgentKey | None = None
    sticky: str | None = None

    def __call__(self) -> tuple[tuple[str, str], ...]:
        if self.sticky is not None:
            passed = [(agent_id, f"sticky agent {self.sticky} preferred")
                      for agent_id, _ in self.runners]
        else:
            assert self.best is not None
            passed = [(agent_id, passed_over_reason(self.best, key, self.tiers))
                      for agent_id, key in self.runners]
        rona = [(other.id, f"rang no answer on this task at {miss.at:.3f}")
                for other, miss in self.blocked]
        return (*passed, *rona)


def blocked_agents(task: Task, tiers: tuple[Tier, ...], now: float, *, policy: Policy,
                   lookup: Callable[[str], Agent | None],
                   taken: Container[str]) -> list[tuple[Agent, RingNoAnswer]]:
    """Free qualified agents kept away by a recent ring-no-answer on this
    task, by agent id: a supervisor asking "why not her?" sees why."""
    found: dict[str, tuple[Agent, RingNoAnswer]] = {}
    for miss in task.no_answers:
        agent = lookup(miss.agent)
        if agent is None or agent.id in found or agent.id in taken:
            continue
        if agent.state is not AgentState.AVAILABLE or tier_of(agent, tiers) is None:
            continue
        block = no_answer_block(task, agent.id, now, policy)
        if block is not None:
            found[agent.id] = (agent, block)
    return [found[agent_id] for agent_id in sorted(found)]


def rule_for(tiers: tuple[Tier, ...], index: int, agent: Agent, policy: Policy) -> str:
    tier = tiers[index]
    if tier.kind is TierKind.OVERFLOW and tier.overflow is not None:
        return (f"overflow from {tier.source} to {tier.overflow.service}"
                f" after {tier.overflow.after:g}s")
    if tier.kind is TierKind.RELAXED:
        # Name only the steps this agent needed, each the earliest that admits them.
        needed: list[str] = []
        for skill, level in tiers[0].levels.items():
            have = agent.skills.get(skill, 0)
            if have >= level:
                continue
            for step in tier.steps:
                floor = 1 if isinstance(step, AnyLevel) else step.level
                if step.skill == skill and floor <= have:
                    needed.append(step.describe())
                    break
        return "relaxed: " + ", ".join(needed)
    return policy.agent_choice.value


def passed_over_reason(best: AgentKey, runner: AgentKey, tiers: tuple[Tier, ...]) -> str:
    if runner[0] != best[0]:
        return tiers[runner[0]].label()
    if runner[1] != best[1]:
        return f"lower skill level ({-runner[1]} < {-best[1]})"
    if runner[2] != best[2]:
        return (f"idle for less time (available since {runner[2]:.3f},"
                f" chosen agent since {best[2]:.3f})")
    return "same rank, agent id order"


def _assignment(task: Task, agent: Agent, rule: str, *, now: float, policy: Policy,
                why: _Why | None) -> Assignment:
    return Assignment(
        task_id=task.id,
        agent_id=agent.id,
        rule=rule,
        effective_priority=effective_priority(task, now, policy),
        waited_seconds=waited_seconds(task, now),
        why=_nobody if why is None else why,
    )


def _nobody() -> tuple[tuple[str, str], ...]:
    return ()
