"""The router on hand-made situations: priority with aging, relaxation,
overflow, agent choice, sticky agent, ring-no-answer, tasks pinned to one
agent, agent states and the explanation of each decision."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cti.routing import (
    DEFAULT_CLASSES,
    Agent,
    AgentChoice,
    AgentState,
    AnyLevel,
    Assignment,
    IllegalTransition,
    InvalidPolicy,
    LowerLevel,
    Overflow,
    Pin,
    Policy,
    PriorityClass,
    RingNoAnswer,
    RoutingIndex,
    Service,
    Task,
    TaskKind,
    UnknownService,
    assign,
    due_wrapups,
    effective_priority,
    next_wakeup,
)

SALES = Service("sales", skills={"sales": 5}, wrap_up_seconds=15.0,
                relaxation=(Overflow(after=120.0, service="support"),))
SUPPORT = Service("support", skills={"support": 7}, wrap_up_seconds=10.0,
                  relaxation=(LowerLevel(after=30.0, skill="support", level=5),
                              AnyLevel(after=90.0, skill="support")))
LOYAL = Service("loyal", skills={"support": 3}, sticky_seconds=45.0)
POLICY = Policy(services={s.name: s for s in (SALES, SUPPORT, LOYAL)})


def agent(agent_id: str, since: float = 0.0, state: AgentState = AgentState.AVAILABLE,
          reason: str | None = None, service: str | None = None, **skills: int) -> Agent:
    return Agent(id=agent_id, name=agent_id.title(), interface=f"PJSIP/{agent_id}",
                 skills=skills, state=state, state_since=since, pause_reason=reason,
                 task_service=service)


def call(task_id: str, service: str, at: float, priority: str | None = None,
         **kwargs: object) -> Task:
    return Task(id=task_id, service=service, enqueued_at=at, priority=priority,
                **kwargs)  # type: ignore[arg-type]


def pairs(answer: list[Assignment]) -> list[tuple[str, str]]:
    return [(a.task_id, a.agent_id) for a in answer]


# -- priority -------------------------------------------------------------------

def test_vip_is_served_first_when_one_agent_frees() -> None:
    waiting = [call("std", "sales", 0.0), call("vip", "sales", 10.0, "vip")]
    answer = assign(waiting, [agent("ann", sales=5)], 12.0, POLICY)
    assert pairs(answer) == [("vip", "ann")]


def test_standard_call_waiting_three_minutes_outranks_new_vip() -> None:
    standard, vip = call("std", "sales", 0.0), call("vip", "sales", 180.0, "vip")
    assert effective_priority(standard, 180.0, POLICY) > effective_priority(vip, 180.0, POLICY)
    answer = assign([vip, standard], [agent("ann", sales=5)], 180.0, POLICY)
    assert pairs(answer) == [("std", "ann")]
    assert answer[0].waited_seconds == 180.0


def test_vip_head_start_is_ninety_seconds_of_waiting() -> None:
    # A VIP passes standard calls that arrived less than 90 s before it, not more.
    waiting = [call("early", "sales", 0.0), call("recent", "sales", 15.0),
               call("vip", "sales", 100.0, "vip")]
    answer = assign(waiting, [agent("ann", sales=5), agent("bob", sales=5)], 100.0, POLICY)
    assert pairs(answer) == [("early", "ann"), ("vip", "bob")]


def test_equal_priority_is_first_come_first_served_then_task_id() -> None:
    waiting = [call("b", "sales", 5.0), call("c", "sales", 7.0), call("a", "sales", 5.0)]
    answer = assign(waiting, [agent("ann", sales=5), agent("bob", sales=5)], 10.0, POLICY)
    assert [a.task_id for a in answer] == ["a", "b"]


def test_callback_keeping_its_place_ranks_by_original_enqueue_time() -> None:
    callback = call("cb", "sales", 0.0, kind=TaskKind.CALLBACK)
    waiting = [call("live", "sales", 20.0), callback]
    answer = assign(waiting, [agent("ann", sales=5)], 60.0, POLICY)
    assert pairs(answer) == [("cb", "ann")]


def test_higher_priority_task_wins_the_contested_agent() -> None:
    waiting = [call("std", "support", 0.0), call("vip", "support", 5.0, "vip")]
    answer = assign(waiting, [agent("ann", support=9)], 10.0, POLICY)
    assert pairs(answer) == [("vip", "ann")]


def test_an_agent_is_never_given_two_tasks() -> None:
    waiting = [call(f"t{i}", "sales", float(i)) for i in range(5)]
    answer = assign(waiting, [agent("ann", sales=9), agent("bob", sales=6)], 10.0, POLICY)
    assert pairs(answer) == [("t0", "ann"), ("t1", "bob")]


# -- relaxation and overflow ------------------------------------------------------

def test_relaxation_accepts_lower_level_after_30s() -> None:
    waiting = [call("t", "support", 0.0)]
    agents = [agent("ann", support=5)]
    assert assign(waiting, agents, 29.9, POLICY) == []
    [answer] = assign(waiting, agents, 30.0, POLICY)
    assert answer.agent_id == "ann"
    assert answer.rule == "relaxed: support>=5 after 30s"


def test_any_level_step_accepts_any_level_but_not_a_missing_skill() -> None:
    waiting = [call("t", "support", 0.0)]
    agents = [agent("ann", sales=9), agent("bob", support=1)]
    assert assign(waiting, agents, 89.0, POLICY) == []
    [answer] = assign(waiting, agents, 90.0, POLICY)
    assert (answer.agent_id, answer.rule) == ("bob", "relaxed: support at any level after 90s")


def test_fully_qualified_agent_is_preferred_to_a_relaxed_one() -> None:
    agents = [agent("strong", support=6, sales=10), agent("able", support=7)]
    [answer] = assign([call("t", "support", 0.0)], agents, 40.0, POLICY)
    assert (answer.agent_id, answer.rule) == ("able", "best-skill-level then longest-idle")
    assert answer.passed_over == (
        ("strong", "qualifies only after relaxation, fully qualified agents first"),)


def test_overflow_to_other_service_after_120s() -> None:
    waiting = [call("t", "sales", 0.0)]
    agents = [agent("sue", support=7)]
    assert assign(waiting, agents, 119.0, POLICY) == []
    [answer] = assign(waiting, agents, 120.0, POLICY)
    assert (answer.agent_id, answer.rule) == ("sue", "overflow from sales to support after 120s")


def test_overflow_keeps_the_tasks_own_extra_skills() -> None:
    waiting = [call("t", "sales", 0.0, skills={"french": 5})]
    agents = [agent("sue", support=7), agent("zoe", support=7, french=6)]
    [answer] = assign(waiting, agents, 130.0, POLICY)
    assert answer.agent_id == "zoe"


# -- agent choice ----------------------------------------------------------------

def test_longest_idle_agent_gets_the_call_among_equal_skills() -> None:
    agents = [agent("late", since=50.0, sales=6), agent("early", since=20.0, sales=6),
              agent("mid", since=30.0, sales=6)]
    [answer] = assign([call("t", "sales", 60.0)], agents, 60.0, POLICY)
    assert answer.agent_id == "early"


def test_best_skill_level_first() -> None:
    agents = [agent("idle", since=0.0, sales=6), agent("expert", since=50.0, sales=9)]
    [answer] = assign([call("t", "sales", 60.0)], agents, 60.0, POLICY)
    assert (answer.agent_id, answer.rule) == ("expert", "best-skill-level then longest-idle")


def test_skill_score_is_the_sum_over_required_skills() -> None:
    task = call("t", "sales", 0.0, skills={"french": 3})
    agents = [agent("specialist", sales=10, french=3), agent("allround", sales=7, french=7)]
    [answer] = assign([task], agents, 1.0, POLICY)
    assert answer.agent_id == "allround"
    assert answer.passed_over == (("specialist", "lower skill level (13 < 14)"),)


def test_longest_idle_strategy_ignores_levels() -> None:
    policy = Policy(services=POLICY.services, agent_choice=AgentChoice.LONGEST_IDLE)
    agents = [agent("idle", since=0.0, sales=6), agent("expert", since=50.0, sales=9)]
    [answer] = assign([call("t", "sales", 60.0)], agents, 60.0, policy)
    assert (answer.agent_id, answer.rule) == ("idle", "longest-idle")


def test_explanation_lists_passed_over_agents() -> None:
    agents = [agent("best", since=10.0, sales=9), agent("same", since=5.0, sales=9),
              agent("later", since=8.0, sales=9), agent("weak", since=1.0, sales=5),
              agent("missed", since=0.0, sales=9), agent("other", support=9)]
    task = call("t", "sales", 0.0).with_no_answer("missed", 15.0)
    [answer] = assign([task], agents, 20.0, POLICY)
    assert answer.agent_id == "same"
    assert answer.passed_over == (
        ("later", "idle for less time (available since 8.000, chosen agent since 5.000)"),
        ("best", "idle for less time (available since 10.000, chosen agent since 5.000)"),
        ("weak", "lower skill level (5 < 9)"),
        ("missed", "rang no answer on this task at 15.000"),
    )
    assert answer.effective_priority == 20.0


# -- sticky agent -------------------------------------------------------------------

def test_sticky_agent_preferred_within_window() -> None:
    task = call("t", "loyal", 0.0, customer="c42", preferred_agent="kim")
    agents = [agent("kim", support=3), agent("top", support=10)]
    [answer] = assign([task], agents, 10.0, POLICY)
    assert (answer.agent_id, answer.rule) == ("kim", "sticky-agent")
    assert answer.passed_over == (("top", "sticky agent kim preferred"),)


def test_task_waits_for_busy_sticky_agent_until_the_window_ends() -> None:
    task = call("t", "loyal", 0.0, preferred_agent="kim")
    agents = [agent("kim", state=AgentState.ON_CALL, support=3), agent("top", support=10)]
    assert assign([task], agents, 44.9, POLICY) == []
    assert next_wakeup([task], agents, 10.0, POLICY) == 45.0
    [answer] = assign([task], agents, 45.0, POLICY)
    assert (answer.agent_id, answer.rule) == ("top", "best-skill-level then longest-idle")


def test_paused_sticky_agent_does_not_hold_the_task() -> None:
    task = call("t", "loyal", 0.0, preferred_agent="kim")
    agents = [agent("kim", state=AgentState.PAUSED, reason="lunch", support=3),
              agent("top", support=10)]
    assert pairs(assign([task], agents, 1.0, POLICY)) == [("t", "top")]


# -- ring-no-answer and agent states ---------------------------------------------------

def test_agent_with_ring_no_answer_is_not_retried_immediately() -> None:
    task = call("t", "sales", 0.0).with_no_answer("ann", 20.0)
    agents = [agent("ann", since=35.0, sales=9)]
    assert assign([task], agents, 40.0, POLICY) == []
    assert next_wakeup([task], agents, 40.0, POLICY) == 80.0
    assert pairs(assign([task], agents, 80.0, POLICY)) == [("t", "ann")]
    assert pairs(assign([task], [*agents, agent("bob", sales=5)], 40.0, POLICY)) == [("t", "bob")]


def test_paused_and_wrap_up_agents_get_nothing() -> None:
    agents = [agent("p", state=AgentState.PAUSED, reason="break", sales=9),
              agent("w", state=AgentState.WRAP_UP, service="sales", sales=9),
              agent("r", state=AgentState.RINGING, sales=9),
              agent("o", state=AgentState.LOGGED_OUT, sales=9)]
    assert assign([call("t", "sales", 0.0)], agents, 100.0, POLICY) == []


def test_wrap_up_ends_after_the_services_wrap_up_seconds() -> None:
    wrapping = agent("w", since=100.0, state=AgentState.WRAP_UP, service="sales", sales=9)
    assert due_wrapups([wrapping], POLICY.services, 114.9) == []
    assert next_wakeup([], [wrapping], 101.0, POLICY) == 115.0
    [done] = due_wrapups([wrapping], POLICY.services, 120.0)
    # Idle time starts when wrap-up ended, not when the timer fired.
    assert (done.state, done.state_since) == (AgentState.AVAILABLE, 115.0)


def test_agent_lifecycle_through_a_call() -> None:
    ann = agent("ann", state=AgentState.LOGGED_OUT, sales=5).login(0.0)
    ann = ann.reserve(1.0, "sales").ring(2.0).answer(5.0).end_call(65.0)
    assert (ann.state, ann.calls_handled, ann.last_call_end) == (AgentState.WRAP_UP, 1, 65.0)
    assert ann.task_service == "sales"
    ann = ann.pause(70.0, "coffee")
    assert (ann.state, ann.pause_reason) == (AgentState.PAUSED, "coffee")
    assert ann.ready(80.0).state is AgentState.AVAILABLE
    assert ann.ready(80.0).pause_reason is None


def test_illegal_agent_transition_names_both_states() -> None:
    talking = agent("ann", state=AgentState.ON_CALL, sales=5)
    with pytest.raises(IllegalTransition) as raised:
        talking.pause(1.0, "lunch")
    message = str(raised.value)
    assert "on_call" in message and "paused" in message and "ann" in message
    assert raised.value.code == "illegal_agent_transition"
    with pytest.raises(IllegalTransition, match="available -> on_call"):
        agent("bob", sales=5).answer(1.0)


def test_levels_outside_one_to_ten_are_refused() -> None:
    with pytest.raises(ValueError, match=r"outside 1\.\.10"):
        agent("ann", sales=11)


# -- policy and wakeups ------------------------------------------------------------------

def test_policy_refuses_overflow_to_unknown_service() -> None:
    broken = Service("x", relaxation=(Overflow(after=10.0, service="nowhere"),))
    with pytest.raises(InvalidPolicy, match="nowhere"):
        Policy(services={"x": broken})


def test_a_dialled_number_leads_to_its_service() -> None:
    lines = (Service("sales", numbers=("+33140000001",)), Service("support", numbers=("801",)))
    policy = Policy(services={s.name: s for s in lines})
    found = policy.service_for_number("801")
    assert found is not None and found.name == "support"
    assert policy.service_for_number("999") is None
    with pytest.raises(InvalidPolicy, match="801"):
        Policy(services={"a": Service("a", numbers=("801",)), "b": Service("b", numbers=("801",))})


def test_task_for_unknown_service_is_refused() -> None:
    with pytest.raises(UnknownService):
        assign([call("t", "nowhere", 0.0)], [], 1.0, POLICY)


def test_next_wakeup_is_the_next_relaxation_step() -> None:
    waiting = [call("t", "support", 0.0)]
    agents = [agent("ann", support=1)]
    assert next_wakeup(waiting, agents, 10.0, POLICY) == 30.0
    assert next_wakeup(waiting, agents, 30.0, POLICY) == 90.0
    assert next_wakeup(waiting, agents, 90.0, POLICY) is None


def test_next_wakeup_sees_an_aging_swap_between_assignable_tasks() -> None:
    classes = {**DEFAULT_CLASSES, "slow": PriorityClass(base=10.0, aging_per_second=0.5),
               "fast": PriorityClass(base=0.0, aging_per_second=1.0)}
    policy = Policy(services={"plain": Service("plain")}, classes=classes)
    waiting = [call("slow", "plain", 0.0, "slow"), call("fast", "plain", 0.0, "fast")]
    agents = [agent("ann")]
    assert pairs(assign(waiting, agents, 5.0, policy)) == [("slow", "ann")]
    wake = next_wakeup(waiting, agents, 5.0, policy)
    assert wake is not None and 19.99 < wake <= 20.0
    assert pairs(assign(waiting, agents, 20.01, policy)) == [("fast", "ann")]


# -- the incremental index ---------------------------------------------------------------

def test_index_gives_a_freed_agent_the_best_task_it_can_take() -> None:
    waiting = [call("sales", "sales", 0.0), call("std", "support", 5.0),
               call("vip", "support", 10.0, "vip")]
    index = RoutingIndex(POLICY, [agent("ann", state=AgentState.ON_CALL, support=9)], waiting)
    assert index.assign_all(12.0) == []
    index.put_agent(agent("ann", since=12.0, support=9))
    choice = index.assign_for_agent("ann", 12.0)
    assert choice == assign(waiting, [agent("ann", since=12.0, support=9)], 12.0, POLICY)[0]
    assert (choice.task_id, choice.agent_id) == ("vip", "ann")


def test_index_routes_an_arriving_task_and_wakes_for_relaxation() -> None:
    index = RoutingIndex(POLICY, [agent("ann", support=5), agent("bob", sales=5)])
    index.put_task(call("t", "support", 100.0))
    assert index.assign_for_task("t", 100.0) is None
    assert index.next_wakeup(100.0) == 130.0
    [choice] = index.assign_due(130.0)
    assert (choice.agent_id, choice.rule) == ("ann", "relaxed: support>=5 after 30s")


def test_index_skips_a_task_the_freed_agent_rang_out_on() -> None:
    missed = call("vip", "sales", 0.0, "vip").with_no_answer("ann", 5.0)
    waiting = [missed, call("std", "sales", 1.0)]
    index = RoutingIndex(POLICY, [agent("ann", state=AgentState.RINGING, sales=5)], waiting)
    index.put_agent(agent("ann", since=10.0, sales=5))
    choice = index.assign_for_agent("ann", 10.0)
    assert choice is not None and (choice.task_id, choice.agent_id) == ("std", "ann")


def test_index_leaves_a_task_held_for_its_busy_sticky_agent() -> None:
    held = call("held", "loyal", 0.0, "vip", preferred_agent="kim")
    waiting = [held, call("other", "loyal", 1.0)]
    agents = [agent("kim", state=AgentState.ON_CALL, support=3),
              agent("ann", state=AgentState.WRAP_UP, support=9)]
    index = RoutingIndex(POLICY, agents, waiting)
    index.put_agent(agent("ann", since=10.0, support=9))
    choice = index.assign_for_agent("ann", 10.0)
    assert choice is not None and (choice.task_id, choice.rule) == (
        "other", "best-skill-level then longest-idle")


def test_index_breaks_score_ties_by_idle_time_across_levels() -> None:
    # Equal sums (9+1 and 5+5): the agent idle longer wins, though the search
    # meets the other one first at the top level of the pivot skill.
    policy = Policy(services={"duo": Service("duo", skills={"a": 1, "b": 1})}, explain_limit=0)
    agents = [agent("x", since=10.0, a=9, b=1), agent("y", since=5.0, a=5, b=5)]
    waiting = [call("t", "duo", 0.0)]
    expected = assign(waiting, agents, 20.0, policy)
    assert pairs(expected) == [("t", "y")]
    assert RoutingIndex(policy, agents, waiting).assign_all(20.0) == expected


# -- tasks pinned to one agent (transfer to a named agent) ----------------------------

def pinned(task_id: str, to: str, at: float = 0.0, until: float = 100.0, **kwargs: object
           ) -> Task:
    return call(task_id, "sales", at, pin=Pin(agent=to, by="frank", since=at + 5.0,
                                              until=until), **kwargs)


def test_a_pinned_task_goes_to_its_agent_only_whatever_the_skills() -> None:
    # Bob is better for sales and idle longer; Kim has no sales skill at all.
    agents = [agent("bob", 0.0, sales=9), agent("kim", 50.0, support=3)]
    answer = assign([pinned("t", "kim", 10.0)], agents, 20.0, POLICY)
    assert pairs(answer) == [("t", "kim")]
    assert answer[0].rule == "transferred by agent frank"
    assert answer[0].passed_over == ()


def test_a_pinned_task_waits_for_its_busy_agent_until_the_pin_ends() -> None:
    task = pinned("t", "kim", 10.0, until=75.0)
    agents = [agent("bob", 0.0, sales=9),
              agent("kim", 12.0, AgentState.ON_CALL, service="sales", sales=5)]
    assert assign([task], agents, 74.9, POLICY) == []
    assert next_wakeup([task], agents, 20.0, POLICY) == 75.0
    answer = assign([task], agents, 75.0, POLICY)
    assert pairs(answer) == [("t", "bob")]
    assert answer[0].rule != "transferred by agent frank"
    assert answer[0].waited_seconds == 65.0  # its original place in the queue


def test_a_ring_out_by_the_pinned_agent_sends_the_task_back_to_its_service() -> None:
    task = pinned("t", "kim", 10.0).with_no_answer("kim", 30.0)
    agents = [agent("bob", 0.0, sales=9), agent("kim", 0.0, sales=9)]
    # Kim is free but rang out on it: Bob, at once (not at the pin's end).
    assert pairs(assign([task], agents, 31.0, POLICY)) == [("t", "bob")]
    # A ring-out before the pin does not undo the colleague's choice.
    earlier = call("t", "sales", 0.0, no_answers=(RingNoAnswer("kim", 3.0),),
                   pin=Pin("kim", "frank", 10.0, 100.0))
    assert pairs(assign([earlier], agents, 31.0, POLICY)) == [("t", "kim")]


def test_a_pinned_task_comes_before_the_queue_for_its_agent() -> None:
    queue = call("vip", "sales", 0.0, "vip")  # a VIP who waited 60 s
    task = pinned("t", "kim", 55.0, until=200.0)
    agents = [agent("kim", 0.0, sales=9)]
    assert pairs(assign([queue, task], agents, 60.0, POLICY)) == [("t", "kim")]
    index = RoutingIndex(POLICY, [agent("kim", 0.0, AgentState.WRAP_UP, service="sales",
                                        sales=9)], [queue, task])
    index.put_agent(agent("kim", 60.0, sales=9))
    choice = index.assign_for_agent("kim", 60.0)
    assert choice is not None and choice.task_id == "t"


def test_index_gives_other_agents_a_task_whose_pin_ended() -> None:
    task = pinned("t", "kim", 10.0, until=50.0)
    index = RoutingIndex(POLICY, [agent("kim", 0.0, AgentState.ON_CALL, service="sales",
                                        sales=9),
                                  agent("bob", 0.0, AgentState.PAUSED, "break", sales=9)],
                         [task])
    index.put_agent(agent("bob", 20.0, sales=9))
    assert index.assign_for_agent("bob", 20.0) is None  # still held for Kim
    assert index.next_wakeup(20.0) == 50.0
    assert pairs(index.assign_due(50.0)) == [("t", "bob")]


def test_a_pin_cannot_end_before_it_starts() -> None:
    with pytest.raises(ValueError, match="pinned until"):
        call("t", "sales", 0.0, pin=Pin("kim", "frank", 10.0, 5.0))


def test_an_engaged_agent_is_offered_nothing_until_their_phone_is_free() -> None:
    # Ann has been idle longest, but her phone is busy with a consultation
    # a colleague placed (not the router): the caller goes to Bob, a second
    # one waits, and Ann takes it once her phone is free again.
    index = RoutingIndex(POLICY, [agent("ann", 0.0, support=9), agent("bob", 5.0, support=9)])
    assert index.engage("ann", True) and not index.engage("ann", True)
    first = index.assign_arriving(call("c1", "support", 10.0), 10.0)
    assert first is not None and first.agent_id == "bob"
    assert "ann" not in [who for who, _ in first.passed_over]
    bob = index.agent("bob")
    assert bob is not None
    index.put_agent(bob.reserve(10.0, "support"))
    second = call("c2", "support", 11.0)
    assert index.assign_arriving(second, 11.0) is None
    index.put_task(second)
    assert index.assign_for_agent("ann", 12.0) is None
    assert index.assign_all(12.0) == []
    assert index.engage("ann", False) and not index.engaged("ann")
    assert pairs([a for a in [index.assign_for_agent("ann", 13.0)] if a]) == [("c2", "ann")]


def test_a_sticky_task_waits_for_its_engaged_agent_as_for_a_busy_one() -> None:
    index = RoutingIndex(POLICY, [agent("kim", 0.0, support=5), agent("lou", 0.0, support=5)])
    index.engage("kim", True)
    task = call("c1", "loyal", 10.0, preferred_agent="kim")
    assert index.assign_arriving(task, 10.0) is None  # held for Kim within 45 s
    index.put_task(task)
    index.engage("kim", False)
    answer = index.assign_for_agent("kim", 20.0)
    assert answer is not None and (answer.agent_id, answer.rule) == ("kim", "sticky-agent")


def test_a_task_whose_pin_ran_out_waits_in_its_service_queue_again() -> None:
    # Held for Kim (on a call) until 75 s; nobody free then. At its pin's
    # end the index moves it back among its service's tasks, its place
    # kept, and Bob takes it when he is free.
    index = RoutingIndex(POLICY, [
        agent("kim", 12.0, AgentState.ON_CALL, service="sales", sales=5),
        agent("bob", 0.0, AgentState.ON_CALL, service="sales", sales=9)])
    index.put_task(pinned("t", "kim", 10.0, until=75.0))
    assert index.next_wakeup(20.0) == 75.0
    assert index.assign_due(75.0) == []
    task = index.task("t")
    assert task is not None and task.pin is None and task.enqueued_at == 10.0
    bob = index.agent("bob")
    assert bob is not None
    index.put_agent(replace(bob, state=AgentState.AVAILABLE, state_since=80.0))
    answer = index.assign_for_agent("bob", 80.0)
    assert answer is not None and (answer.task_id, answer.waited_seconds) == ("t", 70.0)
