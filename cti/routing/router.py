"""The reference router: pure functions over tasks, agents, the time and the
policy. `assign` is the plain full pass (the oracle the property tests hold
the incremental `RoutingIndex` to); `next_wakeup` tells the shell when to
look again; `due_wrapups` ends wrap-ups whose time is up.

Wrap-up ends by an explicit transition (`due_wrapups`, called by the shell
on its timer) rather than by the router treating elapsed wrap-ups as free:
the server owns and persists agent state, and the agent desk must see the
change.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Container, Iterable, Mapping, Sequence
from operator import itemgetter

from cti.routing.agents import Agent, AgentState
from cti.routing.choice import Ranked, Ranking, decide
from cti.routing.models import Assignment, Service, Task
from cti.routing.policy import (
    Policy,
    Tier,
    agent_key,
    effective_priority,
    pinned_agent,
    sticky_window_end,
    task_rank,
    task_tiers,
    tier_of,
)


def assign(waiting: Sequence[Task], agents: Sequence[Agent], now: float,
           policy: Policy) -> list[Assignment]:
    """Pair waiting tasks with free agents, best first. Greedy in task rank
    (effective priority, then enqueue time, then id): each task takes its
    best qualified free agent not taken by a better task. Each Assignment
    carries the rule that chose it, for logs and supervisors."""
    by_id = _by_id(agents)
    rank = _scan_ranking(agents, policy)
    taken: set[str] = set()
    answer: list[Assignment] = []
    for task in sorted(waiting, key=lambda task: task_rank(task, now, policy)):
        tiers = task_tiers(policy, task, now)
        choice = decide(task, tiers, now, policy=policy, lookup=by_id.get, taken=taken,
                        rank=rank)
        if choice is not None:
            taken.add(choice.agent_id)
            answer.append(choice)
    return answer


def next_wakeup(waiting: Sequence[Task], agents: Sequence[Agent], now: float,
                policy: Policy) -> float | None:
    """The earliest time after `now` at which `assign` could answer
    differently with no new event, or None if only an event can change it.

    Counts relaxation steps, ends of sticky windows and of ring-no-answer
    exclusions, ends of wrap-ups, and the first time two tasks that could be
    assigned now swap rank by aging (the first swap among linear
    trajectories is between neighbours in the current order). It may wake
    the shell for nothing, never too late. After the shell applied `assign`'s
    answer no task can be assigned and only the deadlines remain.
    O(tasks x agents), like `assign`: a shell at scale asks its
    `RoutingIndex` instead.
    """
    deadlines = [t for t in _deadlines(waiting, agents, policy) if t > now]
    deadlines.extend(_rank_swaps(waiting, agents, now, policy))
    return min(deadlines, default=None)


def wrap_up_end(agent: Agent, services: Mapping[str, Service]) -> float | None:
    """When the agent's wrap-up ends, or None if not wrapping up a known
    service (then only the agent ends it, with `ready`)."""
    if agent.state is not AgentState.WRAP_UP or agent.task_service is None:
        return None
    service = services.get(agent.task_service)
    return None if service is None else agent.state_since + service.wrap_up_seconds


def due_wrapups(agents: Iterable[Agent], services: Mapping[str, Service],
                now: float) -> list[Agent]:
    """The agents whose wrap-up time is up, made available. Their idle time
    starts when the wrap-up ended, not when the timer fired, so longest-idle
    stays fair when the shell is late."""
    return [agent.end_wrap_up(end) for agent in agents
            if (end := wrap_up_end(agent, services)) is not None and end <= now]


def task_deadlines(task: Task, policy: Policy) -> list[float]:
    """Times at which the task's routing changes by itself: relaxation
    steps, the end of its sticky window, the ends of its ring-no-answer
    exclusions, the end of its pin."""
    times = [task.enqueued_at + step.after for step in policy.steps(task.service)]
    window = sticky_window_end(task, policy)
    if window is not None:
        times.append(window)
    times.extend(miss.at + policy.no_answer_retry_seconds for miss in task.no_answers)
    if task.pin is not None:
        times.append(task.pin.until)
    return times


def _deadlines(waiting: Sequence[Task], agents: Sequence[Agent],
               policy: Policy) -> Iterable[float]:
    for task in waiting:
        yield from task_deadlines(task, policy)
    for agent in agents:
        end = wrap_up_end(agent, policy.services)
        if end is not None:
            yield end


def _rank_swaps(waiting: Sequence[Task], agents: Sequence[Agent], now: float,
                policy: Policy) -> list[float]:
    by_id = _by_id(agents)
    rank = _scan_ranking(agents, policy)
    contenders = sorted(
        (task for task in waiting
         if decide(task, task_tiers(policy, task, now), now, policy=policy,
                   lookup=by_id.get, taken=(), rank=rank)),
        key=lambda task: task_rank(task, now, policy))
    swaps: list[float] = []
    for ahead, behind in itertools.pairwise(contenders):
        if (pinned_agent(ahead, now) is None) != (pinned_agent(behind, now) is None):
            continue  # a pin, not aging, orders them; its end is a deadline
        closing = (policy.priority_class(behind).aging_per_second
                   - policy.priority_class(ahead).aging_per_second)
        if closing <= 0:
            continue
        gap = effective_priority(ahead, now, policy) - effective_priority(behind, now, policy)
        at = now + gap / closing
        # Wake a hair early: rounding must not put the swap before the timer.
        swaps.append(max(math.nextafter(now, math.inf), at - 1e-9 * max(1.0, abs(at))))
    return swaps


def _by_id(agents: Sequence[Agent]) -> dict[str, Agent]:
    by_id = {agent.id: agent for agent in agents}
    if len(by_id) != len(agents):
        raise ValueError("two agents share an id")
    return by_id


def _scan_ranking(agents: Sequence[Agent], policy: Policy) -> Ranking:
    """Rank by scanning every free agent: obviously right, O(agents)."""
    free = [agent for agent in agents if agent.state is AgentState.AVAILABLE]

    def rank(tiers: tuple[Tier, ...], taken: Container[str], excluded: Container[str],
             limit: int) -> Ranked:
        keyed: Ranked = []
        for agent in free:
            if agent.id in taken or agent.id in excluded:
                continue
            index = tier_of(agent, tiers)
            if index is not None:
                keyed.append((agent_key(agent, index, tiers[index], policy.agent_choice), agent))
        keyed.sort(key=itemgetter(0))
        return keyed[:limit]

    return rank
