"""Queue and agent KPIs on hand-computed scenarios: service level, ASA,
AHT, abandon thresholds, interval boundaries, calls crossing intervals,
the sliding hour, occupancy and pause time by reason."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cti.kpi import intervals as kpi
from cti.kpi.agents import BUSY, STAFFED, AgentLedger
from cti.kpi.intervals import Day, Tally, interval_of

DAY = 1_700_006_400.0  # a midnight (UTC), a multiple of 900
TARGET = 20.0
SHORT = 5.0


def test_interval_boundaries_belong_to_the_interval_they_open() -> None:
    assert interval_of(DAY) == DAY
    assert interval_of(DAY + 899.999) == DAY
    assert interval_of(DAY + 900) == DAY + 900


def test_service_level_counts_answers_within_target_over_answered_and_abandoned() -> None:
    day = Day(DAY)
    # 4 answered (waits 5, 20, 21, 40 s), 1 abandoned after 30 s, 1 short abandon (4 s)
    for n, wait in enumerate([5.0, 20.0, 21.0, 40.0]):
        queued_at = DAY + 10 * n
        day.record("support", queued_at, kpi.queued(), queued_at)
        day.record("support", queued_at, kpi.answered(wait, TARGET), queued_at + wait)
    day.record("support", DAY + 100, kpi.queued(), DAY + 100)
    day.record("support", DAY + 100, kpi.abandoned(30.0, SHORT), DAY + 130)
    day.record("support", DAY + 200, kpi.queued(), DAY + 200)
    day.record("support", DAY + 200, kpi.abandoned(4.0, SHORT), DAY + 204)
    tally = day.interval("support", int(DAY))
    assert (tally.offered, tally.answered, tally.abandoned, tally.short_abandoned) == (6, 4, 1, 1)
    # within target: 5 s and exactly 20 s; denominator 4 answered + 1 abandoned
    assert tally.service_level() == 2 / 5
    assert tally.asa_s() == (5 + 20 + 21 + 40) / 4
    assert tally.abandon_rate() == 1 / 5


def test_abandon_exactly_at_the_short_threshold_counts_as_abandoned() -> None:
    assert kpi.abandoned(5.0, SHORT).abandoned == 1
    assert kpi.abandoned(4.999, SHORT).short_abandoned == 1
    assert kpi.abandoned(4.999, SHORT).abandoned == 0
    # a zero threshold counts every abandon
    assert kpi.abandoned(0.0, 0.0).abandoned == 1


def test_a_call_crossing_intervals_stays_in_the_interval_it_was_queued_in() -> None:
    day = Day(DAY)
    queued_at = DAY + 890          # 10 s before the 00:15 boundary
    day.record("sales", queued_at, kpi.queued(), queued_at)
    day.record("sales", queued_at, kpi.answered(25.0, TARGET), queued_at + 25)   # answered 00:15:15
    day.record("sales", queued_at, kpi.handled(300.0), queued_at + 325)           # ended 00:20:15
    day.record("sales", queued_at, kpi.wrapped_up(30.0), queued_at + 355)
    first = day.interval("sales", int(DAY))
    second = day.interval("sales", int(DAY + 900))
    assert (first.offered, first.answered, first.handled) == (1, 1, 1)
    assert first.aht_s() == 330.0   # talk 300 + wrap-up 30
    assert first.service_level() == 0.0
    assert second == Tally()


def test_aht_is_talk_plus_hold_plus_wrap_up_over_handled_calls() -> None:
    day = Day(DAY)
    day.record("support", DAY, kpi.handled(100.0, hold_s=20.0), DAY + 150)
    day.record("support", DAY, kpi.wrapped_up(10.0), DAY + 160)
    day.record("support", DAY, kpi.handled(50.0), DAY + 200)
    assert day.today("support").aht_s() == (120 + 10 + 50) / 2


def test_overall_sums_the_services_and_today_sums_the_intervals() -> None:
    day = Day(DAY)
    day.record("support", DAY + 10, kpi.answered(10, TARGET), DAY + 20)
    day.record("sales", DAY + 1000, kpi.answered(30, TARGET), DAY + 1030)
    assert day.today(None).answered == 2
    assert day.today(None).service_level() == 0.5
    assert day.interval(None, int(DAY + 900)).answered == 1
    assert [start for start, _ in day.series(None)] == [DAY, DAY + 900]


def test_a_call_queued_before_midnight_counts_in_todays_first_interval() -> None:
    day = Day(DAY)
    day.record("support", DAY - 30, kpi.answered(40, TARGET), DAY + 10)
    assert day.interval("support", int(DAY)).answered == 1


def test_sliding_hour_counts_events_of_the_last_hour_by_their_time() -> None:
    day = Day(DAY)
    day.record("support", DAY + 100, kpi.queued(), DAY + 100)
    day.record("support", DAY + 2000, kpi.queued(), DAY + 2000)
    assert day.sliding_hour("support", DAY + 3000).offered == 2
    assert day.sliding_hour("support", DAY + 3700).offered == 1   # the 100 s one is out
    assert day.sliding_hour("support", DAY + 5600).offered == 0
    assert day.today("support").offered == 2


def test_peak_waiting_is_a_maximum_not_a_sum() -> None:
    day = Day(DAY)
    for count in (3, 7, 2):
        day.record("support", DAY + 5, kpi.waiting_seen(count), DAY + 5)
    assert day.interval("support", int(DAY)).peak_waiting == 7


def test_sliding_hour_peak_falls_back_when_the_peak_leaves_the_hour() -> None:
    day = Day(DAY)
    day.record("support", DAY + 100, kpi.waiting_seen(9), DAY + 100)
    day.record("support", DAY + 200, kpi.waiting_seen(4), DAY + 200)
    day.record("sales", DAY + 300, kpi.waiting_seen(6), DAY + 300)
    day.record("support", DAY + 400, kpi.answered(30, TARGET), DAY + 400)
    assert day.sliding_hour("support", DAY + 3650).peak_waiting == 9
    assert day.sliding_hour(None, DAY + 3650).peak_waiting == 9
    hour = day.sliding_hour("support", DAY + 3750)       # the 9 has left; the 4 has not
    assert (hour.peak_waiting, hour.answered, hour.answer_wait_ms) == (4, 1, 30_000)
    assert day.sliding_hour(None, DAY + 3750).peak_waiting == 6
    assert day.sliding_hour("support", DAY + 3850).peak_waiting == 0
    assert day.sliding_hour(None, DAY + 3950).peak_waiting == 0
    assert day.sliding_hour(None, DAY + 3950).answered == 1
    assert day.sliding_hour(None, DAY + 4000) == Tally()


def test_sliding_hour_leaves_out_an_event_stamped_after_now() -> None:
    day = Day(DAY)
    day.record("support", DAY + 100, kpi.queued(), DAY + 100)
    day.record("support", DAY + 500, kpi.queued(), DAY + 500)
    assert day.sliding_hour("support", DAY + 300).offered == 1
    assert day.sliding_hour("support", DAY + 600).offered == 2


_EVENTS = st.lists(st.tuples(st.sampled_from(["support", "sales"]), st.integers(0, 9_000),
                             st.sampled_from(["queued", "answered", "abandoned", "waiting"]),
                             st.integers(0, 120)), max_size=60)


@given(_EVENTS, st.lists(st.integers(0, 1200), max_size=12))
def test_running_sliding_hour_equals_summing_its_deltas(
        events: list[tuple[str, int, str, int]], reads: list[int]) -> None:
    day = Day(DAY)
    now = DAY
    reads = list(reads)
    for service, step, kind, amount in events:
        now += step % 600       # the clock moves on between events
        delta = {"queued": kpi.queued(), "answered": kpi.answered(amount, TARGET),
                 "abandoned": kpi.abandoned(amount, SHORT),
                 "waiting": kpi.waiting_seen(amount)}[kind]
        day.record(service, now - amount, delta, now)
        if reads:
            now += reads.pop()
            for name in ("support", "sales", None):
                assert day.sliding_hour(name, now) == day._sum_hour(name, now)
    for later in (0, 1800, 3600, 7200):
        for name in ("support", "sales", None):
            assert day.sliding_hour(name, now + later) == day._sum_hour(name, now + later)


def test_series_sums_the_services_per_interval_in_time_order() -> None:
    day = Day(DAY)
    day.record("sales", DAY + 950, kpi.queued(), DAY + 950)
    day.record("support", DAY + 10, kpi.queued(), DAY + 10)
    day.record("support", DAY + 20, kpi.waiting_seen(3), DAY + 20)
    day.record("sales", DAY + 30, kpi.waiting_seen(5), DAY + 30)
    series = day.series(None)
    assert [(start, t.offered, t.peak_waiting) for start, t in series] == [
        (int(DAY), 1, 5), (int(DAY + 900), 1, 0)]
    assert series == [(start, day.interval(None, start)) for start, _ in series]


def test_csv_has_one_row_per_service_and_interval() -> None:
    day = Day(DAY)
    day.record("support", DAY + 10, kpi.answered(10, TARGET), DAY + 20)
    day.record("support", DAY + 950, kpi.abandoned(60, SHORT), DAY + 1010)
    rows = kpi.csv_rows(day, {int(DAY): "00:00"})
    assert rows[0][:3] == ["service", "interval_start", "offered"]
    assert rows[1][:4] == ["support", "00:00", "0", "1"]
    assert rows[1][7] == "1.0"                       # service level
    assert rows[2][1] == str(int(DAY + 900)) and rows[2][5] == "1"
    assert rows[2][7] == "0.0"


def test_tally_round_trips_through_redis_fields() -> None:
    tally = Tally(offered=3, answered=2, handle_ms=12_000, peak_waiting=4)
    stored = {k: str(v) for k, v in tally.as_fields().items()}
    assert Tally.from_fields(stored) == tally


@given(st.lists(st.tuples(st.floats(0, 600), st.booleans()), max_size=40))
def test_service_level_stays_between_0_and_1(calls: list[tuple[float, bool]]) -> None:
    day = Day(DAY)
    for wait, answered in calls:
        delta = kpi.answered(wait, TARGET) if answered else kpi.abandoned(wait, SHORT)
        day.record("support", DAY, delta, DAY + wait)
    level = day.today("support").service_level()
    assert level is None or 0.0 <= level <= 1.0


# -- agents --------------------------------------------------------------------


def test_agent_time_in_state_pause_by_reason_and_occupancy() -> None:
    ledger = AgentLedger(DAY)
    ledger.state("1001", "available", DAY)            # 0..100 available
    ledger.state("1001", "ringing", DAY + 100)        # 100..110 ringing
    ledger.state("1001", "on_call", DAY + 110)        # 110..170 talking
    ledger.state("1001", "wrap_up", DAY + 170)        # 170..180 wrap-up
    ledger.handled("1001", 60 + 10)
    ledger.state("1001", "paused", DAY + 180, "lunch")  # 180..480 lunch
    ledger.state("1001", "paused", DAY + 480, "break")  # 480..  break
    view = ledger.view("1001", DAY + 540)
    assert view["state"] == "paused" and view["in_state_s"] == 60.0
    assert view["pause_by_reason_s"] == {"break": 60.0, "lunch": 300.0}
    assert view["calls_handled"] == 1 and view["aht_s"] == 70.0
    # busy 60 + 10 over staffed 100 + 10 + 60 + 10; pauses are not staffed time
    assert view["occupancy"] == round(70 / 180, 4)


def test_a_skills_change_in_the_same_state_does_not_restart_the_clock() -> None:
    ledger = AgentLedger(DAY)
    ledger.state("1001", "available", DAY)
    ledger.state("1001", "available", DAY + 50)
    assert ledger.view("1001", DAY + 60)["in_state_s"] == 60.0


def test_ring_no_answer_is_counted_per_agent() -> None:
    ledger = AgentLedger(DAY)
    ledger.rang_no_answer("1003")
    ledger.rang_no_answer("1003")
    assert ledger.view("1003", DAY)["ring_no_answer"] == 2
    assert ledger.view("1001", DAY)["ring_no_answer"] == 0


def test_occupancy_of_nobody_staffed_is_unknown() -> None:
    ledger = AgentLedger(DAY)
    ledger.state("1001", "paused", DAY, "break")
    assert ledger.occupancy(["1001"], DAY + 100) is None


def _occupancy_from_states(ledger: AgentLedger, agents: list[str], now: float) -> float | None:
    """Occupancy summed from the time by state, as the running totals must give."""
    days = [ledger.agents[a] for a in agents if a in ledger.agents]
    busy = sum(d.seconds_in(BUSY, now) for d in days)
    staffed = sum(d.seconds_in(STAFFED, now) for d in days)
    return busy / staffed if staffed > 0 else None


def test_running_occupancy_of_a_hand_computed_day() -> None:
    ledger = AgentLedger(DAY)
    ledger.state("1001", "available", DAY)               # 0..100 available
    ledger.state("1001", "on_call", DAY + 100)           # 100..400 on a call
    ledger.state("1001", "wrap_up", DAY + 400)           # 400..500 wrap-up
    ledger.state("1001", "paused", DAY + 500, "lunch")   # 500..800 paused
    ledger.state("1001", "available", DAY + 800)
    ledger.state("1002", "on_call", DAY + 600)
    # 1001: busy 400 of 500 staffed, + 100 available by 900; 1002: 300 of 300
    assert ledger.occupancy(["1001"], DAY + 900) == 400 / 600
    assert ledger.occupancy(["1001", "1002"], DAY + 900) == 700 / 900
    assert ledger.occupancy(["1001", "1002"], DAY + 900) == _occupancy_from_states(
        ledger, ["1001", "1002"], DAY + 900)


@given(st.lists(st.tuples(st.sampled_from(["1001", "1002", "1003"]),
                          st.sampled_from(sorted(STAFFED | {"paused", "logged_out"})),
                          st.integers(0, 900)), max_size=40))
def test_running_occupancy_equals_summing_the_states(
        changes: list[tuple[str, str, int]]) -> None:
    ledger = AgentLedger(DAY)
    now = DAY
    for agent, state, step in changes:
        now += step
        ledger.state(agent, state, now, "lunch" if state == "paused" else None)
        for agents in (["1001"], ["1001", "1002", "1003"]):
            running = ledger.occupancy(agents, now + 60)
            summed = _occupancy_from_states(ledger, agents, now + 60)
            assert (running is None) == (summed is None)
            assert running is None or summed is None or abs(running - summed) < 1e-9
