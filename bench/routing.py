"""Benchmark: latency of one routing decision on a loaded center.

A seeded center of 5,000 agents with 50 skills (25 services, each asking for
one or two skills, with relaxation steps, overflow and sticky windows) and
1,000 waiting tasks, settled as the shell keeps it. Then, alternately:
- an agent becomes free: `put_agent` + `assign_for_agent`;
- a task arrives: `put_task` + `assign_for_task`;
each answer is applied (agent reserved, task removed) outside the timing, and
the clock advances 20 ms per event, firing `assign_due` on the timers
`next_wakeup` asks for (timed separately).
The bare baseline, measured in the same run, is the time to merely copy the
inputs (the agent and task lists) that a full-pass router would read.
Prints one JSON object; target: decision p99 < 1 ms.

    .venv/bin/python bench/routing.py [--events 40000] [--seed 7]
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cti.routing import (
    Agent,
    AgentState,
    AnyLevel,
    Assignment,
    LowerLevel,
    Overflow,
    Policy,
    Relaxation,
    RoutingIndex,
    Service,
    Task,
    assign,
)

AGENTS, WAITING, SKILLS, SERVICES = 5_000, 1_000, 50, 25
STEP = 0.02  # seconds of simulated time per event


def build_policy(rng: random.Random) -> Policy:
    skills = [f"skill{i:02d}" for i in range(SKILLS)]
    services = {}
    for i in range(SERVICES):
        name = f"service{i:02d}"
        primary, secondary = rng.sample(skills, 2)
        needs = {primary: rng.randint(4, 7)}
        if rng.random() < 0.4:
            needs[secondary] = rng.randint(2, 5)
        steps: list[Relaxation] = [LowerLevel(30.0, primary, 2), AnyLevel(90.0, primary)]
        if rng.random() < 0.5:
            steps.append(Overflow(180.0, f"service{(i + 1) % SERVICES:02d}"))
        services[name] = Service(name, skills=needs, relaxation=tuple(steps),
                                 sticky_seconds=20.0 if i % 5 == 0 else 0.0)
    return Policy(services=services)


def build_agent(rng: random.Random, number: int, policy: Policy, state: AgentState,
                now: float) -> Agent:
    # Each agent covers two or three services and a few unrelated skills.
    skills: dict[str, int] = {}
    for service in rng.sample(list(policy.services.values()), rng.randint(2, 3)):
        for skill in service.skills:
            skills[skill] = rng.randint(1, 10)
    for _ in range(rng.randint(1, 4)):
        skills[f"skill{rng.randrange(SKILLS):02d}"] = rng.randint(1, 10)
    return Agent(id=f"a{number}", name=f"Agent {number}", interface=f"PJSIP/{1000 + number}",
                 skills=skills, state=state, state_since=now - rng.uniform(0, 600),
                 task_service=rng.choice(list(policy.services)))


def new_task(rng: random.Random, number: int, policy: Policy, at: float,
             agent_ids: list[str]) -> Task:
    return Task(id=f"t{number}", service=rng.choice(list(policy.services)), enqueued_at=at,
                priority="vip" if rng.random() < 0.2 else "standard",
                preferred_agent=rng.choice(agent_ids) if rng.random() < 0.1 else None)


def percentile(values: list[int], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] / 1000.0


def run(events: int, seed: int) -> dict[str, object]:
    rng = random.Random(seed)
    policy = build_policy(rng)
    now = 10_000.0
    agents = {}
    for number in range(AGENTS):
        # A loaded floor: four in five agents are talking.
        state = AgentState.AVAILABLE if rng.random() < 0.2 else AgentState.ON_CALL
        agents[f"a{number}"] = build_agent(rng, number, policy, state, now)
    index = RoutingIndex(policy, agents.values())
    tasks: dict[str, Task] = {}
    agent_ids = list(agents)

    def apply(choice: Assignment | None, at: float) -> None:
        if choice is None:
            return
        task = tasks.pop(choice.task_id)
        agents[choice.agent_id] = agents[choice.agent_id].reserve(at, task.service).ring(at) \
            .answer(at)
        index.put_agent(agents[choice.agent_id])
        index.remove_task(choice.task_id)

    # Fill the queues as the shell would: arrivals over the last 5 minutes,
    # each routed on arrival, until 1,000 tasks are left waiting.
    number = 0
    arrival = now - 300.0
    while len(tasks) < WAITING:
        arrival += 0.05
        tasks[f"t{number}"] = task = new_task(rng, number, policy, min(arrival, now), agent_ids)
        number += 1
        index.put_task(task)
        apply(index.assign_for_task(task.id, min(arrival, now)), min(arrival, now))
    for settled in index.assign_all(now):
        apply(settled, now)

    reference_start = time.perf_counter_ns()
    leftover = assign(list(tasks.values()), list(agents.values()), now, policy)
    reference_ms = (time.perf_counter_ns() - reference_start) / 1e6
    assert leftover == [], "the center is not settled"

    agent_ns: list[int] = []
    task_ns: list[int] = []
    timer_ns: list[int] = []
    copy_ns: list[int] = []
    assigned = 0
    wake = index.next_wakeup(now)
    gc.collect()
    for event in range(events):
        now += STEP
        if wake is not None and wake <= now:
            start = time.perf_counter_ns()
            due = index.assign_due(now)
            timer_ns.append(time.perf_counter_ns() - start)
            for timed in due:
                apply(timed, now)
        if event % 2 == 0:
            talking = rng.choice(agent_ids)
            while agents[talking].state is not AgentState.ON_CALL:
                talking = rng.choice(agent_ids)
            freed = agents[talking].end_call(now).end_wrap_up(now)
            agents[talking] = freed
            start = time.perf_counter_ns()
            index.put_agent(freed)
            choice = index.assign_for_agent(talking, now)
            agent_ns.append(time.perf_counter_ns() - start)
        else:
            tasks[f"t{number}"] = task = new_task(rng, number, policy, now, agent_ids)
            number += 1
            start = time.perf_counter_ns()
            index.put_task(task)
            choice = index.assign_for_task(task.id, now)
            task_ns.append(time.perf_counter_ns() - start)
        assigned += choice is not None
        apply(choice, now)
        wake = index.next_wakeup(now)
        if event % 10 == 0:
            # The bare baseline: copy what a full pass would have to read.
            start = time.perf_counter_ns()
            copied = (list(agents.values()), list(tasks.values()))
            copy_ns.append(time.perf_counter_ns() - start)
            del copied

    decisions = agent_ns + task_ns
    copy_us = statistics.median(copy_ns) / 1000.0
    p99 = percentile(decisions, 0.99)
    return {
        "benchmark": "routing",
        "agents": AGENTS,
        "skills": SKILLS,
        "services": SERVICES,
        "waiting_tasks_at_start": WAITING,
        "waiting_tasks_at_end": len(tasks),
        "free_agents_at_end": sum(a.state is AgentState.AVAILABLE for a in agents.values()),
        "events": len(decisions),
        "assigned": assigned,
        "decision_us_median": percentile(decisions, 0.5),
        "decision_us_p99": p99,
        "agent_freed_us_median": percentile(agent_ns, 0.5),
        "agent_freed_us_p99": percentile(agent_ns, 0.99),
        "task_arrived_us_median": percentile(task_ns, 0.5),
        "task_arrived_us_p99": percentile(task_ns, 0.99),
        "timer_us_median": percentile(timer_ns, 0.5) if timer_ns else None,
        "timer_us_p99": percentile(timer_ns, 0.99) if timer_ns else None,
        "timers": len(timer_ns),
        "baseline_copy_inputs_us_median": copy_us,
        "ratio_p99_to_copy": round(p99 / copy_us, 2),
        "ratio_median_to_copy": round(percentile(decisions, 0.5) / copy_us, 2),
        "reference_full_assign_ms": round(reference_ms, 1),
        "target_p99_us": 1000,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    print(json.dumps(run(args.events, args.seed)))
