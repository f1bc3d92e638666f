"""The plain values the IVR interpreter works on: the state of one call in
a flow, the events the shell feeds in (results of actions), the actions it
asks the shell to perform, and the outcome reported when the flow ends.

All frozen: the interpreter returns new values and never mutates.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from types import MappingProxyType
from typing import Any

from cti.ivr.flows.directory import Customer


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


class Phase(enum.Enum):
    """What the current step waits for."""

    PERFORMING = "performing"  # a play, say, set-variables: waits for Completed
    DIGITS = "digits"  # waits for Digits
    CUSTOMER = "customer"  # waits for CustomerFound / CustomerMissing
    PIN_CHECK = "pin_check"  # waits for PinChecked
    LOCK = "lock"  # waits for Completed of LockSelfService
    ENDED = "ended"  # Finish was issued


class EndKind(enum.StrEnum):
    HANDOFF = "handoff"  # to routing: service, priority, skills
    CALLBACK = "callback"  # the caller asked to be called back
    TRANSFER = "transfer"  # to another service or to a number
    HANGUP = "hangup"  # the flow ended the call (self-served, closed...)
    CALLER_HUNG_UP = "caller_hung_up"
    ERROR = "error"  # the flow failed; the call went to the fallback service


@dataclass(frozen=True, slots=True)
class Ending:
    kind: EndKind
    step: str
    service: str | None = None
    priority: str | None = None
    skills: Mapping[str, int] = field(default_factory=_empty)
    number: str | None = None  # callback number, or transfer target
    context: str | None = None  # dialplan context of a transfer to a number
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Choice:
    step: str
    digit: str


@dataclass(frozen=True, slots=True)
class CallState:
    step: str
    phase: Phase
    language: str
    caller: str | None
    did: str | None
    fields: Mapping[str, str] = field(default_factory=_empty)  # digits collected, by field name
    data: Mapping[str, str] = field(default_factory=_empty)  # key/values attached to the call
    choices: tuple[Choice, ...] = ()
    customer: Customer | None = None
    verified: bool = False
    attempts: int = 0  # failed tries at the current step (invalid or silence)
    last_failure: str | None = None  # "invalid" | "no_input"
    # Wrong PINs in this call, for the identified customer. Not reset when a
    # flow comes back to an authenticate step: a loop must not buy more tries.
    pin_tries: int = 0
    path: tuple[str, ...] = ()
    ending: Ending | None = None


# -- events: what happened when the shell performed the last action -------


@dataclass(frozen=True, slots=True)
class Completed:
    pass


@dataclass(frozen=True, slots=True)
class Digits:
    digits: str  # "" when the caller keyed nothing before the timeout


@dataclass(frozen=True, slots=True)
class CustomerFound:
    customer: Customer


@dataclass(frozen=True, slots=True)
class CustomerMissing:
    pass


@dataclass(frozen=True, slots=True)
class PinChecked:
    ok: bool


@dataclass(frozen=True, slots=True)
class HungUp:
    pass


@dataclass(frozen=True, slots=True)
class ActionFailed:
    reason: str


Event = Completed | Digits | CustomerFound | CustomerMissing | PinChecked | HungUp | ActionFailed


# -- actions: what the shell must do next ---------------------------------


@dataclass(frozen=True, slots=True)
class PlaySounds:
    sounds: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ReadDigits:
    """Play `before` (not interruptible), then `sound` while reading up to
    `max_digits`; `timeout_ms` per digit; `terminator` ends the entry."""

    sound: str
    max_digits: int
    timeout_ms: int
    terminator: str = "#"
    before: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SayNumber:
    number: int


@dataclass(frozen=True, slots=True)
class SayDigits:
    digits: str


@dataclass(frozen=True, slots=True)
class SayAlpha:
    text: str


@dataclass(frozen=True, slots=True)
class SayDate:
    day: date


@dataclass(frozen=True, slots=True)
class PlaySound:
    sound: str


Piece = SayNumber | SayDigits | SayAlpha | SayDate | PlaySound


@dataclass(frozen=True, slots=True)
class SayPieces:
    pieces: tuple[Piece, ...]


@dataclass(frozen=True, slots=True)
class FindCustomer:
    by: str  # "number" | "account"
    key: str


@dataclass(frozen=True, slots=True)
class CheckPin:
    customer: str
    pin: str = field(repr=False)  # never in a repr, hence never in a log


@dataclass(frozen=True, slots=True)
class LockSelfService:
    customer: str
    until: datetime
    tries: int


@dataclass(frozen=True, slots=True)
class SetVariables:
    values: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Finish:
    """The flow is over: play `sounds`, set `variables`, and when `goto` is
    given make the dialplan continue there (context, extension, priority)."""

    ending: Ending
    sounds: tuple[str, ...] = ()
    variables: tuple[tuple[str, str], ...] = ()
    goto: tuple[str, str, str] | None = None


Action = (PlaySounds | ReadDigits | SayPieces | FindCustomer | CheckPin | LockSelfService
          | SetVariables | Finish)


@dataclass(frozen=True, slots=True)
class Transition:
    state: CallState
    action: Action


@dataclass(frozen=True, slots=True)
class IvrOutcome:
    """How one IVR call ended and everything the caller did in it; handed
    to the screen pop, the router and the callback feature."""

    call: str  # Asterisk uniqueid of the channel
    flow: str
    version: str  # content hash of the flow file the call ran on
    ending: Ending
    caller: str | None
    did: str | None
    language: str
    choices: tuple[Choice, ...]
    fields: Mapping[str, str]
    data: Mapping[str, str]
    customer: str | None
    verified: bool
    path: tuple[str, ...]

    @classmethod
    def of(cls, call: str, flow: str, version: str, state: CallState) -> IvrOutcome:
        if state.ending is None:
            raise ValueError(f"the call is still at step {state.step!r} ({state.phase.value})")
        return cls(
            call=call, flow=flow, version=version, ending=state.ending, caller=state.caller,
            did=state.did, language=state.language, choices=state.choices,
            fields=state.fields, data=state.data,
            customer=state.customer.id if state.customer else None,
            verified=state.verified, path=state.path,
        )
