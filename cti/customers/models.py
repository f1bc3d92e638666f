"""Customer and Contact: the pydantic models every external customer input
goes through (imports, HTTP, the demo), and the E.164 reading of numbers.

A refused input is a `ValidationError`; `field_problems` turns it into
(field, reason) pairs such as ("phones.1", "not a valid number (read in
region FR)") for reports and 422 bodies.

National numbers are read in a default region passed as validation context
(`parse_customer(raw, region="FR")`); without one, only international
numbers (+...) are accepted. Stored records hold E.164 only, so reading
them back needs no region.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Literal

import phonenumbers
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
)

MAX_PHONES = 10
MAX_SEGMENT_KEYS = 32
MAX_NAME = 120
MAX_NOTES = 2000
MAX_SEGMENT_TEXT = 200
MAX_CONTACT_NOTES = 1000
MAX_NUMBER_INPUT = 40

# Characters refused in text: control and format characters (zero-width,
# bidi overrides), separators, surrogates, private use and unassigned code
# points. Notes may still hold line breaks and tabs.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_NUMBER_INPUT = re.compile(r"\+?[0-9 ().\-/]{2,40}")
_CUSTOMER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def is_customer_id(text: str) -> bool:
    """Whether `text` has the shape of a customer id (what may go into a
    Redis key: no `:`, no spaces)."""
    return _CUSTOMER_ID.fullmatch(text) is not None


def e164(text: str, region: str | None) -> str:
    """`text` as an E.164 number (`+33140000001`), or ValueError saying why.
    National forms are read in `region` (ISO 3166 code such as "FR")."""
    if region is not None and region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"{region!r} is not a region phonenumbers knows")
    text = text.strip()
    if len(text) > MAX_NUMBER_INPUT or not _NUMBER_INPUT.fullmatch(text):
        raise ValueError("only digits, spaces and + - . ( ) / are allowed, 40 characters at most")
    if region is None and not text.startswith("+"):
        raise ValueError(f"{text} is not international (+...) and no default region was given")
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number ({exc})") from exc
    if not phonenumbers.is_valid_number(parsed):
        where = f" (read in region {region})" if region and not text.startswith("+") else ""
        raise ValueError(f"{text} is not a valid number{where}")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def caller_e164(text: str, region: str | None) -> str | None:
    """A caller number as Asterisk presents it (`+33...`, `0140...`, or
    `33140...` from trunks that drop the +), in E.164; None when it is not
    a valid number (anonymous, internal extension...)."""
    try:
        return e164(text, region)
    except ValueError:
        pass
    digits = text.strip()
    if digits.isdigit() and len(digits) >= 8:
        try:
            return e164("+" + digits, None)
        except ValueError:
            return None
    return None


def _phone(value: str, info: ValidationInfo) -> str:
    context = info.context if isinstance(info.context, Mapping) else {}
    region = context.get("region")
    return e164(value, region if isinstance(region, str) else None)


def _plain_text(value: str, *, multiline: bool = False) -> str:
    allowed = {"\n", "\t"} if multiline else set()
    for char in value:
        if char not in allowed and unicodedata.category(char) in _REFUSED_CATEGORIES:
            raise ValueError(f"control or invisible character U+{ord(char):04X} is not allowed")
    return value


def plain_line(value: str) -> str:
    return _plain_text(value)


def plain_text(value: str) -> str:
    return _plain_text(value, multiline=True)


def blank_is_none(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


def _distinct(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def segment_value(value: object) -> str | int | float:
    # One check with one message, rather than a union that reports a
    # failure per member.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, str) and len(value) <= MAX_SEGMENT_TEXT:
        return plain_line(value)
    raise ValueError(f"must be text ({MAX_SEGMENT_TEXT} characters at most), an integer"
                     " or a finite number")


CustomerId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Phone = Annotated[str, AfterValidator(_phone)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_NAME),
                 AfterValidator(plain_line)]
Account = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[0-9]{4,20}$")]
PinHash = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}\$[0-9a-f]{64}$")]
Token = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]
SegmentKey = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
SegmentValue = Annotated[str | int | float, PlainValidator(segment_value)]


class Customer(BaseModel):
    """A customer as the center knows it.

    `phones` are E.164, distinct, in the order given (the first is the one
    to call back); `segment` holds marketing values such as RFM recency (days),
    frequency (orders) and monetary (EUR); `balance` is in the major unit of
    `currency` (what the IVR reads out); `pin_hash` is `salt$hash` from
    `cti.customers.pins.hash_pin`, never the PIN itself.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: CustomerId
    name: Name
    phones: Annotated[list[Phone], Field(max_length=MAX_PHONES), AfterValidator(_distinct)] = (
        Field(default_factory=list))
    account: Annotated[Account | None, BeforeValidator(blank_is_none)] = None
    tier: Annotated[Literal["vip", "standard"], BeforeValidator(_lower)] = "standard"
    segment: Annotated[dict[SegmentKey, SegmentValue], Field(max_length=MAX_SEGMENT_KEYS)] = (
        Field(default_factory=dict))
    notes: Annotated[str, StringConstraints(max_length=MAX_NOTES), AfterValidator(plain_text)] = ""
    balance: Annotated[Decimal | None, Field(max_digits=14, decimal_places=2)] = None
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = "EUR"
    pin_hash: Annotated[PinHash | None, BeforeValidator(blank_is_none)] = None

    @property
    def vip(self) -> bool:
        return self.tier == "vip"


class Contact(BaseModel):
    """One past contact with a customer, for the screen pop.

    `at` is when it started (epoch seconds); `agent_id` is None when no agent
    took it (abandoned, self-served in the IVR); `outcome` is a short token
    (`handled`, `abandoned`, `callback_requested`...); `disposition` the
    wrap-up code the agent chose.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    at: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    channel: Literal["voice", "callback", "web", "email"]
    direction: Literal["inbound", "outbound"]
    service: Token
    agent_id: Annotated[Token | None, BeforeValidator(blank_is_none)] = None
    agent_name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_NAME),
                          AfterValidator(plain_line)] = ""
    duration_s: Annotated[float, Field(ge=0, le=86_400, allow_inf_nan=False)] = 0.0
    outcome: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z_]{0,31}$")] = "handled"
    disposition: Annotated[str, StringConstraints(max_length=80), AfterValidator(plain_line)] = ""
    notes: Annotated[str, StringConstraints(max_length=MAX_CONTACT_NOTES),
                     AfterValidator(plain_text)] = ""

    @field_validator("agent_name")
    @classmethod
    def _named_agent_only(cls, value: str, info: ValidationInfo) -> str:
        if value and info.data.get("agent_id") is None:
            raise ValueError("an agent name needs an agent_id")
        return value


def parse_customer(raw: object, *, region: str | None) -> Customer:
    """A Customer from external input (a mapping), national numbers read
    in `region`; `ValidationError` otherwise."""
    return Customer.model_validate(raw, context={"region": region})


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """Why one field of an input was refused (`field` is dotted:
    `phones.1`, `segment.recency`; empty for the input as a whole)."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field or 'row'}: {self.reason}"


def field_problems(exc: ValidationError) -> tuple[FieldProblem, ...]:
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        # A refused mapping key adds `[key]` to the path; the reader wants
        # the field path only.
        field = ".".join(str(part) for part in error["loc"]
                         if not (isinstance(part, str) and part.startswith("[")))
        reason = str(error["msg"]).removeprefix("Value error, ")
        problems.append(FieldProblem(field, reason))
    return tuple(dict.fromkeys(problems))
