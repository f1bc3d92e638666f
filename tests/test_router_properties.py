"""Router invariants on random centers (hypothesis): no agent gets two
tasks, nobody gets a task they are not qualified for after relaxation, a
higher priority is never passed over for an agent it could take, every task
is eventually served while a qualified agent keeps coming back, nothing
changes before `next_wakeup`, and the incremental index answers exactly as
the reference `assign`.

The qualification and sticky-hold oracles below are written again from the
rules, independently of cti.routing.policy."""

from __future__ import annotations

from dataclasses import dataclass, replace

from hypothesis import HealthCheck, given, settings
from hypothesis import event as note_event
from hypothesis import strategies as st

from cti.routing import (
    DEFAULT_CLASSES,
    Agent,
    AgentChoice,
    AgentState,
    AnyLevel,
    Assignment,
    LowerLevel,
    Overflow,
    Pin,
    Policy,
    PriorityClass,
    Relaxation,
    RingNoAnswer,
    RoutingIndex,
    Service,
    Task,
    TaskKind,
    assign,
    due_wrapups,
    effective_priority,
    next_wakeup,
)

SKILLS = ("a", "b", "c")
BUSY = {AgentState.RESERVED, AgentState.RINGING, AgentState.ON_CALL, AgentState.WRAP_UP}
FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

levels = st.integers(1, 10)
# Agents a little stronger than what services ask, so that many tasks have
# candidates and the interesting branches (relaxed, sticky, overflow) fire.
agent_levels = st.integers(2, 10)
required_levels = st.integers(1, 8)
# Tenths of a second: sums like 0.1 + 29.9 exercise rounding at step boundaries.
times = st.integers(0, 3000).map(lambda tenths: tenths / 10)
# Waits cluster in the first minute, where sticky windows and early steps act.
waits = st.one_of(st.integers(0, 600).map(lambda tenths: tenths / 10), times)
afters = st.sampled_from([0.0, 10.0, 29.9, 30.0, 45.5, 120.0])


@dataclass(frozen=True)
class World:
    policy: Policy
    agents: list[Agent]
    tasks: list[Task]
    now: float


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    # "s0" asks nothing by default: a general line any agent may take.
    names = [f"s{i}" for i in range(draw(st.integers(1, 3)))]
    services = {}
    for name in names:
        kinds: list[st.SearchStrategy[Relaxation]] = [
            st.builds(LowerLevel, after=afters, skill=st.sampled_from(SKILLS), level=levels),
            st.builds(AnyLevel, after=afters, skill=st.sampled_from(SKILLS)),
        ]
        others = [other for other in names if other != name]
        if others:
            kinds.append(st.builds(Overflow, after=afters, service=st.sampled_from(others)))
        services[name] = Service(
            name,
            skills=draw(st.dictionaries(st.sampled_from(SKILLS), required_levels,
                                        max_size=0 if name == "s0" else 2)),
            relaxation=tuple(draw(st.lists(st.one_of(kinds), max_size=3))),
            wrap_up_seconds=draw(st.sampled_from([0.0, 5.0, 20.5])),
            sticky_seconds=draw(st.sampled_from([0.0, 0.0, 30.0])),
            priority_weight=draw(st.sampled_from([0.0, 0.0, 15.0])),
        )
    rates = st.sampled_from([0.0, 0.5, 1.0, 2.0])
    bases = st.sampled_from([0.0, 10.0, 60.0])
    classes = {**DEFAULT_CLASSES,
               "vip": PriorityClass(draw(bases), draw(rates)),
               "standard": PriorityClass(draw(bases), draw(rates))}
    return Policy(services=services, classes=classes,
                  agent_choice=draw(st.sampled_from(list(AgentChoice))),
                  no_answer_retry_seconds=draw(st.sampled_from([0.0, 30.0, 60.0])),
                  explain_limit=draw(st.integers(0, 3)))


@st.composite
def agents_for(draw: st.DrawFn, policy: Policy, now: float, count: int,
               prefix: str = "g") -> list[Agent]:
    agents = []
    for i in range(count):
        state = draw(st.sampled_from([AgentState.AVAILABLE] * 3 + list(AgentState)))
        agents.append(Agent(
            id=f"{prefix}{i}", name=f"Agent {i}", interface=f"PJSIP/{prefix}{i}",
            skills=draw(st.dictionaries(st.sampled_from(SKILLS), agent_levels, min_size=1)),
            state=state,
            state_since=now - draw(waits),
            pause_reason="break" if state is AgentState.PAUSED else None,
            task_service=draw(st.sampled_from([None, *policy.services])),
        ))
    # A world as the shell keeps it: wrap-ups whose time is up are ended.
    ended = {agent.id: agent for agent in due_wrapups(agents, policy.services, now)}
    return [ended.get(agent.id, agent) for agent in agents]


@st.composite
def tasks_for(draw: st.DrawFn, policy: Policy, now: float, agent_ids: list[str],
              count: int, prefix: str = "t") -> list[Task]:
    tasks = []
    for i in range(count):
        enqueued = now - draw(waits)
        misses = draw(st.lists(st.sampled_from(agent_ids), max_size=2)) if agent_ids else []
        tasks.append(Task(
            id=f"{prefix}{i}",
            service=draw(st.sampled_from(sorted(policy.services))),
            enqueued_at=enqueued,
            kind=draw(st.sampled_from(list(TaskKind))),
            priority=draw(st.sampled_from([None, "vip", "standard"])),
            skills=draw(st.dictionaries(st.sampled_from(SKILLS), required_levels, max_size=1)),
            preferred_agent=draw(st.sampled_from([None, "ghost", *agent_ids])),
            no_answers=tuple(RingNoAnswer(agent, max(enqueued, now - draw(waits)))
                             for agent in misses),
            pin=draw(pins(enqueued, now, agent_ids)),
        ))
    return tasks


@st.composite
def pins(draw: st.DrawFn, enqueued: float, now: float, agent_ids: list[str]) -> Pin | None:
    """Now and then a task transferred to a named agent: pinned since some
    time after it was enqueued, for a while that may be over."""
    if draw(st.integers(0, 2)) != 0:
        return None
    since = max(enqueued, now - draw(waits))
    return Pin(agent=draw(st.sampled_from(["ghost", *agent_ids])), by="x", since=since,
               until=since + draw(st.sampled_from([0.0, 15.5, 60.0, 400.0])))


@st.composite
def worlds(draw: st.DrawFn, max_agents: int = 9, max_tasks: int = 8) -> World:
    policy = draw(policies())
    now = 300.0 + draw(times)
    agents = draw(agents_for(policy, now, draw(st.integers(0, max_agents))))
    tasks = draw(tasks_for(policy, now, [a.id for a in agents], draw(st.integers(0, max_tasks))))
    return World(policy, agents, tasks, now)


# -- independent oracles ---------------------------------------------------------

def meets(agent: Agent, levels: dict[str, int]) -> bool:
    return all(agent.skills.get(skill, 0) >= level for skill, level in levels.items())


def qualifies(agent: Agent, task: Task, policy: Policy, now: float) -> bool:
    service = policy.services[task.service]
    accepted = dict(service.skills)
    for skill, level in task.skills.items():
        accepted[skill] = max(accepted.get(skill, 0), level)
    overflow_levels = []
    for step in service.relaxation:
        if now < task.enqueued_at + step.after:
            continue
        if isinstance(step, Overflow):
            levels = dict(policy.services[step.service].skills)
            for skill, level in task.skills.items():
                levels[skill] = max(levels.get(skill, 0), level)
            overflow_levels.append(levels)
        elif step.skill in accepted:
            floor = 1 if isinstance(step, AnyLevel) else step.level
            accepted[step.skill] = min(accepted[step.skill], floor)
    return any(meets(agent, levels) for levels in [accepted, *overflow_levels])


def pinned_to(task: Task, now: float) -> str | None:
    """The agent a task is held for: pinned, the pin not over, and that
    agent has not let it ring out since it was pinned."""
    pin = task.pin
    if pin is None or now >= pin.until:
        return None
    if any(m.agent == pin.agent and m.at >= pin.since for m in task.no_answers):
        return None
    return pin.agent


def blocked(task: Task, agent_id: str, policy: Policy, now: float) -> bool:
    return any(miss.agent == agent_id and now < miss.at + policy.no_answer_retry_seconds
               for miss in task.no_answers)


def held(task: Task, agents: dict[str, Agent], taken: set[str], policy: Policy,
         now: float) -> bool:
    window = policy.services[task.service].sticky_seconds
    preferred = agents.get(task.preferred_agent or "")
    if preferred is None or window <= 0 or now >= task.enqueued_at + window:
        return False
    if blocked(task, preferred.id, policy, now) or not qualifies(preferred, task, policy, now):
        return False
    return preferred.state in BUSY or preferred.id in taken


def outcome(rules: list[str]) -> str:
    """For --hypothesis-show-statistics: which rules the examples reached."""
    kinds = sorted({rule.split(":")[0] for rule in rules})
    return f"{len(rules)} assigned {' '.join(kinds)}"


def rank(task: Task, policy: Policy, now: float) -> tuple[bool, float, float, str]:
    # Pinned tasks first: a transfer to an agent is a call to their own line.
    return (pinned_to(task, now) is None, -effective_priority(task, now, policy),
            task.enqueued_at, task.id)


# -- invariants of one answer --------------------------------------------------------

@FAST
@given(worlds())
def test_an_agent_is_never_assigned_two_tasks(world: World) -> None:
    answer = assign(world.tasks, world.agents, world.now, world.policy)
    agents = {agent.id: agent for agent in world.agents}
    assert len({a.agent_id for a in answer}) == len(answer)
    assert len({a.task_id for a in answer}) == len(answer)
    assert all(agents[a.agent_id].state is AgentState.AVAILABLE for a in answer)


@FAST
@given(worlds())
def test_never_a_task_whose_skills_the_agent_lacks_after_relaxation(world: World) -> None:
    agents = {agent.id: agent for agent in world.agents}
    tasks = {task.id: task for task in world.tasks}
    for a in assign(world.tasks, world.agents, world.now, world.policy):
        task, agent = tasks[a.task_id], agents[a.agent_id]
        held_for = pinned_to(task, world.now)
        if held_for is not None:
            # A colleague chose this agent: skills do not matter, nobody else may.
            assert agent.id == held_for
            continue
        assert qualifies(agent, task, world.policy, world.now)
        assert not blocked(task, agent.id, world.policy, world.now)


@FAST
@given(worlds())
def test_higher_priority_is_never_served_after_lower_for_the_same_agent(world: World) -> None:
    policy, now = world.policy, world.now
    answer = assign(world.tasks, world.agents, now, policy)
    agents = {agent.id: agent for agent in world.agents}
    tasks = {task.id: task for task in world.tasks}
    ranks = [rank(tasks[a.task_id], policy, now) for a in answer]
    assert ranks == sorted(ranks)
    position = {a.task_id: i for i, a in enumerate(answer)}
    for i, lower in enumerate(answer):
        agent = agents[lower.agent_id]
        taken_before = {a.agent_id for a in answer[:i]}
        for task in world.tasks:
            if rank(task, policy, now) >= ranks[i] or position.get(task.id, len(answer)) < i:
                continue
            held_for = pinned_to(task, now)
            could_take = (agent.id == held_for) if held_for is not None else (
                qualifies(agent, task, policy, now)
                and not blocked(task, agent.id, policy, now)
                and not held(task, agents, taken_before, policy, now))
            assert not could_take, f"{task.id} outranks {lower.task_id} for {agent.id}"


@FAST
@given(worlds(), st.floats(0.0, 1.0))
def test_the_answer_does_not_change_before_next_wakeup(world: World, fraction: float) -> None:
    policy, now = world.policy, world.now
    wake = next_wakeup(world.tasks, world.agents, now, policy)
    later = now + fraction * ((wake if wake is not None else now + 1000.0) - now)
    if wake is not None and later >= wake:
        return

    def decisions(at: float) -> list[tuple[str, str, str, tuple[tuple[str, str], ...]]]:
        return [(a.task_id, a.agent_id, a.rule, a.passed_over)
                for a in assign(world.tasks, world.agents, at, policy)]

    rules = [decision[2] for decision in decisions(now)]
    note_event(f"wakeup {'none' if wake is None else 'set'}, {outcome(rules)}")
    assert decisions(later) == decisions(now)


# -- starvation ---------------------------------------------------------------------

@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_every_task_is_served_while_a_qualified_agent_keeps_coming_back(
        data: st.DataObject) -> None:
    policy = data.draw(policies())
    short = {name: replace(s, wrap_up_seconds=5.0) for name, s in policy.services.items()}
    policy = replace(policy, services=short)
    now = 1000.0
    universal = Agent(id="u", name="U", interface="PJSIP/u", skills=dict.fromkeys(SKILLS, 10),
                      state=AgentState.AVAILABLE, state_since=now)
    others = data.draw(agents_for(policy, now, data.draw(st.integers(0, 4)), prefix="o"))
    agents = {agent.id: agent for agent in [universal, *others]}
    waiting = {t.id: t for t in data.draw(tasks_for(policy, now, list(agents), 6, prefix="i"))}
    arrivals = data.draw(st.lists(st.booleans(), max_size=40))
    misses = data.draw(st.lists(st.booleans(), max_size=10))
    offered = set(waiting)
    served: set[str] = set()
    for step in range(400):
        now += 10.0
        for agent in due_wrapups(agents.values(), policy.services, now):
            agents[agent.id] = agent
        if step < len(arrivals) and arrivals[step]:
            [task] = data.draw(tasks_for(policy, now, list(agents), 1, prefix=f"n{step}-"))
            waiting[task.id] = task
            offered.add(task.id)
        for choice in assign(list(waiting.values()), list(agents.values()), now, policy):
            task, agent = waiting[choice.task_id], agents[choice.agent_id]
            agent = agent.reserve(now, task.service).ring(now)
            if misses and misses.pop():
                agents[agent.id] = agent.release(now)
                waiting[task.id] = task.with_no_answer(agent.id, now)
                continue
            # The call is short: answered and ended within the step, then wrap-up.
            agents[agent.id] = agent.answer(now).end_call(now)
            del waiting[task.id]
            served.add(task.id)
        if not waiting and step >= len(arrivals):
            break
    assert served == offered


# -- incremental index == reference ----------------------------------------------------

@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds(max_agents=40, max_tasks=6))
def test_index_full_pass_agrees_with_reference_on_a_crowded_floor(world: World) -> None:
    # Many free agents: the bucket search prunes levels and keeps runners-up.
    index = RoutingIndex(world.policy, world.agents, world.tasks)
    assert index.assign_all(world.now) == assign(world.tasks, world.agents, world.now,
                                                 world.policy)


def settle(world: World) -> tuple[RoutingIndex, list[Agent], list[Task]]:
    """The index and the world after the shell applied the full answer."""
    policy, now = world.policy, world.now
    index = RoutingIndex(policy, world.agents, world.tasks)
    answer = assign(world.tasks, world.agents, now, policy)
    assert index.assign_all(now) == answer
    agents = {agent.id: agent for agent in world.agents}
    waiting = {task.id: task for task in world.tasks}
    for choice in answer:
        agents[choice.agent_id] = agents[choice.agent_id].reserve(
            now, waiting[choice.task_id].service)
        index.put_agent(agents[choice.agent_id])
        del waiting[choice.task_id]
        index.remove_task(choice.task_id)
    return index, list(agents.values()), list(waiting.values())


def as_list(choice: Assignment | None) -> list[Assignment]:
    return [] if choice is None else [choice]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds(), st.data())
def test_incremental_index_agrees_with_reference_assign(world: World,
                                                        data: st.DataObject) -> None:
    policy, now = world.policy, world.now
    index, agents, waiting = settle(world)
    assert assign(waiting, agents, now, policy) == []
    wake = next_wakeup(waiting, agents, now, policy)
    assert index.next_wakeup(now) == wake
    horizon = wake if wake is not None else now + 500.0
    event_at = now + data.draw(st.floats(0.0, 0.999)) * (horizon - now)
    assert assign(waiting, agents, event_at, policy) == []

    event = data.draw(st.sampled_from(["agent", "task", "timer"]))
    if event == "agent":
        busy = {agent.id: agent for agent in agents if agent.state is not AgentState.AVAILABLE}
        # Agents the waiting tasks name (sticky, ring-no-answer) are the tricky ones.
        named = [busy[agent_id] for task in waiting
                 for agent_id in (task.preferred_agent, *(m.agent for m in task.no_answers),
                                  task.pin.agent if task.pin else None)
                 if agent_id in busy]
        [newcomer] = data.draw(agents_for(policy, now, 1, prefix="new"))
        freed = replace(data.draw(st.sampled_from([*busy.values(), *named, newcomer])),
                        state=AgentState.AVAILABLE, state_since=event_at, pause_reason=None)
        agents = [agent for agent in agents if agent.id != freed.id] + [freed]
        index.put_agent(freed)
        incremental = as_list(index.assign_for_agent(freed.id, event_at))
        reference = assign(waiting, agents, event_at, policy)
        assert incremental == reference
        note_event(f"agent event: {outcome([a.rule for a in reference])}")
        assert all(choice.agent_id == freed.id for choice in incremental)
    elif event == "task":
        [arrival] = data.draw(tasks_for(policy, event_at, [a.id for a in agents], 1,
                                        prefix="new"))
        waiting = [*waiting, arrival]
        reference = assign(waiting, agents, event_at, policy)
        note_event(f"task event: {outcome([a.rule for a in reference])}")
        # Decided before it is queued (the switchboard's way), and after.
        assert as_list(index.assign_arriving(arrival, event_at)) == reference
        index.put_task(arrival)
        assert as_list(index.assign_for_task(arrival.id, event_at)) == reference
    else:
        timer = now + data.draw(times)
        due = index.assign_due(timer)
        note_event(f"timer: {outcome([a.rule for a in due])}")
        assert due == assign(waiting, agents, timer, policy)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds(), st.data())
def test_index_agrees_with_reference_on_callers_pinned_to_a_busy_agent(
        world: World, data: st.DataObject) -> None:
    # A settled floor, then callers transferred by name to a busy agent; then
    # either that agent frees before anything else is due (the pinned caller
    # first), or the timer fires first (a pin ended: the caller is routed as
    # any other), each as the reference says.
    policy, now = world.policy, world.now
    index, agents, waiting = settle(world)
    busy = [agent for agent in agents if agent.state is not AgentState.AVAILABLE]
    if not busy:
        return
    target = data.draw(st.sampled_from(busy))
    for i in range(data.draw(st.integers(1, 3))):
        task = Task(id=f"p{i}", service=data.draw(st.sampled_from(sorted(policy.services))),
                    enqueued_at=now - data.draw(waits),
                    priority=data.draw(st.sampled_from([None, "vip"])),
                    pin=Pin(target.id, "x", now, now + data.draw(st.sampled_from([1.0, 60.0]))))
        waiting.append(task)
        index.put_task(task)
        assert index.assign_for_task(task.id, now) is None  # held for the busy agent
    assert index.assign_due(now) == []  # steps due at once (after: 0) change nothing
    wake = index.next_wakeup(now)
    assert wake == next_wakeup(waiting, agents, now, policy)
    assert wake is not None  # the pins end
    if data.draw(st.booleans()):
        due = index.assign_due(wake)
        note_event(f"pinned, timer: {outcome([a.rule for a in due])}")
        assert due == assign(waiting, agents, wake, policy)
        return
    event_at = now + data.draw(st.floats(0.0, 0.999)) * (wake - now)
    freed = replace(target, state=AgentState.AVAILABLE, state_since=event_at, pause_reason=None)
    agents = [agent for agent in agents if agent.id != target.id] + [freed]
    index.put_agent(freed)
    reference = assign(waiting, agents, event_at, policy)
    note_event(f"pinned, agent frees: {outcome([a.rule for a in reference])}")
    assert as_list(index.assign_for_agent(freed.id, event_at)) == reference
    assert [a.rule for a in reference] == ["transferred by agent x"]
