"""Business hours (cti/hours.py) in plain values: the next opening in the
schedule's own time zone across DST and holidays, a service's hours in the
center file, and the callback admission that keeps ASAP promises and slots
inside them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cti.callbacks.admission import Staffing, can_promise, opening_of, slots
from cti.center import CenterError, center_from, load_center
from cti.hours import Schedule

PARIS = ZoneInfo("Europe/Paris")
OFFICE = Schedule.model_validate({
    "timezone": "Europe/Paris",
    "weekly": {"mon-fri": ["08:00-12:30", "13:30-18:00"], "sat": "09:00-12:00"},
    "holidays": ["2026-05-01", "2026-12-25"]})


def paris(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=PARIS)


def test_the_next_opening_is_now_when_open_and_in_utc() -> None:
    at = paris(2026, 3, 10, 10, 15)
    assert OFFICE.next_open(at) == at
    assert OFFICE.next_open(paris(2026, 3, 10, 7, 0)) == datetime(2026, 3, 10, 7, 0, tzinfo=UTC)
    # the lunch break ends at 13:30; Saturday noon waits for Monday 08:00
    assert OFFICE.next_open(paris(2026, 3, 10, 12, 45)) == paris(2026, 3, 10, 13, 30)
    assert OFFICE.next_open(paris(2026, 3, 14, 12, 0)) == paris(2026, 3, 16, 8, 0)
    with pytest.raises(ValueError, match="timezone-aware"):
        OFFICE.next_open(datetime(2026, 3, 10, 10, 15))


def test_the_next_opening_follows_the_clock_change_of_its_own_zone() -> None:
    # Paris moves to UTC+2 on Sunday 2026-03-29: Monday 08:00 is 06:00 UTC,
    # where the Monday before it was 07:00 UTC.
    # Asked at Saturday's closing (12:00, 11:00 UTC) both times.
    assert OFFICE.next_open(datetime(2026, 3, 28, 11, 0, tzinfo=UTC)) == \
        datetime(2026, 3, 30, 6, 0, tzinfo=UTC)
    assert OFFICE.next_open(datetime(2026, 3, 21, 11, 0, tzinfo=UTC)) == \
        datetime(2026, 3, 23, 7, 0, tzinfo=UTC)


def test_a_holiday_is_skipped_and_a_week_without_openings_has_none() -> None:
    # Friday 1 May 2026 is a holiday: Thursday evening waits for Saturday 09:00.
    assert OFFICE.next_open(paris(2026, 4, 30, 18, 30)) == paris(2026, 5, 2, 9, 0)
    never = Schedule.model_validate({"timezone": "UTC", "weekly": {"mon": []}})
    assert never.next_open(datetime(2026, 1, 1, tzinfo=UTC)) is None


# Openings between 06:00 and 23:00 (Paris changes its clocks at 02:00-03:00).
_minutes = st.integers(6 * 60, 23 * 60)


@st.composite
def _schedules(draw: st.DrawFn) -> Schedule:
    weekly: dict[str, list[str]] = {}
    for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun"):
        bounds = sorted(draw(st.sets(_minutes, max_size=4)))
        spans = [f"{a // 60:02d}:{a % 60:02d}-{b // 60:02d}:{b % 60:02d}"
                 for a, b in zip(bounds[::2], bounds[1::2], strict=False)]
        weekly[day] = spans
    holidays = draw(st.lists(st.dates(date(2026, 1, 1), date(2026, 12, 31)), max_size=20))
    return Schedule.model_validate({"timezone": "Europe/Paris", "weekly": weekly,
                                    "holidays": holidays})


@settings(max_examples=150, deadline=None)
@given(schedule=_schedules(),
       at=st.datetimes(datetime(2026, 1, 1), datetime(2026, 12, 31), timezones=st.just(UTC)))
def test_the_next_opening_is_open_and_nothing_before_it_is(
        schedule: Schedule, at: datetime) -> None:
    found = schedule.next_open(at)
    assert (found == at) == schedule.is_open(at)
    if found is None:
        return
    assert found >= at and schedule.is_open(found)
    # closed in between: the minute before the opening, and every 7th minute
    before = found.replace(second=0, microsecond=0) - timedelta(minutes=1)
    assert before < at or not schedule.is_open(before)
    probe = at.replace(second=0, microsecond=0) + timedelta(minutes=1)
    for _ in range(3000):
        if probe >= found:
            break
        assert not schedule.is_open(probe)
        probe += timedelta(minutes=7)


# -- a service's hours in the center file -----------------------------------------


def test_a_service_may_have_hours_and_bad_ones_are_refused_naming_the_field() -> None:
    center = center_from({"services": {
        "support": {"hours": {"timezone": "Europe/Paris", "weekly": {"mon-fri": "08:00-18:00"},
                              "holidays": ["2026-12-25"]}},
        "sales": {}}})
    assert set(center.hours) == {"support"}
    assert center.hours["support"].is_open(paris(2026, 3, 10, 9, 0))
    with pytest.raises(CenterError) as refused:
        center_from({"services": {"support": {"hours": {"timezone": "Mars/Olympus",
                                                        "weekly": {"mon": "08:00-18:00"}}}}})
    assert refused.value.problems[0][0] == "services.support.hours.timezone"
    with pytest.raises(CenterError) as refused:
        center_from({"services": {"support": {"hours": {"timezone": "UTC",
                                                        "weekly": {"mon": "18:00-08:00"}}}}})
    assert refused.value.problems[0][0].startswith("services.support.hours.weekly")


# -- admission inside the hours ---------------------------------------------------

STAFFED = Staffing(waiting=0, staffed=2, available=1, rostered=4, handle_seconds=300)
AT_NIGHT = Staffing(waiting=0, staffed=0, available=0, rostered=4, handle_seconds=300)
OPENING = opening_of(OFFICE)


def test_asap_is_promised_only_while_open_now_and_when_the_call_comes() -> None:
    assert can_promise(STAFFED, 3600, at=paris(2026, 3, 10, 10, 0).timestamp(),
                       opening=OPENING) == 0.0
    # staffed but closed (a late shift finishing the queue): no promise
    assert can_promise(STAFFED, 3600, at=paris(2026, 3, 10, 19, 0).timestamp(),
                       opening=OPENING) is None
    busy = Staffing(waiting=5, staffed=2, available=0, rostered=2, handle_seconds=300)
    # 12:20 + 15 min of queue lands in the lunch break
    assert can_promise(busy, 3600, at=paris(2026, 3, 10, 12, 20).timestamp(),
                       opening=OPENING) is None
    assert can_promise(busy, 3600, at=paris(2026, 3, 10, 11, 0).timestamp(),
                       opening=OPENING) == 900.0


def test_slots_after_closing_all_start_in_the_next_opening() -> None:
    now = paris(2026, 3, 27, 18, 30).timestamp()  # Friday evening, before the DST weekend
    offered = slots(now, AT_NIGHT, {}, slot_seconds=1800, count=6, opening=OPENING)
    starts = [datetime.fromtimestamp(s.start, PARIS) for s in offered]
    assert starts[0] == paris(2026, 3, 28, 9, 0)  # Saturday morning
    assert starts == [paris(2026, 3, 28, 9, 0) + timedelta(minutes=30 * i) for i in range(6)]
    assert all(OFFICE.is_open(start) for start in starts)


def test_slots_skip_the_lunch_break_the_weekend_and_a_holiday() -> None:
    now = paris(2026, 4, 30, 11, 0).timestamp()   # Thursday; Friday 1 May is a holiday
    offered = slots(now, AT_NIGHT, {}, slot_seconds=1800, count=17, opening=OPENING)
    starts = [datetime.fromtimestamp(s.start, PARIS) for s in offered]
    assert starts[:3] == [paris(2026, 4, 30, 11, 30), paris(2026, 4, 30, 12, 0),
                          paris(2026, 4, 30, 13, 30)]
    assert len(starts) == 17 and date(2026, 5, 1) not in {s.date() for s in starts}
    assert starts[-6:] == [paris(2026, 5, 2, 9, 0) + timedelta(minutes=30 * i)
                           for i in range(6)]
    # full slots are passed over, never counted against the hours
    taken = {s.start: 99 for s in offered[:3]}
    later = slots(now, AT_NIGHT, taken, slot_seconds=1800, count=3, opening=OPENING)
    assert [s.start for s in later] == [s.start for s in offered[3:6]]


@settings(max_examples=100, deadline=None)
@given(schedule=_schedules(),
       now=st.datetimes(datetime(2026, 1, 1), datetime(2026, 12, 31), timezones=st.just(UTC)),
       waiting=st.integers(0, 40))
def test_every_slot_offered_starts_inside_the_hours(
        schedule: Schedule, now: datetime, waiting: int) -> None:
    staffing = Staffing(waiting, 2, 0, 3, 300)
    offered = slots(now.timestamp(), staffing, {}, slot_seconds=1800, count=8,
                    opening=opening_of(schedule))
    assert len(offered) <= 8
    for slot in offered:
        assert schedule.is_open(datetime.fromtimestamp(slot.start, UTC))
        assert slot.start % 1800 == 0 and slot.start >= now.timestamp()


def test_the_example_center_file_documents_hours_that_load() -> None:
    example = Path(__file__).parent.parent / "cti" / "examples" / "center.yaml"
    hours = load_center(example).hours
    assert set(hours) == {"support"}
    assert not hours["support"].is_open(paris(2026, 12, 25, 10, 0))
