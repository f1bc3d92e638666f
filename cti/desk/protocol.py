"""The `/ws/agent` protocol: every message either way is one JSON object
with a protocol version `v` and a `type`, parsed by the pydantic models
here (documented in README.md, "Agent desk protocol").

Server messages of the agent's stream (state, pop, pop_update,
pop_withdrawn, call_progress, snapshot) carry a per-agent sequence number
`seq` that increases by one per message and is shared by all the agent's
tabs; a desk that reconnects sends the last one it saw. Replies (welcome, ack,
error) go to the one connection that asked and carry the stream position
at the time (`seq`) without advancing it. Client commands carry an `id`:
the same id sent again gets the first answer again and acts once.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    TypeAdapter,
    model_validator,
)

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 16 * 1024

CommandId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
CallId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
ServiceName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
AgentId = Annotated[str, StringConstraints(pattern=r"^[0-9]{2,20}$")]
Notes = Annotated[str, StringConstraints(max_length=1000)]
Version = Literal[1]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Version = 1


# -- agent to server -----------------------------------------------------------------


class Hello(_Message):
    """The first message when the token was not in the URL, or to resume:
    `stream` and `last_seq` from the previous connection."""

    type: Literal["hello"]
    token: Annotated[str, StringConstraints(max_length=2048)] | None = None
    stream: Annotated[str, StringConstraints(max_length=64)] | None = None
    last_seq: Annotated[int, Field(ge=0)] | None = None


class _Command(_Message):
    id: CommandId


class Ready(_Command):
    type: Literal["ready"]


class Pause(_Command):
    type: Literal["pause"]
    reason: Annotated[str, StringConstraints(min_length=1, max_length=40)]


class EndWrapUp(_Command):
    type: Literal["end_wrap_up"]


class Disposition(_Command):
    """Disposition and notes of the agent's last call, written to the
    customer's contact history when the call has ended."""

    type: Literal["disposition"]
    call_id: CallId
    disposition: Annotated[str, StringConstraints(min_length=1, max_length=80)]
    notes: Notes = ""


class Transfer(_Command):
    """Send the caller to another service (their place in the queue kept),
    or to one named agent (`agent`: a blind transfer; the caller waits for
    that agent, then goes back to their service's queue); exactly one of
    `service` and `agent`. The notes reach the next agent's pop."""

    type: Literal["transfer"]
    call_id: CallId
    service: ServiceName | None = None
    agent: AgentId | None = None
    notes: Notes = ""

    @model_validator(mode="after")
    def _one_target(self) -> Transfer:
        if (self.service is None) == (self.agent is None):
            raise ValueError("give exactly one of service and agent")
        return self


class Escalate(_Command):
    """Transfer to the level-2 service of the call's service: its
    `escalation` in the center file."""

    type: Literal["escalate"]
    call_id: CallId
    notes: Notes = ""


class Hangup(_Command):
    """Hang up the agent's current call (the caller's side)."""

    type: Literal["hangup"]
    call_id: CallId


class CallNotes(_Command):
    """Notes on the agent's current call for whoever takes the caller next
    (a transfer done on the phone, or by the desk): they replace the
    agent's earlier notes on this call; empty takes them back."""

    type: Literal["notes"]
    call_id: CallId
    notes: Notes


class Ping(_Command):
    type: Literal["ping"]


Command = (Ready | Pause | EndWrapUp | Disposition | Transfer | Escalate | Hangup | CallNotes
           | Ping)
ClientMessage = Annotated[Hello | Command, Field(discriminator="type")]
CLIENT_MESSAGE: TypeAdapter[Hello | Command] = TypeAdapter(ClientMessage)
COMMAND_TYPES = frozenset({"ready", "pause", "end_wrap_up", "disposition", "transfer",
                           "escalate", "hangup", "notes", "ping"})


# -- server to agent -----------------------------------------------------------------


class AgentView(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    state: str
    since: float
    reason: str | None = None


class ContactView(BaseModel):
    model_config = ConfigDict(frozen=True)

    at: float
    channel: str
    direction: str
    service: str
    agent_id: str | None
    agent_name: str
    duration_s: float
    outcome: str
    disposition: str
    notes: str


class CustomerView(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    tier: str
    account: str | None
    phones: list[str]
    segment: dict[str, Any]
    notes: str


class IvrView(BaseModel):
    """What the caller did in the IVR (absent fields: not collected)."""

    model_config = ConfigDict(frozen=True)

    flow: str | None = None
    choices: list[str] = Field(default_factory=list)
    customer_id: str | None = None
    verified: bool = False
    service: str | None = None
    priority: str | None = None
    language: str | None = None


class NoteView(BaseModel):
    model_config = ConfigDict(frozen=True)

    at: float
    agent_id: str
    agent_name: str
    service: str
    notes: str


class CrmContactView(BaseModel):
    """A recent contact as the CRM reports it (`at`: epoch seconds)."""

    model_config = ConfigDict(frozen=True)

    at: float
    channel: str
    summary: str
    agent: str


class CrmView(BaseModel):
    """The caller's record in the CRM, as it answered (README, "CRM
    lookup"): shown beside the directory's customer, never instead of it."""

    model_config = ConfigDict(frozen=True)

    name: str
    tier: str
    account: str | None
    notes: str
    segment: dict[str, Any]
    link: str | None
    recent_contacts: list[CrmContactView]


# off: no CRM configured; pending: asked, no answer yet (a pop_update
# follows); found / not_found: its answer; unavailable: no usable answer in
# time (timeout, error, bad answer, not asked while it keeps failing).
CrmStatus = Literal["off", "pending", "found", "not_found", "unavailable"]


class PopView(BaseModel):
    """The screen pop of one offered call."""

    model_config = ConfigDict(frozen=True)

    call_id: str
    caller_number: str | None
    caller_name: str | None
    identified_by: Literal["ivr", "account", "phone", "unknown"]
    customer: CustomerView | None
    vip: bool
    service: str
    rule: str
    waited_s: float
    ivr: IvrView | None
    history: list[ContactView]
    previous_notes: list[NoteView]
    progress: Literal["ringing", "connected", "on_hold", "ended"] = "ringing"
    crm: CrmView | None = None
    crm_status: CrmStatus = "off"
    # The customer and history as JSON, rendered when the caller's profile
    # was read (most of the pop), with the objects they render: used only
    # while this pop still holds those very objects.
    _rendered: tuple[CustomerView | None, list[ContactView], str] | None = PrivateAttr(
        default=None)

    def with_rendered(self, rendered: tuple[CustomerView | None, list[ContactView], str]
                      ) -> PopView:
        self._rendered = rendered
        return self

    def to_json(self) -> str:
        """This pop as JSON: the rest serialised now, beside the parts
        already rendered when they are still this pop's."""
        rendered = self._rendered
        if rendered is None or rendered[0] is not self.customer \
                or rendered[1] is not self.history:
            return self.model_dump_json()
        head = self.model_dump_json(exclude=_RENDERED_FIELDS)
        return f"{head[:-1]},{rendered[2]}}}"

    def same_as(self, other: PopView) -> bool:
        """The same pop on screen (what is rendered ahead aside)."""
        return self.__dict__ == other.__dict__


_RENDERED_FIELDS: set[str] = {"customer", "history"}


def render_parts(customer: CustomerView | None, history: list[ContactView]) -> str:
    """`"customer":...,"history":[...]` as `PopView.to_json` puts them."""
    body = ",".join(contact.model_dump_json() for contact in history)
    head = "null" if customer is None else customer.model_dump_json()
    return f'"customer":{head},"history":[{body}]'


class _ServerMessage(_Message):
    seq: int = 0

    def text(self, seq: int) -> str:
        """This message as sent, numbered `seq`."""
        return self.model_copy(update={"seq": seq}).model_dump_json()


class StateMessage(_ServerMessage):
    type: Literal["state"] = "state"
    agent: AgentView


class PopMessage(_ServerMessage):
    type: Literal["pop"] = "pop"
    pop: PopView

    def text(self, seq: int) -> str:
        return _pop_text(self.v, seq, self.type, self.pop)


class PopUpdate(_ServerMessage):
    """The pop of the offered (or current) call again, whole, with what
    came later: the CRM's answer."""

    type: Literal["pop_update"] = "pop_update"
    pop: PopView

    def text(self, seq: int) -> str:
        return _pop_text(self.v, seq, self.type, self.pop)


def _pop_text(v: int, seq: int, kind: str, pop: PopView) -> str:
    """A pop message as the generic serialisation gives it, keys in field
    order, with the pop's pre-rendered parts."""
    return f'{{"v":{v},"seq":{seq},"type":"{kind}","pop":{pop.to_json()}}}'


class PopWithdrawn(_ServerMessage):
    type: Literal["pop_withdrawn"] = "pop_withdrawn"
    call_id: str
    reason: Literal["not_answered", "caller_gone", "transferred", "answered_elsewhere"]


class CallProgress(_ServerMessage):
    type: Literal["call_progress"] = "call_progress"
    call_id: str
    progress: Literal["ringing", "connected", "on_hold", "ended"]


class Snapshot(_ServerMessage):
    """Everything a desk shows, as of `seq`: sent on connect and when a
    resume asks for more than the server still holds."""

    type: Literal["snapshot"] = "snapshot"
    agent: AgentView
    pop: PopView | None
    last_call: str | None
    disposition_pending: bool


class AgentRef(BaseModel):
    """A colleague a call can be transferred to."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str


class Welcome(_ServerMessage):
    type: Literal["welcome"] = "welcome"
    agent_id: str
    agent_name: str
    stream: str
    pause_reasons: list[str]
    services: list[str]
    agents: list[AgentRef] = Field(default_factory=list)
    expires_at: float


class Ack(_ServerMessage):
    type: Literal["ack"] = "ack"
    command_id: str
    result: dict[str, Any] = Field(default_factory=dict)


class ErrorMessage(_ServerMessage):
    type: Literal["error"] = "error"
    code: str
    message: str
    command_id: str | None = None


StreamMessage = (StateMessage | PopMessage | PopUpdate | PopWithdrawn | CallProgress
                 | Snapshot)
Reply = Welcome | Ack | ErrorMessage
