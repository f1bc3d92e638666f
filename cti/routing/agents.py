"""Agents as the router sees them: skills with levels, the state machine the
server owns (logged out, available, reserved, ringing, on call, wrap-up,
paused with a reason), and the per-day statistics a strategy may use.

Agents are immutable: each transition returns a new `Agent`, so a routing
decision always works on a consistent snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import Enum
from types import MappingProxyType

from cti.routing.errors import IllegalTransition

MIN_LEVEL = 1
MAX_LEVEL = 10


def frozen_levels(levels: Mapping[str, int], owner: str) -> Mapping[str, int]:
    """A read-only copy of a skill -> level mapping, checked to be in 1..10."""
    for skill, level in levels.items():
        if not MIN_LEVEL <= level <= MAX_LEVEL:
            raise ValueError(f"{owner}: level {level} for skill {skill!r} is outside "
                             f"{MIN_LEVEL}..{MAX_LEVEL}")
    return MappingProxyType(dict(levels))


class AgentState(Enum):
    """The agent state machine; one method per transition, each returning the
    next state or raising `IllegalTransition` that names both states."""

    LOGGED_OUT = "logged_out"
    AVAILABLE = "available"
    RESERVED = "reserved"
    RINGING = "ringing"
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"
    PAUSED = "paused"

    def login(self) -> AgentState:
        return self._move("login", AgentState.AVAILABLE)

    def reserve(self) -> AgentState:
        return self._move("reserve", AgentState.RESERVED)

    def ring(self) -> AgentState:
        return self._move("ring", AgentState.RINGING)

    def answer(self) -> AgentState:
        return self._move("answer", AgentState.ON_CALL)

    def release(self) -> AgentState:
        return self._move("release", AgentState.AVAILABLE)

    def end_call(self) -> AgentState:
        return self._move("end_call", AgentState.WRAP_UP)

    def end_wrap_up(self) -> AgentState:
        return self._move("end_wrap_up", AgentState.AVAILABLE)

    def pause(self) -> AgentState:
        return self._move("pause", AgentState.PAUSED)

    def ready(self) -> AgentState:
        return self._move("ready", AgentState.AVAILABLE)

    def logout(self) -> AgentState:
        return self._move("logout", AgentState.LOGGED_OUT)

    def _move(self, transition: str, target: AgentState) -> AgentState:
        if self not in _ALLOWED_FROM[transition]:
            raise IllegalTransition(transition, self, target)
        return target


_S = AgentState
_ALLOWED_FROM: Mapping[str, frozenset[AgentState]] = MappingProxyType({
    "login": frozenset({_S.LOGGED_OUT}),
    "reserve": frozenset({_S.AVAILABLE}),
    "ring": frozenset({_S.RESERVED}),
    # A preview call or an auto-answer phone goes from reserved straight to talking.
    "answer": frozenset({_S.RESERVED, _S.RINGING}),
    # Ring-no-answer, the caller hung up, or the connect failed: the
    # reservation is given back.
    "release": frozenset({_S.RESERVED, _S.RINGING}),
    "end_call": frozenset({_S.ON_CALL}),
    "end_wrap_up": frozenset({_S.WRAP_UP}),
    # Not while talking: a pause asked for during a call is applied by the
    # shell when the call ends. Pausing again only changes the reason.
    "pause": frozenset({_S.AVAILABLE, _S.RESERVED, _S.RINGING, _S.WRAP_UP, _S.PAUSED}),
    "ready": frozenset({_S.PAUSED, _S.WRAP_UP}),
    "logout": frozenset(set(_S) - {_S.LOGGED_OUT, _S.ON_CALL}),
})

# States of a logged-in agent who will be free again without doing anything
# (a sticky task waits for them); a paused agent may be at lunch.
BUSY_STATES = frozenset({_S.RESERVED, _S.RINGING, _S.ON_CALL, _S.WRAP_UP})


@dataclass(frozen=True, slots=True)
class Agent:
    """One agent. `state_since` is when the current state was entered (seconds,
    the same clock as tasks' `enqueued_at`); for an available agent it is the
    start of the idle time that longest-idle routing compares.
    `calls_handled` counts today's calls (the shell resets it at day change).
    `task_service` is the service of the task being offered, handled or
    wrapped up: it decides the wrap-up length."""

    id: str
    name: str
    interface: str
    skills: Mapping[str, int]
    state: AgentState = AgentState.LOGGED_OUT
    state_since: float = 0.0
    pause_reason: str | None = None
    calls_handled: int = 0
    last_call_end: float | None = None
    task_service: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "skills", frozen_levels(self.skills, f"agent {self.id}"))
        if (self.state is AgentState.PAUSED) != (self.pause_reason is not None):
            raise ValueError(f"agent {self.id}: a pause reason goes with the paused state only")

    def login(self, now: float) -> Agent:
        return self._moved(self._next(self.state.login), now)

    def reserve(self, now: float, service: str) -> Agent:
        return replace(self, state=self._next(self.state.reserve), state_since=now,
                       pause_reason=None, task_service=service)

    def ring(self, now: float) -> Agent:
        return self._moved(self._next(self.state.ring), now)

    def answer(self, now: float) -> Agent:
        return self._moved(self._next(self.state.answer), now)

    def release(self, now: float) -> Agent:
        return self._moved(self._next(self.state.release), now)

    def end_call(self, now: float) -> Agent:
        return replace(self, state=self._next(self.state.end_call), state_since=now,
                       pause_reason=None, calls_handled=self.calls_handled + 1,
                       last_call_end=now)

    def end_wrap_up(self, now: float) -> Agent:
        return self._moved(self._next(self.state.end_wrap_up), now)

    def pause(self, now: float, reason: str) -> Agent:
        return self._moved(self._next(self.state.pause), now, reason)

    def ready(self, now: float) -> Agent:
        return self._moved(self._next(self.state.ready), now)

    def logout(self, now: float) -> Agent:
        return self._moved(self._next(self.state.logout), now)

    def _next(self, transition: Callable[[], AgentState]) -> AgentState:
        try:
            return transition()
        except IllegalTransition as error:
            raise IllegalTransition(error.transition, error.source, error.target,
                                    agent=self.id) from None

    def _moved(self, state: AgentState, now: float, reason: str | None = None) -> Agent:
        return replace(self, state=state, state_since=now, pause_reason=reason)
