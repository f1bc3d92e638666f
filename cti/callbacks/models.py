"""What a callback is: the request a web page sends (pydantic, checked at
the edge), the record kept in Redis, its statuses and the outcome of each
attempt. Every phone number is read with `phonenumbers` and must belong to
an allowed country; free text is bounded and free of control characters."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from enum import Enum
from typing import Annotated, Any, Literal

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from cti.center import CallbackMode
from cti.pbx.commands import DIALPLAN_SPECIAL, REFUSED_CATEGORIES, normalize_number
from cti.pbx.errors import InvalidCommand

MAX_NAME = 80
MAX_PAGE = 512
_TOPIC = r"^[A-Za-z0-9_-]{1,32}$"
_LANGUAGE = r"^[a-z]{2}(-[A-Z]{2})?$"
# The id the requester holds: 128 random bits, url-safe base64.
ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{22}")


class Status(Enum):
    SCHEDULED = "scheduled"    # waits for its due time (ASAP: due now)
    QUEUED = "queued"          # claimed by a node, waiting for an agent
    DIALING = "dialing"        # an agent took it; the call is under way
    RETRY = "retry"            # an attempt failed; due again later
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in (Status.COMPLETED, Status.FAILED, Status.CANCELLED)


class Outcome(Enum):
    ANSWERED = "answered"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    FAILED = "failed"
    INVALID_NUMBER = "invalid_number"

    @classmethod
    def of_dial_status(cls, status: str) -> Outcome:
        """Asterisk's DIALSTATUS of the customer leg as an outcome."""
        return _DIAL_OUTCOMES.get(status.upper(), cls.FAILED)


_DIAL_OUTCOMES = {
    "ANSWER": Outcome.ANSWERED, "BUSY": Outcome.BUSY, "NOANSWER": Outcome.NO_ANSWER,
    "CANCEL": Outcome.NO_ANSWER, "CONGESTION": Outcome.FAILED, "CHANUNAVAIL": Outcome.FAILED,
    "INVALIDARGS": Outcome.INVALID_NUMBER,
    # Customer-first: the network said the number does not exist (Q.850
    # cause 1, 3, 22 or 28, cti/pbx/dial_status.py): not worth a retry.
    "UNALLOCATED": Outcome.INVALID_NUMBER,
}


def _clean_text(value: str, what: str) -> str:
    # NFKC first: a fullwidth ampersand (U+FF06) is refused like `&`.
    for char in unicodedata.normalize("NFKC", value):
        if unicodedata.category(char) in REFUSED_CATEGORIES:
            raise ValueError(f"{what} holds a control or invisible character "
                             f"U+{ord(char):04X}")
        if char in DIALPLAN_SPECIAL or char in "<>":
            raise ValueError(f"{what} may not contain {char!r}")
    return value


class CallbackRequest(BaseModel):
    """POST /api/v1/callbacks. Validate with `context={"region": "FR",
    "countries": ["FR"]}`: the number comes out in E.164."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    number: Annotated[str, Field(min_length=3, max_length=40,
                                 description="phone number, national or +international",
                                 examples=["06 11 22 33 44", "+33611223344"])]
    name: Annotated[str | None, Field(max_length=MAX_NAME)] = None
    topic: Annotated[str | None, Field(pattern=_TOPIC, description="a service name")] = None
    when: Annotated[Literal["asap"] | datetime, Field(
        description='"asap" or the start of one of the offered slots (ISO 8601)')] = "asap"
    language: Annotated[str | None, Field(pattern=_LANGUAGE, examples=["fr", "en-GB"])] = None
    page: Annotated[str | None, Field(max_length=MAX_PAGE,
                                      description="the page the request came from")] = None

    @field_validator("number")
    @classmethod
    def _number(cls, value: str, info: ValidationInfo) -> str:
        context: dict[str, Any] = info.context or {}
        region = str(context.get("region", "FR"))
        countries = list(context.get("countries", [region]))
        try:
            e164 = normalize_number(value, region)
        except InvalidCommand as exc:
            raise ValueError(exc.reason) from None
        country = phonenumbers.region_code_for_number(phonenumbers.parse(e164))
        if country not in countries:
            raise ValueError(f"numbers of {country} are not called back "
                             f"(allowed: {', '.join(countries)})")
        return e164

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        return _clean_text(value, "name") or None

    @field_validator("page")
    @classmethod
    def _page(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        for char in value:
            if unicodedata.category(char) in REFUSED_CATEGORIES or char.isspace():
                raise ValueError(f"holds a space or control character U+{ord(char):04X}")
        return value

    @field_validator("when")
    @classmethod
    def _when(cls, value: Literal["asap"] | datetime) -> Literal["asap"] | datetime:
        if isinstance(value, datetime) and value.tzinfo is None:
            raise ValueError("a slot time needs its UTC offset (2025-01-31T14:00:00Z)")
        return value


class Attempt(BaseModel):
    at: float                      # when the agent was offered it (epoch seconds)
    agent: str
    outcome: Outcome | None = None  # None while the call is under way
    dial_status: str = ""
    mode: CallbackMode = CallbackMode.AGENT_FIRST  # as it was dialled
    ended_at: float | None = None  # when the outcome was known
    # Customer-first: the customer answered, the reserved agent did not,
    # and the customer waited for the next agent as a caller.
    requeued: bool = False

    def supervisor(self) -> dict[str, Any]:
        return {"at": iso(self.at), "agent": self.agent, "mode": self.mode.value,
                "outcome": self.outcome.value if self.outcome else None,
                "dial_status": self.dial_status or None,
                "ended_at": iso(self.ended_at) if self.ended_at is not None else None,
                "requeued": self.requeued}


class Callback(BaseModel):
    """The stored record (JSON in Redis), times in epoch seconds."""

    id: str
    number: str
    name: str | None = None
    topic: str | None = None
    service: str
    language: str | None = None
    page: str | None = None
    requested_at: float
    due_at: float
    expected_at: float
    # The enqueue time the router ranks it by: the request time, the slot,
    # or the original call's enqueue time when a waiting caller chose a
    # callback (keep my place).
    enqueued_at: float
    # The priority class a waiting caller had when they chose to be called
    # back keeping their place (a VIP stays one); None: the callbacks' own.
    priority: str | None = Field(default=None, max_length=32)
    asap: bool = True
    status: Status = Status.SCHEDULED
    attempts: list[Attempt] = Field(default_factory=list)
    outcome: Outcome | None = None
    finished_at: float | None = None  # when it became final

    def supervisor(self) -> dict[str, Any]:
        """What a supervisor sees: the whole record, every attempt with its
        agent, times in ISO 8601 UTC."""
        return {
            "id": self.id, "status": self.status.value, "service": self.service,
            "topic": self.topic, "number": self.number, "name": self.name,
            "language": self.language, "page": self.page, "asap": self.asap,
            "requested_at": iso(self.requested_at), "due_at": iso(self.due_at),
            "expected_at": iso(self.expected_at), "priority": self.priority,
            "outcome": self.outcome.value if self.outcome else None,
            "finished_at": iso(self.finished_at) if self.finished_at is not None else None,
            "attempts": [a.supervisor() for a in self.attempts],
        }

    def public(self) -> dict[str, Any]:
        """What the requester sees: no full number, no agent ids."""
        return {
            "id": self.id, "status": self.status.value,
            "expected_at": iso(self.expected_at), "priority": self.priority, "asap": self.asap,
            "number": mask(self.number), "topic": self.topic,
            "attempts": [{"at": iso(a.at), "outcome": a.outcome.value if a.outcome else None}
                         for a in self.attempts],
            "outcome": self.outcome.value if self.outcome else None,
        }


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


def mask(number: str) -> str:
    """+33611223344 -> +336******44: enough for the requester to recognise."""
    return number[:4] + "*" * max(0, len(number) - 6) + number[-2:]
