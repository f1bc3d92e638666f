"""A pure traffic model of a small contact center, for the routing outcome
benchmark: seeded calls (Poisson arrivals, VIP share, exponential handle
times and patience, ring times, ring-no-answers), a floor of agents with
skills, and a discrete-event simulation that runs them under a dispatcher.

No real time and no IO. Every random draw about a call is made up front, so
two dispatchers see exactly the same calls (common random numbers) and the
difference in outcome is the routing alone.
"""

from __future__ import annotations

import heapq
import random
from bisect import insort
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from cti.routing import (
    Agent,
    AgentState,
    AnyLevel,
    Assignment,
    LowerLevel,
    Overflow,
    Policy,
    RoutingIndex,
    Service,
    Task,
)

Pair = tuple[str, str]  # (task id, agent id)


@dataclass(frozen=True)
class Traffic:
    seed: int = 11
    hours: float = 72.0
    warmup_hours: float = 0.5
    calls_per_hour: float = 1_000.0
    vip_share: float = 0.2
    sales_share: float = 0.4
    handle_mean_s: float = 180.0
    patience_mean_s: float = 120.0
    ring_s: tuple[float, float] = (2.0, 6.0)
    no_answer_chance: float = 0.03
    ring_timeout_s: float = 15.0
    no_answer_pause_s: float = 30.0
    wrap_up_s: float = 10.0
    agents_both: int = 24
    agents_sales: int = 18
    agents_support: int = 18


@dataclass(frozen=True)
class Call:
    id: str
    arrival: float
    vip: bool
    service: str
    handle: float
    patience: float
    rings: tuple[float, ...]        # ring time of each offer
    no_answers: tuple[bool, ...]    # whether each offer rings out


def services(traffic: Traffic) -> dict[str, Service]:
    """Two lines, each asking for level 6 in its skill. The relaxation steps
    are set the way a supervisor with an 80%-in-20 s target would: after 5 s
    level 3 will do, after 10 s any level, and after 15 s the other line's
    agents may take the call, so that an overflowed call still rings within
    the 20 s threshold."""
    def line(name: str, other: str) -> Service:
        return Service(name, skills={name: 6}, wrap_up_seconds=traffic.wrap_up_s,
                       ring_timeout_seconds=traffic.ring_timeout_s,
                       relaxation=(LowerLevel(5.0, name, 3), AnyLevel(10.0, name),
                                   Overflow(15.0, other)))
    return {"sales": line("sales", "support"), "support": line("support", "sales")}


def calls(traffic: Traffic) -> list[Call]:
    rng = random.Random(traffic.seed)
    made: list[Call] = []
    at = 0.0
    rate = traffic.calls_per_hour / 3600.0
    while True:
        at += rng.expovariate(rate)
        if at >= traffic.hours * 3600.0:
            return made
        made.append(Call(
            id=f"c{len(made)}", arrival=at, vip=rng.random() < traffic.vip_share,
            service="sales" if rng.random() < traffic.sales_share else "support",
            handle=rng.expovariate(1.0 / traffic.handle_mean_s),
            patience=rng.expovariate(1.0 / traffic.patience_mean_s),
            rings=tuple(rng.uniform(*traffic.ring_s) for _ in range(8)),
            no_answers=tuple(rng.random() < traffic.no_answer_chance for _ in range(8)),
        ))


def floor(traffic: Traffic) -> list[Agent]:
    rng = random.Random(traffic.seed + 1)
    groups = ([("sales", "support")] * traffic.agents_both + [("sales",)] * traffic.agents_sales
              + [("support",)] * traffic.agents_support)
    return [Agent(id=f"a{i}", name=f"Agent {i}", interface=f"Local/{1000 + i}@sim-agent",
                  skills={skill: rng.randint(3, 10) for skill in group},
                  state=AgentState.AVAILABLE, state_since=0.0)
            for i, group in enumerate(groups)]


def task_of(call: Call) -> Task:
    return Task(id=call.id, service=call.service, enqueued_at=call.arrival,
                priority="vip" if call.vip else "standard")


class Dispatcher(Protocol):
    """What the simulation asks of a routing discipline. Pairs returned are
    applied at once by the simulation, which then reports the agent's new
    state (`agent_changed`) and the task's departure (`task_gone`)."""

    def agent_changed(self, agent: Agent, now: float) -> list[Pair]: ...
    def task_waiting(self, task: Task, now: float) -> list[Pair]: ...
    def task_gone(self, task_id: str) -> None: ...
    def timer(self, now: float) -> list[Pair]: ...
    def next_wakeup(self, now: float) -> float | None: ...


class RouterDispatcher:
    """The routing engine, driven by the shell's contract with the index."""

    def __init__(self, policy: Policy) -> None:
        self.index = RoutingIndex(policy)

    def agent_changed(self, agent: Agent, now: float) -> list[Pair]:
        self.index.put_agent(agent)
        return _pairs([self.index.assign_for_agent(agent.id, now)])

    def task_waiting(self, task: Task, now: float) -> list[Pair]:
        self.index.put_task(task)
        return _pairs([self.index.assign_for_task(task.id, now)])

    def task_gone(self, task_id: str) -> None:
        self.index.remove_task(task_id)

    def timer(self, now: float) -> list[Pair]:
        return _pairs(self.index.assign_due(now))

    def next_wakeup(self, now: float) -> float | None:
        return self.index.next_wakeup(now)


def _pairs(choices: Iterable[Assignment | None]) -> list[Pair]:
    return [(choice.task_id, choice.agent_id) for choice in choices if choice is not None]


class FifoDispatcher:
    """The baseline: one first-come-first-served queue, no skills, no
    priority; the longest-idle free agent takes the oldest call."""

    def __init__(self) -> None:
        self.waiting: list[tuple[float, str]] = []
        self.free: list[tuple[float, str]] = []
        self.free_key: dict[str, tuple[float, str]] = {}

    def agent_changed(self, agent: Agent, now: float) -> list[Pair]:
        key = self.free_key.pop(agent.id, None)
        if key is not None:
            self.free.remove(key)
        if agent.state is AgentState.AVAILABLE:
            key = self.free_key[agent.id] = (agent.state_since, agent.id)
            insort(self.free, key)
        return self._match()

    def task_waiting(self, task: Task, now: float) -> list[Pair]:
        insort(self.waiting, (task.enqueued_at, task.id))
        return self._match()

    def task_gone(self, task_id: str) -> None:
        self.waiting = [entry for entry in self.waiting if entry[1] != task_id]

    def timer(self, now: float) -> list[Pair]:
        return []

    def next_wakeup(self, now: float) -> float | None:
        return None

    def _match(self) -> list[Pair]:
        pairs = []
        while self.waiting and self.free:
            _, task_id = self.waiting.pop(0)
            _, agent_id = self.free.pop(0)
            del self.free_key[agent_id]
            pairs.append((task_id, agent_id))
        return pairs


@dataclass
class Outcome:
    """What happened to each measured call, and how agents spent the window."""

    waits: dict[str, float] = field(default_factory=dict)       # answered: wait to answer
    abandoned: set[str] = field(default_factory=set)
    matched: dict[str, bool] = field(default_factory=dict)      # answered by a qualified agent
    busy_s: float = 0.0
    staffed_s: float = 0.0


_ARRIVE, _ABANDON, _ANSWER, _RING_OUT, _CALL_END, _WRAP_END, _READY, _TIMER = range(8)


def simulate(traffic: Traffic, dispatcher: Dispatcher,
             qualified: Callable[[Agent, Call], bool]) -> tuple[list[Call], Outcome]:
    """Run every call of `traffic` through `dispatcher`; return the calls and
    what happened to them. Occupancy is counted in [warm-up, end of arrivals]."""
    all_calls = calls(traffic)
    by_id = {call.id: call for call in all_calls}
    agents = {agent.id: agent for agent in floor(traffic)}
    start, stop = traffic.warmup_hours * 3600.0, traffic.hours * 3600.0
    outcome = Outcome()
    tasks: dict[str, Task] = {}
    state: dict[str, str] = {}        # call id -> waiting / ringing / talking / done
    gave_up: set[str] = set()         # patience ran out while the phone rang
    attempt: dict[str, int] = {}
    events: list[tuple[float, int, int, str, str]] = []
    timers: set[float] = set()
    seq = 0

    def push(at: float, kind: int, first: str = "", second: str = "") -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (at, seq, kind, first, second))

    def move(agent: Agent, now: float) -> None:
        old = agents[agent.id]
        low, high = max(old.state_since, start), min(now, stop)
        if high > low:
            if old.state is not AgentState.PAUSED:
                outcome.staffed_s += high - low
            if old.state not in (AgentState.AVAILABLE, AgentState.PAUSED):
                outcome.busy_s += high - low
        agents[agent.id] = agent
        apply(dispatcher.agent_changed(agent, now), now)

    def apply(pairs: list[Pair], now: float) -> None:
        for task_id, agent_id in pairs:
            call = by_id[task_id]
            state[task_id] = "ringing"
            dispatcher.task_gone(task_id)
            tried = attempt[task_id] = attempt.get(task_id, -1) + 1
            move(agents[agent_id].reserve(now, call.service).ring(now), now)
            if call.no_answers[tried % len(call.no_answers)]:
                push(now + traffic.ring_timeout_s, _RING_OUT, task_id, agent_id)
            else:
                push(now + call.rings[tried % len(call.rings)], _ANSWER, task_id, agent_id)

    def finish(call_id: str, abandoned: bool, waited: float = 0.0,
               agent: Agent | None = None) -> None:
        state[call_id] = "done"
        if by_id[call_id].arrival < start:
            return
        if abandoned:
            outcome.abandoned.add(call_id)
        elif agent is not None:
            outcome.waits[call_id] = waited
            outcome.matched[call_id] = qualified(agent, by_id[call_id])

    for agent in agents.values():
        apply(dispatcher.agent_changed(agent, 0.0), 0.0)
    for call in all_calls:
        push(call.arrival, _ARRIVE, call.id)
    while events:
        now, _, kind, call_id, agent_id = heapq.heappop(events)
        if kind == _ARRIVE:
            call = by_id[call_id]
            tasks[call_id] = task_of(call)
            state[call_id] = "waiting"
            push(now + call.patience, _ABANDON, call_id)
            apply(dispatcher.task_waiting(tasks[call_id], now), now)
        elif kind == _ABANDON:
            if state[call_id] == "waiting":
                dispatcher.task_gone(call_id)
                finish(call_id, abandoned=True)
            elif state[call_id] == "ringing":
                gave_up.add(call_id)
        elif kind == _ANSWER:
            call = by_id[call_id]
            move(agents[agent_id].answer(now), now)
            state[call_id] = "talking"
            finish(call_id, abandoned=False, waited=now - call.arrival, agent=agents[agent_id])
            push(now + call.handle, _CALL_END, call_id, agent_id)
        elif kind == _RING_OUT:
            move(agents[agent_id].pause(now, "ring-no-answer"), now)
            push(now + traffic.no_answer_pause_s, _READY, call_id, agent_id)
            if call_id in gave_up:
                finish(call_id, abandoned=True)
            else:
                state[call_id] = "waiting"
                tasks[call_id] = tasks[call_id].with_no_answer(agent_id, now)
                apply(dispatcher.task_waiting(tasks[call_id], now), now)
        elif kind == _CALL_END:
            move(agents[agent_id].end_call(now), now)
            push(now + traffic.wrap_up_s, _WRAP_END, call_id, agent_id)
        elif kind == _WRAP_END:
            move(agents[agent_id].end_wrap_up(now), now)
        elif kind == _READY:
            move(agents[agent_id].ready(now), now)
        else:
            timers.discard(now)
            apply(dispatcher.timer(now), now)
        wake = dispatcher.next_wakeup(now)
        if wake is not None and wake not in timers:
            timers.add(max(wake, now))
            push(max(wake, now), _TIMER)
    for agent in list(agents.values()):
        # Close the occupancy books at the end of the window.
        low, high = max(agent.state_since, start), stop
        if high > low and agent.state is not AgentState.PAUSED:
            outcome.staffed_s += high - low
            if agent.state is not AgentState.AVAILABLE:
                outcome.busy_s += high - low
    return all_calls, outcome
