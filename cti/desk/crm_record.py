"""The CRM's answer at the edge: `CrmRecord` parses what the CRM sent
(README, "CRM lookup" has the contract) and nothing else reads the raw
JSON. Unknown fields are ignored (CRMs send much more); a known field of
the wrong shape refuses the whole answer, with the field named.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    ValidationError,
)

from cti.customers.models import blank_is_none, plain_line, plain_text, segment_value
from cti.desk.protocol import CrmContactView, CrmView

MAX_RECENT = 10
MAX_SEGMENT_KEYS = 32

def _link(value: str) -> str:
    # It becomes an <a href> on the agent's page: http(s) only, so no
    # javascript: or data: URL can ride in on a CRM record.
    url = urlsplit(value)
    if url.scheme not in ("http", "https") or not url.netloc:
        raise ValueError("must be an http:// or https:// URL")
    return plain_line(value)


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


Line = Annotated[str, StringConstraints(strip_whitespace=True), AfterValidator(plain_line)]
Account = Annotated[str, StringConstraints(strip_whitespace=True,
                                           pattern=r"^[A-Za-z0-9_./-]{1,40}$")]
SegmentKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,31}$")]
SegmentValue = Annotated[str | int | float, PlainValidator(segment_value)]


class CrmContact(BaseModel):
    """A recent contact the CRM knows of: `at` is epoch seconds or ISO 8601
    (UTC when it names no zone)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    at: Annotated[datetime, AfterValidator(_utc)]
    channel: Annotated[Line, Field(max_length=20)] = ""
    summary: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500),
                       AfterValidator(plain_text)] = ""
    agent: Annotated[Line, Field(max_length=120)] = ""


class CrmRecord(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    name: Annotated[Line, Field(max_length=120)] = ""
    tier: Annotated[Line, Field(max_length=32)] = ""
    account: Annotated[Account | None, BeforeValidator(blank_is_none)] = None
    notes: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000),
                     AfterValidator(plain_text)] = ""
    segment: Annotated[dict[SegmentKey, SegmentValue], Field(max_length=MAX_SEGMENT_KEYS)] = (
        Field(default_factory=dict))
    link: Annotated[Annotated[str, StringConstraints(max_length=500), AfterValidator(_link)]
                    | None, BeforeValidator(blank_is_none)] = None
    recent_contacts: Annotated[list[CrmContact], Field(max_length=MAX_RECENT)] = (
        Field(default_factory=list))

    def view(self) -> CrmView:
        return CrmView(
            name=self.name, tier=self.tier, account=self.account, notes=self.notes,
            segment=dict(self.segment), link=self.link,
            recent_contacts=[CrmContactView(at=contact.at.timestamp(), channel=contact.channel,
                                            summary=contact.summary, agent=contact.agent)
                             for contact in self.recent_contacts])


class BadAnswer(ValueError):
    """The CRM's JSON is not a record; the message says where and why."""


def record_of(answer: Any) -> CrmRecord | None:
    """The record in a decoded JSON answer: an object, or the first of a
    list (search APIs answer lists); None when it holds nobody (`null`,
    `[]`, `{}`, or an object with none of the fields we read)."""
    if isinstance(answer, list):
        answer = answer[0] if answer else None
    if answer is None:
        return None
    if not isinstance(answer, dict):
        raise BadAnswer(f"expected a JSON object or list, got {type(answer).__name__}")
    try:
        record = CrmRecord.model_validate(answer)
    except ValidationError as exc:
        raise BadAnswer(_problems(exc)) from None
    return None if record == CrmRecord() else record


def _problems(exc: ValidationError) -> str:
    # Field names and reasons only: the values are customer data.
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:3]:
        where = ".".join(str(part) for part in error["loc"]) or "answer"
        parts.append(f"{where}: {str(error['msg']).removeprefix('Value error, ')}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")
