"""Pure: can the center promise a callback, and when? From a snapshot of
the queue and the staffing of the service (waiting tasks, agents logged in
with its skills, free agents, the recent handle time), the expected wait
of an ASAP request and the slots that can still be honoured, inside the
service's business hours when it has some. No IO, no clock: `now` is
passed in, and business hours come as an `Opening` function."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from cti.hours import Schedule

# Business hours as admission reads them: the first open instant at or
# after a time (epoch seconds), the time itself when open then; None when
# nothing opens any more. None instead of the function: always open.
Opening = Callable[[float], float | None]
# How many closed stretches (nights, weekends, holidays) the slot search
# may jump over before it gives up.
_MAX_JUMPS = 64


@dataclass(frozen=True, slots=True)
class Staffing:
    """One service now. `rostered` counts every agent with the skills (the
    people who will staff future slots), `staffed` those logged in."""

    waiting: int
    staffed: int
    available: int
    rostered: int
    handle_seconds: float


@dataclass(frozen=True, slots=True)
class Slot:
    start: float
    end: float
    free: int   # callbacks still accepted in it


def expected_wait(staffing: Staffing) -> float | None:
    """Seconds until an ASAP callback placed now reaches an agent, or None
    when nobody with the skills is logged in. Every logged-in agent serves
    the line ahead at one task per handle time."""
    if staffing.staffed <= 0:
        return None
    if staffing.available > staffing.waiting:
        return 0.0
    ahead = staffing.waiting - staffing.available + 1
    return ahead * staffing.handle_seconds / staffing.staffed


def opening_of(schedule: Schedule) -> Opening:
    """A service's business hours (cti/hours.py) as an `Opening`."""

    def opening(at: float) -> float | None:
        moment = datetime.fromtimestamp(at, UTC)
        found = schedule.next_open(moment)
        if found is None:
            return None
        # `at` itself, not its round trip through datetime (microseconds).
        return at if found == moment else found.timestamp()

    return opening


def is_open(opening: Opening | None, at: float) -> bool:
    return opening is None or opening(at) == at


def can_promise(staffing: Staffing, promise_seconds: float, *, at: float = 0.0,
                opening: Opening | None = None) -> float | None:
    """The expected wait when it is within the promise, else None. With
    business hours (`opening`), only while the service is open both now
    (`at`) and when the call is expected: an ASAP promise is never kept by
    calling back after closing time."""
    wait = expected_wait(staffing)
    if wait is None or wait > promise_seconds:
        return None
    if not (is_open(opening, at) and is_open(opening, at + wait)):
        return None
    return wait


def slots(now: float, staffing: Staffing, booked: Mapping[float, int], *,
          slot_seconds: float, count: int, share: float = 0.5,
          opening: Opening | None = None) -> list[Slot]:
    """The next `count` slots with room left. A slot starts after the
    current queue is expected to drain (at least half a slot ahead), inside
    business hours when the service has some (closed stretches are jumped
    over: no slot on a night or a holiday), and takes at most `share` of
    what the rostered agents can handle in it; `booked` counts the
    callbacks already due in each slot (by start)."""
    wait = expected_wait(staffing)
    earliest = now + max(wait or 0.0, slot_seconds / 2)
    start = _aligned(earliest, slot_seconds)
    people = max(staffing.rostered, staffing.staffed)
    capacity = int(people * slot_seconds / max(staffing.handle_seconds, 1.0) * share)
    out: list[Slot] = []
    horizon = jumps = 0
    while len(out) < count and horizon < count * 4 and capacity > 0:
        if opening is not None:
            opens = opening(start)
            if opens is None or jumps >= _MAX_JUMPS:
                break
            if opens > start:
                # Closed: on to the first slot boundary of the next opening
                # (checked again: a short opening may hold no boundary).
                start = _aligned(opens, slot_seconds)
                jumps += 1
                continue
        free = capacity - booked.get(start, 0)
        if free > 0:
            out.append(Slot(start, start + slot_seconds, free))
        start += slot_seconds
        horizon += 1
    return out


def _aligned(at: float, slot_seconds: float) -> float:
    return math.ceil(at / slot_seconds) * slot_seconds
