"""Queue KPIs by 15-minute interval, per service: the tallies a wallboard,
the CSV export and the Prometheus metrics read, and the figures derived
from them (service level, ASA, AHT, abandon rate).

Pure: the shell passes every time in (seconds, the epoch clock) and stores
the tallies; nothing here reads a clock or does IO. A call belongs to the
interval in which it entered the queue, whatever happens to it later: its
answer, abandon and handle time are all added to that interval (see
"KPI definitions" in README.md).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields

INTERVAL_S = 900
HOUR_S = 3600


def interval_of(at: float) -> int:
    """The start (epoch seconds) of the 15-minute interval holding `at`."""
    return int(at // INTERVAL_S * INTERVAL_S)


@dataclass(slots=True)
class Tally:
    """Counts and sums of one service over some time; all integers, so a
    Redis hash with HINCRBY can hold one. Times are milliseconds."""

    offered: int = 0
    answered: int = 0
    answered_in_target: int = 0
    abandoned: int = 0
    short_abandoned: int = 0
    answer_wait_ms: int = 0       # sum of waits of answered calls
    abandon_wait_ms: int = 0      # sum of waits of (long) abandoned calls
    handled: int = 0              # answered calls whose handling ended
    handle_ms: int = 0            # talk + hold + wrap-up of the handled calls
    peak_waiting: int = 0         # most calls seen waiting at once (a max, not a sum)

    def add(self, other: Tally) -> None:
        for item in fields(self):
            name = item.name
            if name == "peak_waiting":
                self.peak_waiting = max(self.peak_waiting, other.peak_waiting)
            else:
                setattr(self, name, getattr(self, name) + getattr(other, name))

    def subtract(self, other: Tally) -> None:
        """Take back an `add` of the sums (peak_waiting, a maximum, is left
        as is: windows keep their maximum apart)."""
        for name in _SUMS:
            setattr(self, name, getattr(self, name) - getattr(other, name))

    def as_fields(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_fields(cls, values: Mapping[str, str | int]) -> Tally:
        known = {item.name for item in fields(cls)}
        return cls(**{name: int(value) for name, value in values.items() if name in known})

    # -- derived figures ---------------------------------------------------------

    @property
    def resolved(self) -> int:
        """Calls with an outcome that counts for service level: answered or
        abandoned after the short-abandon threshold."""
        return self.answered + self.abandoned

    def service_level(self) -> float | None:
        """Answered within target / (answered + abandoned), 0..1; None with no call."""
        return self.answered_in_target / self.resolved if self.resolved else None

    def asa_s(self) -> float | None:
        return self.answer_wait_ms / self.answered / 1000 if self.answered else None

    def aht_s(self) -> float | None:
        return self.handle_ms / self.handled / 1000 if self.handled else None

    def abandon_rate(self) -> float | None:
        return self.abandoned / self.resolved if self.resolved else None

    def figures(self) -> dict[str, float | int | None]:
        return {
            "offered": self.offered, "answered": self.answered,
            "abandoned": self.abandoned, "short_abandoned": self.short_abandoned,
            "service_level": _round(self.service_level(), 4),
            "asa_s": _round(self.asa_s(), 1), "aht_s": _round(self.aht_s(), 1),
            "abandon_rate": _round(self.abandon_rate(), 4),
        }


_SUMS = tuple(item.name for item in fields(Tally) if item.name != "peak_waiting")


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


# -- the deltas one event brings ------------------------------------------------------


def queued() -> Tally:
    return Tally(offered=1)


def answered(wait_s: float, target_s: float) -> Tally:
    """A call bridged with an agent after waiting `wait_s` (from the first
    entry into the queue). Exactly on the target counts as within it."""
    return Tally(answered=1, answered_in_target=1 if wait_s <= target_s else 0,
                 answer_wait_ms=_ms(wait_s))


def abandoned(wait_s: float, short_abandon_s: float) -> Tally:
    """The caller hung up while waiting. Under the threshold (strictly) it
    is a short abandon: neither answered nor abandoned for the KPIs."""
    if wait_s < short_abandon_s:
        return Tally(short_abandoned=1)
    return Tally(abandoned=1, abandon_wait_ms=_ms(wait_s))


def handled(talk_s: float, hold_s: float = 0.0) -> Tally:
    """An answered call ended: its talk and hold time (wrap-up comes later)."""
    return Tally(handled=1, handle_ms=_ms(talk_s + hold_s))


def wrapped_up(wrap_s: float) -> Tally:
    return Tally(handle_ms=_ms(wrap_s))


def waiting_seen(count: int) -> Tally:
    return Tally(peak_waiting=count)


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


# -- windows over the intervals -----------------------------------------------------


class _Window:
    """The running figures of the deltas in the sliding hour, for one
    service or all: sums kept by adding each delta as it comes and taking
    it back as it leaves; the peak by a deque of (entry number, peak) that
    decreases from left to right (the maximum of a first-in first-out
    window in O(1) amortised)."""

    __slots__ = ("peaks", "sums")

    def __init__(self) -> None:
        self.sums = Tally()
        self.peaks: deque[tuple[int, int]] = deque()

    def enter(self, number: int, delta: Tally) -> None:
        self.sums.add(delta)
        if delta.peak_waiting > 0:
            while self.peaks and self.peaks[-1][1] <= delta.peak_waiting:
                self.peaks.pop()
            self.peaks.append((number, delta.peak_waiting))

    def leave(self, number: int, delta: Tally) -> None:
        self.sums.subtract(delta)
        while self.peaks and self.peaks[0][0] <= number:
            self.peaks.popleft()

    def tally(self) -> Tally:
        total = Tally()
        total.add(self.sums)
        total.peak_waiting = self.peaks[0][1] if self.peaks else 0
        return total


class Day:
    """Today's tallies by (service, interval start), plus the deltas of the
    last hour with their event time, for the sliding hour (whose figures
    are kept up to date as deltas enter and leave it)."""

    def __init__(self, day_start: float) -> None:
        self.day_start = day_start
        self.tallies: dict[tuple[str, int], Tally] = {}
        self._recent: deque[tuple[float, str, Tally]] = deque()
        self._entered = 0           # deltas ever appended to _recent
        self._left = 0              # deltas ever removed from its left
        self._latest = float("-inf")  # the latest event time ever recorded
        self._windows: dict[str | None, _Window] = {None: _Window()}

    def record(self, service: str, queued_at: float, delta: Tally, at: float) -> int:
        """Add `delta` to the interval of a call queued at `queued_at` (the
        event happens at `at`); returns that interval's start. A call queued
        before today's start is counted in today's first interval."""
        start = max(interval_of(queued_at), interval_of(self.day_start))
        self.tallies.setdefault((service, start), Tally()).add(delta)
        self._recent.append((at, service, delta))
        number = self._entered
        self._entered += 1
        self._latest = max(self._latest, at)
        self._windows[None].enter(number, delta)
        window = self._windows.get(service)
        if window is None:
            window = self._windows[service] = _Window()
        window.enter(number, delta)
        return start

    def load(self, service: str, start: int, tally: Tally) -> None:
        """A stored interval read back at start-up."""
        self.tallies[(service, start)] = tally

    def services(self) -> list[str]:
        return sorted({service for service, _ in self.tallies})

    def interval(self, service: str | None, start: int) -> Tally:
        return _sum(t for (s, i), t in self.tallies.items()
                    if i == start and (service is None or s == service))

    def today(self, service: str | None) -> Tally:
        return _sum(t for (s, _), t in self.tallies.items() if service is None or s == service)

    def sliding_hour(self, service: str | None, now: float) -> Tally:
        """The deltas of events in (now - 1 h, now]: unlike the intervals,
        by event time (an answer counts when it happens)."""
        while self._recent and self._recent[0][0] <= now - HOUR_S:
            _, gone_service, gone = self._recent.popleft()
            number = self._left
            self._left += 1
            self._windows[None].leave(number, gone)
            self._windows[gone_service].leave(number, gone)
        if self._latest > now:
            # An event stamped after `now` (a clock that went back) must not
            # count yet: the running figures cannot leave it out, so sum.
            return self._sum_hour(service, now)
        window = self._windows.get(service)
        return window.tally() if window is not None else Tally()

    def _sum_hour(self, service: str | None, now: float) -> Tally:
        """The sliding hour summed from the deltas: what the running
        figures must equal."""
        return _sum(t for at, s, t in self._recent
                    if at <= now and (service is None or s == service))

    def series(self, service: str | None) -> list[tuple[int, Tally]]:
        """(interval start, tally) in time order, for charts and the CSV."""
        by_start: dict[int, Tally] = {}
        for (s, start), tally in self.tallies.items():
            if service is None or s == service:
                by_start.setdefault(start, Tally()).add(tally)
        return sorted(by_start.items())


def _sum(tallies: Iterable[Tally]) -> Tally:
    total = Tally()
    for tally in tallies:
        total.add(tally)
    return total


CSV_COLUMNS = ("service", "interval_start", "offered", "answered", "answered_in_target",
               "abandoned", "short_abandoned", "service_level", "asa_s", "aht_s",
               "abandon_rate", "peak_waiting")


def csv_rows(day: Day, iso: dict[int, str]) -> list[list[str]]:
    """Today's intervals per service as CSV rows (with the header); `iso`
    names each interval start as the shell wants it shown."""
    rows = [list(CSV_COLUMNS)]
    for service in day.services():
        for start, tally in day.series(service):
            figures = tally.figures()
            rows.append([service, iso.get(start, str(start)), str(tally.offered),
                         str(tally.answered), str(tally.answered_in_target),
                         str(tally.abandoned), str(tally.short_abandoned),
                         _cell(figures["service_level"]), _cell(figures["asa_s"]),
                         _cell(figures["aht_s"]), _cell(figures["abandon_rate"]),
                         str(tally.peak_waiting)])
    return rows


def _cell(value: float | int | None) -> str:
    return "" if value is None else str(value)
