"""Per-agent KPIs of the day: state and time in it, time by state, pause
time by reason, calls handled, average handle time, ring-no-answer count,
and occupancy.

Pure: the shell reports each agent state it sees with the time the state
began; times are seconds on the epoch clock, passed in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

PAUSED = "paused"
LOGGED_OUT = "logged_out"
# Handling a call: occupancy's numerator.
BUSY = frozenset({"on_call", "wrap_up"})
# Logged in and not paused: occupancy's denominator.
STAFFED = frozenset({"available", "reserved", "ringing", "on_call", "wrap_up"})


@dataclass(slots=True)
class AgentDay:
    state: str = LOGGED_OUT
    since: float = 0.0
    reason: str | None = None
    seconds_by_state: dict[str, float] = field(default_factory=dict)
    pause_by_reason: dict[str, float] = field(default_factory=dict)
    calls_handled: int = 0
    handle_s: float = 0.0
    ring_no_answer: int = 0
    # Running totals of the ended states, so occupancy does not sum the
    # states again on every wallboard build (seconds).
    busy_s: float = 0.0
    staffed_s: float = 0.0

    def _close(self, until: float) -> None:
        spent = max(0.0, until - self.since)
        self.seconds_by_state[self.state] = self.seconds_by_state.get(self.state, 0.0) + spent
        if self.state in BUSY:
            self.busy_s += spent
        if self.state in STAFFED:
            self.staffed_s += spent
        if self.state == PAUSED and self.reason is not None:
            self.pause_by_reason[self.reason] = self.pause_by_reason.get(self.reason, 0.0) + spent

    def seconds_in(self, states: Iterable[str], now: float) -> float:
        wanted = set(states)
        total = sum(s for state, s in self.seconds_by_state.items() if state in wanted)
        if self.state in wanted:
            total += max(0.0, now - self.since)
        return total

    def busy_and_staffed(self, now: float) -> tuple[float, float]:
        """Occupancy's numerator and denominator for this agent so far: the
        running totals plus the state still open."""
        running = max(0.0, now - self.since)
        busy = self.busy_s + (running if self.state in BUSY else 0.0)
        staffed = self.staffed_s + (running if self.state in STAFFED else 0.0)
        return busy, staffed


class AgentLedger:
    def __init__(self, day_start: float) -> None:
        self.day_start = day_start
        self.agents: dict[str, AgentDay] = {}

    def state(self, agent: str, state: str, since: float, reason: str | None = None) -> None:
        """The agent is in `state` since `since`. Seeing the same state and
        reason again (a skills change) changes nothing."""
        day = self.agents.get(agent)
        since = max(since, self.day_start)
        if day is None:
            self.agents[agent] = AgentDay(state=state, since=since, reason=reason)
            return
        if day.state == state and day.reason == reason:
            return
        day._close(since)
        day.state, day.since, day.reason = state, since, reason

    def handled(self, agent: str, handle_s: float) -> None:
        """A call the agent answered is over (talk, hold and wrap-up)."""
        day = self.agents.setdefault(agent, AgentDay(since=self.day_start))
        day.calls_handled += 1
        day.handle_s += handle_s

    def add_handle_time(self, agent: str, seconds: float) -> None:
        """Wrap-up that ended after the call was counted."""
        day = self.agents.setdefault(agent, AgentDay(since=self.day_start))
        day.handle_s += seconds

    def rang_no_answer(self, agent: str) -> None:
        self.agents.setdefault(agent, AgentDay(since=self.day_start)).ring_no_answer += 1

    def view(self, agent: str, now: float) -> dict[str, object]:
        day = self.agents.get(agent) or AgentDay(since=self.day_start)
        pauses = dict(day.pause_by_reason)
        if day.state == PAUSED and day.reason is not None:
            pauses[day.reason] = pauses.get(day.reason, 0.0) + max(0.0, now - day.since)
        return {
            "state": day.state, "reason": day.reason,
            "in_state_s": round(max(0.0, now - day.since), 1),
            "calls_handled": day.calls_handled,
            "aht_s": round(day.handle_s / day.calls_handled, 1) if day.calls_handled else None,
            "pause_by_reason_s": {reason: round(s, 1) for reason, s in sorted(pauses.items())},
            "ring_no_answer": day.ring_no_answer,
            "occupancy": _round(self.occupancy([agent], now)),
        }

    def occupancy(self, agents: Iterable[str], now: float) -> float | None:
        """Time on calls and in wrap-up / time logged in and not paused, over
        the day so far; None when nobody was staffed."""
        busy = staffed = 0.0
        known = self.agents
        for agent in agents:
            day = known.get(agent)
            if day is None:
                continue
            one_busy, one_staffed = day.busy_and_staffed(now)
            busy += one_busy
            staffed += one_staffed
        return busy / staffed if staffed > 0 else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
