"""Pure: can the center promise a callback, and when? From a snapshot of
the queue and the staffing of the service (waiting tasks, agents logged in
with its skills, free agents, the recent handle time), the expected wait
of an ASAP request and the slots that can still be honoured. No IO, no
clock: `now` is passed in."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass


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


def can_promise(staffing: Staffing, promise_seconds: float) -> float | None:
    """The expected wait when it is within the promise, else None."""
    wait = expected_wait(staffing)
    return wait if wait is not None and wait <= promise_seconds else None


def slots(now: float, staffing: Staffing, booked: Mapping[float, int], *,
          slot_seconds: float, count: int, share: float = 0.5) -> list[Slot]:
    """The next `count` slots with room left. A slot starts after the
    current queue is expected to drain (at least half a slot ahead) and
    takes at most `share` of what the rostered agents can handle in it;
    `booked` counts the callbacks already due in each slot (by start)."""
    wait = expected_wait(staffing)
    earliest = now + max(wait or 0.0, slot_seconds / 2)
    start = math.ceil(earliest / slot_seconds) * slot_seconds
    people = max(staffing.rostered, staffing.staffed)
    capacity = int(people * slot_seconds / max(staffing.handle_seconds, 1.0) * share)
    out: list[Slot] = []
    horizon = 0
    while len(out) < count and horizon < count * 4 and capacity > 0:
        free = capacity - booked.get(start, 0)
        if free > 0:
            out.append(Slot(start, start + slot_seconds, free))
        start += slot_seconds
        horizon += 1
    return out
