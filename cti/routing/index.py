"""The incremental routing index: the live view the routing shell keeps up
to date on each event, so that one decision costs far less than a full pass.

It holds free agents per skill and level (sorted by idle start) and waiting
tasks in queues of equal routing (service, priority class, extra skills)
sorted by enqueue time. Inside a queue the oldest task is both the highest
in effective priority and the most relaxed, which lets `assign_for_agent`
look at about one task per queue. No IO, no clock: `now` is passed in, and
it must not go backwards from one call to the next.

Contract with the shell (the index is *settled* when no waiting task has a
free qualified agent, as after applying any answer):
- on a timer set by `next_wakeup`: `assign_due(now)`;
- on an event: update the index (`put_agent`, `put_task`, `remove_*`), then
  `assign_for_agent` (an agent became free) or `assign_for_task` (a task
  arrived or came back); apply the answer (reserve the agent with
  `put_agent`, `remove_task`) before the next event.
Under that contract the answers equal the reference `assign` (a property
test checks it); `assign_all` is the full pass for start-up and recovery.
An agent the shell marks `engage`d (their phone busy with a call the router
did not place) is offered nothing; the reference knows no such agents.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass, field, replace
from operator import itemgetter

from cti.routing.agents import MAX_LEVEL, Agent, AgentState
from cti.routing.choice import Ranked, decide
from cti.routing.models import Assignment, Overflow, Task
from cti.routing.policy import (
    AgentChoice,
    Policy,
    Sticky,
    TaskRank,
    Tier,
    agent_key,
    no_answer_block,
    pinned_agent,
    stage,
    sticky,
    task_rank,
    tier_of,
    tiers_at,
)
from cti.routing.router import task_deadlines, wrap_up_end

_Entry = tuple[float, str]          # (state_since or enqueued_at, id): sort order
# (service, priority class, extra skills, agent pinned to or "")
_QueueKey = tuple[str, str, tuple[tuple[str, int], ...], str]
_first = itemgetter(0)


@dataclass(slots=True)
class _Queue:
    """Waiting tasks that route alike, oldest first."""

    service: str
    extra: Mapping[str, int]
    # Skill names an agent must all have to qualify for some tier (own
    # service, or an overflow target): a quick filter before the real check.
    reach: tuple[frozenset[str], ...]
    entries: list[_Entry] = field(default_factory=list)
    # The agent its tasks are pinned to (transfers to a named agent): few
    # tasks, each looked at (a pin may have ended for some of them).
    pinned: str | None = None


class RoutingIndex:
    """Free agents by skill and level, and waiting tasks by queue.
    See the module docstring for the contract with the shell."""

    def __init__(self, policy: Policy, agents: Iterable[Agent] = (),
                 tasks: Iterable[Task] = ()) -> None:
        self._policy = policy
        self._agents: dict[str, Agent] = {}
        self._skill_names: dict[str, frozenset[str]] = {}
        # skill -> level (0..10) -> free agents having exactly that level.
        self._free: dict[str, list[list[_Entry]]] = {}
        self._free_all: list[_Entry] = []
        self._tasks: dict[str, Task] = {}
        self._versions: dict[str, int] = {}
        self._queue_of: dict[str, _QueueKey] = {}
        self._queues: dict[_QueueKey, _Queue] = {}
        self._tiers: dict[tuple[_QueueKey, int], tuple[Tier, ...]] = {}
        self._task_deadlines: list[tuple[float, str, int]] = []
        self._wrap_deadlines: list[tuple[float, str]] = []
        self._version = 0
        self._engaged: set[str] = set()
        for agent in agents:
            self.put_agent(agent)
        for task in tasks:
            self.put_task(task)

    # -- updates -------------------------------------------------------------

    def put_agent(self, agent: Agent) -> None:
        """Add an agent or replace it with its new state."""
        old = self._agents.get(agent.id)
        if old is not None and old.state is AgentState.AVAILABLE:
            self._unfree(old)
        self._agents[agent.id] = agent
        if old is None or old.skills is not agent.skills:
            self._skill_names[agent.id] = frozenset(agent.skills)
        if agent.state is AgentState.AVAILABLE:
            self._enfree(agent)
        end = wrap_up_end(agent, self._policy.services)
        if end is not None:
            heapq.heappush(self._wrap_deadlines, (end, agent.id))

    def remove_agent(self, agent_id: str) -> None:
        old = self._agents.pop(agent_id, None)
        self._skill_names.pop(agent_id, None)
        if old is not None and old.state is AgentState.AVAILABLE:
            self._unfree(old)

    def put_task(self, task: Task) -> None:
        """Add a waiting task or replace it (e.g. back after a ring-no-answer)."""
        key = self._queue_key(task)  # first: an unknown service changes nothing
        if task.id in self._tasks:
            self.remove_task(task.id)
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = self._new_queue(task)
        insort(queue.entries, (task.enqueued_at, task.id))
        self._tasks[task.id] = task
        self._queue_of[task.id] = key
        self._version += 1
        self._versions[task.id] = self._version
        for at in task_deadlines(task, self._policy):
            heapq.heappush(self._task_deadlines, (at, task.id, self._version))

    def remove_task(self, task_id: str) -> None:
        task = self._tasks.pop(task_id, None)
        if task is None:
            return
        del self._versions[task_id]
        key = self._queue_of.pop(task_id)
        entries = self._queues[key].entries
        del entries[bisect_left(entries, (task.enqueued_at, task_id))]
        if not entries:
            del self._queues[key]

    def agent(self, agent_id: str) -> Agent | None:
        return self._agents.get(agent_id)

    def engage(self, agent_id: str, engaged: bool) -> bool:
        """Whether the agent's phone is busy with a call the router did not
        place (a consultation, a direct or personal call): an engaged agent
        is offered nothing, whatever their state, until it is free again.
        True when that changed."""
        if engaged == (agent_id in self._engaged):
            return False
        if engaged:
            self._engaged.add(agent_id)
        else:
            self._engaged.discard(agent_id)
        return True

    def engaged(self, agent_id: str) -> bool:
        return agent_id in self._engaged

    def task(self, task_id: str) -> Task | None:
        return self._tasks.get(task_id)

    def waiting(self) -> list[Task]:
        return list(self._tasks.values())

    # -- decisions ------------------------------------------------------------

    def assign_for_agent(self, agent_id: str, now: float) -> Assignment | None:
        """The agent just became free: the best waiting task they may take.
        On a settled index the answer gives the task to this agent."""
        agent = self._agents.get(agent_id)
        if agent is None or agent.state is not AgentState.AVAILABLE \
                or agent_id in self._engaged:
            return None
        names = self._skill_names[agent_id]
        best: tuple[TaskRank, Task, tuple[Tier, ...]] | None = None
        for key, queue in self._queues.items():
            if queue.pinned is not None:
                found = self._pinned_choice(key, queue, agent, now)
                if found is not None and (best is None or found[0] < best[0]):
                    best = found
                continue
            if not any(needed <= names for needed in queue.reach):
                continue
            for _, task_id in queue.entries:
                task = self._tasks[task_id]
                tiers = self._tiers_of(key, task, now)
                if tier_of(agent, tiers) is None:
                    break  # later tasks of the queue are no more relaxed
                if not self._may_take(task, agent_id, tiers, now):
                    continue
                rank = task_rank(task, now, self._policy)
                if best is None or rank < best[0]:
                    best = (rank, task, tiers)
                break  # later tasks of the queue rank lower
        if best is None:
            return None
        return self._decide(best[1], best[2], now, ())

    def assign_arriving(self, task: Task, now: float) -> Assignment | None:
        """A task not waiting yet: its best free agent now, or None when it
        must wait (then `put_task` it). The answer of `put_task` then
        `assign_for_task`, without a queue entry made and undone on the way
        when an agent is free (most calls, on a staffed floor)."""
        if task.id in self._tasks:
            raise ValueError(f"task {task.id} is already waiting")
        return self._decide(task, self._tiers_of(self._queue_key(task), task, now), now, ())

    def assign_for_task(self, task_id: str, now: float) -> Assignment | None:
        """The task just arrived or came back: its best free agent, if any."""
        task = self._tasks.get(task_id)
        if task is None:
            return None
        return self._decide(task, self._tiers_of(self._queue_of[task_id], task, now), now, ())

    def assign_due(self, now: float) -> list[Assignment]:
        """On a timer: assignments for the tasks whose relaxation step,
        sticky window or ring-no-answer exclusion ended by `now`."""
        due: set[str] = set()
        heap = self._task_deadlines
        while heap and heap[0][0] <= now:
            _, task_id, version = heapq.heappop(heap)
            if self._versions.get(task_id) == version:
                due.add(task_id)
        for task_id in due:
            task = self._tasks[task_id]
            if task.pin is not None and pinned_agent(task, now) is None:
                # Its pin is over for good: it waits in its service's queue
                # again, not among the pinned ones each free agent looks through.
                self.put_task(replace(task, pin=None))
        return self._greedy((self._tasks[task_id] for task_id in due), now)

    def assign_all(self, now: float) -> list[Assignment]:
        """The full pass over every waiting task, as the reference `assign`."""
        heap = self._task_deadlines
        while heap and heap[0][0] <= now:
            heapq.heappop(heap)
        return self._greedy(self._tasks.values(), now)

    def next_wakeup(self, now: float) -> float | None:
        """The next deadline (see `router.next_wakeup`) on a settled index
        after `assign_due(now)` and the shell's `due_wrapups`; a time not
        after `now` means work is overdue."""
        tasks = self._task_deadlines
        while tasks and self._versions.get(tasks[0][1]) != tasks[0][2]:
            heapq.heappop(tasks)
        wraps = self._wrap_deadlines
        while wraps and not self._wrapping_until(wraps[0][1], wraps[0][0]):
            heapq.heappop(wraps)
        times = [heap[0][0] for heap in (tasks, wraps) if heap]
        return min(times, default=None)

    # -- internals --------------------------------------------------------------

    def _greedy(self, tasks: Iterable[Task], now: float) -> list[Assignment]:
        taken: set[str] = set()
        answer: list[Assignment] = []
        for task in sorted(tasks, key=lambda task: task_rank(task, now, self._policy)):
            tiers = self._tiers_of(self._queue_of[task.id], task, now)
            choice = self._decide(task, tiers, now, taken)
            if choice is not None:
                taken.add(choice.agent_id)
                answer.append(choice)
        return answer

    def _decide(self, task: Task, tiers: tuple[Tier, ...], now: float,
                taken: Container[str]) -> Assignment | None:
        if self._engaged:
            # An engaged agent is as good as taken: not offered, and a
            # sticky task waits for them as for a busy agent.
            taken = _Either(taken, self._engaged)
        return decide(task, tiers, now, policy=self._policy, lookup=self._agents.get,
                      taken=taken, rank=self._rank)

    def _pinned_choice(self, key: _QueueKey, queue: _Queue, agent: Agent, now: float
                       ) -> tuple[TaskRank, Task, tuple[Tier, ...]] | None:
        """The best task of a pinned queue for `agent`: a task still pinned
        goes to its agent alone, one whose pin ended routes as any other."""
        best: tuple[TaskRank, Task, tuple[Tier, ...]] | None = None
        for _, task_id in queue.entries:
            task = self._tasks[task_id]
            pinned = pinned_agent(task, now)
            if pinned is not None and pinned != agent.id:
                continue  # the cheap test first: most pinned tasks are someone else's
            tiers = self._tiers_of(key, task, now)
            if pinned is None and (tier_of(agent, tiers) is None
                                   or not self._may_take(task, agent.id, tiers, now)):
                continue
            rank = task_rank(task, now, self._policy)
            if best is None or rank < best[0]:
                best = (rank, task, tiers)
        return best

    def _may_take(self, task: Task, agent_id: str, tiers: tuple[Tier, ...],
                  now: float) -> bool:
        if no_answer_block(task, agent_id, now, self._policy) is not None:
            return False
        if task.preferred_agent is None:
            return True
        preferred = self._agents.get(task.preferred_agent)
        mode = sticky(task, preferred, tiers, now=now, policy=self._policy)
        return mode is Sticky.NONE or (mode is Sticky.TAKE and task.preferred_agent == agent_id)

    def _wrapping_until(self, agent_id: str, end: float) -> bool:
        agent = self._agents.get(agent_id)
        return agent is not None and wrap_up_end(agent, self._policy.services) == end

    def _tiers_of(self, key: _QueueKey, task: Task, now: float) -> tuple[Tier, ...]:
        active = stage(self._policy, task, now)
        tiers = self._tiers.get((key, active))
        if tiers is None:
            # The key holds the task's service and skills: any task of the
            # queue gives its tiers, queued or not.
            tiers = self._tiers[key, active] = tiers_at(
                self._policy, task.service, task.skills, active)
        return tiers

    def _rank(self, tiers: tuple[Tier, ...], taken: Container[str],
              excluded: Container[str], limit: int) -> Ranked:
        found: Ranked = []
        for index, tier in enumerate(tiers):
            if len(found) >= limit:
                break
            earlier = tiers[:index]

            def accept(agent: Agent, earlier: tuple[Tier, ...] = earlier) -> bool:
                return (agent.id not in taken and agent.id not in excluded
                        and not any(tier.qualifies(agent) for tier in earlier))

            found.extend(self._search(index, tier, accept, limit - len(found)))
        return found

    def _search(self, index: int, tier: Tier, accept: Callable[[Agent], bool],
                limit: int) -> Ranked:
        """The `limit` best free agents of one tier, by `agent_key`."""
        choice = self._policy.agent_choice
        levels = tier.levels
        found: Ranked = []
        if not levels:
            # No skill required: every key has score 0, so idle order is key order.
            for _, agent_id in self._free_all:
                agent = self._agents[agent_id]
                if accept(agent):
                    found.append((agent_key(agent, index, tier, choice), agent))
                    if len(found) >= limit:
                        break
            return found
        # Walk the required skill with the fewest free agents, check the others.
        pivot, pivot_count = "", -1
        for skill, needed in levels.items():
            buckets = self._free.get(skill)
            count = 0 if buckets is None else sum(map(len, buckets[needed:]))
            if count == 0:
                return found
            if pivot_count < 0 or count < pivot_count:
                pivot, pivot_count = skill, count
        others = [(skill, needed) for skill, needed in levels.items() if skill != pivot]
        buckets = self._free[pivot]

        def fits(agent: Agent) -> bool:
            skills = agent.skills
            return all(skills.get(skill, 0) >= needed for skill, needed in others) \
                and accept(agent)

        if choice is AgentChoice.LONGEST_IDLE:
            for _, agent_id in heapq.merge(*buckets[levels[pivot]:]):
                agent = self._agents[agent_id]
                if fits(agent):
                    found.append((agent_key(agent, index, tier, choice), agent))
                    if len(found) >= limit:
                        break
            return found
        # Best skill: the pivot's buckets from the top level down; `headroom`
        # bounds what the other skills can add, so whole levels are skipped
        # once they cannot reach the worst agent kept.
        headroom = sum(self._top_free_level(skill) for skill, _ in others)
        for level in range(MAX_LEVEL, levels[pivot] - 1, -1):
            bucket = buckets[level]
            if not bucket:
                continue
            if len(found) >= limit and level + headroom < -found[-1][0][1]:
                break
            for since, agent_id in bucket:
                if not others and len(found) >= limit \
                        and (index, -level, since, agent_id) >= found[-1][0]:
                    break  # one skill: the bucket is already in key order
                agent = self._agents[agent_id]
                if not fits(agent):
                    continue
                key = agent_key(agent, index, tier, choice)
                if len(found) < limit:
                    insort(found, (key, agent), key=_first)
                elif key < found[-1][0]:
                    found.pop()
                    insort(found, (key, agent), key=_first)
        return found

    def _top_free_level(self, skill: str) -> int:
        buckets = self._free[skill]
        for level in range(MAX_LEVEL, 0, -1):
            if buckets[level]:
                return level
        return 0

    def _enfree(self, agent: Agent) -> None:
        entry = (agent.state_since, agent.id)
        for skill, level in agent.skills.items():
            buckets = self._free.get(skill)
            if buckets is None:
                buckets = self._free[skill] = [[] for _ in range(MAX_LEVEL + 1)]
            insort(buckets[level], entry)
        insort(self._free_all, entry)

    def _unfree(self, agent: Agent) -> None:
        entry = (agent.state_since, agent.id)
        for skill, level in agent.skills.items():
            bucket = self._free[skill][level]
            del bucket[bisect_left(bucket, entry)]
        del self._free_all[bisect_left(self._free_all, entry)]

    def _queue_key(self, task: Task) -> _QueueKey:
        policy = self._policy
        policy.service(task.service)
        name = task.priority if task.priority is not None else policy.kind_priority[task.kind]
        policy.priority_class(task)
        pinned = "" if task.pin is None else task.pin.agent
        return (task.service, name, tuple(sorted(task.skills.items())), pinned)

    def _new_queue(self, task: Task) -> _Queue:
        policy = self._policy
        extra = frozenset(task.skills)
        reach = [frozenset(policy.service(task.service).skills) | extra]
        for step in policy.steps(task.service):
            if isinstance(step, Overflow):
                reach.append(frozenset(policy.service(step.service).skills) | extra)
        return _Queue(task.service, task.skills, tuple(reach),
                      pinned=None if task.pin is None else task.pin.agent)


class _Either:
    """Agent ids in either of two containers (taken in this pass, engaged)."""

    __slots__ = ("_first", "_second")

    def __init__(self, first: Container[str], second: Container[str]) -> None:
        self._first = first
        self._second = second

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self._first or agent_id in self._second
