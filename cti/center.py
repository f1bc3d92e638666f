"""The center definition: services, agents and the routing policy, read from
one YAML file (`center.file` in the settings) and checked at the edge.

A bad file is refused as a whole with every problem as (path, reason), the
path naming the service, agent or field (`services.support.relaxation.1`).
The result is the router's own vocabulary (`Policy`, `Agent`) plus what the
routing shell needs besides: who logs in at start, the devices to ring, the
numbers that make a caller VIP, the default service and the pause reason
given to an agent who lets a call ring out.

    services:
      support:
        skills: {support: 1}
        numbers: ["0140000001"]
        target: {percent: 80, seconds: 20}
        wrap_up_seconds: 10
        ring_timeout_seconds: 15
        relaxation:
          - {after: 30, skill: support, level: 5}
          - {after: 60, skill: support, any_level: true}
          - {after: 120, overflow: sales}
        escalation: support-l2     # where agents escalate these calls
        hours:                     # optional: callbacks are promised inside them
          timezone: Europe/Paris
          weekly: {mon-fri: ["08:00-18:00"], sat: "09:00-12:00"}
          holidays: [2026-12-25]
        callback_mode: customer-first   # or agent-first (the default)
        caller_id: "0140000001"    # what a called-back customer sees
    agents:
      - {id: "1001", name: Bob Martin, device: PJSIP/1001, skills: {support: 7}}
    vip_numbers: ["0140000099"]
    default_service: support
    transfer_wait_seconds: 60      # a caller transferred to a busy agent waits this long
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cti.auth import Role, is_password_hash
from cti.hours import Schedule
from cti.pbx.commands import dial_string
from cti.pbx.errors import InvalidCommand
from cti.routing import (
    DEFAULT_CLASSES,
    Agent,
    AgentChoice,
    AnyLevel,
    LowerLevel,
    Overflow,
    Policy,
    PriorityClass,
    Relaxation,
    Service,
    ServiceLevel,
)
from cti.routing.errors import InvalidPolicy

Level = Annotated[int, Field(ge=1, le=10)]
Seconds = Annotated[float, Field(ge=0, le=86_400)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
Number = Annotated[str, Field(pattern=r"^\+?[0-9]{2,20}$")]


class CallbackMode(Enum):
    """Who a callback rings first. Agent-first: the reserved agent's phone,
    then, once they answered, the customer (`cti-callback`). Customer-first:
    the customer, then, once they answered, the reserved agent
    (`cti-callback-customer`): no agent waits on a ringing line. Either
    way a callback dials only with an agent reserved for it."""

    AGENT_FIRST = "agent-first"
    CUSTOMER_FIRST = "customer-first"


class CenterError(ValueError):
    """A center file that cannot be used; `problems` lists (path, reason)."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        detail = "; ".join(f"{path}: {reason}" for path, reason in problems)
        super().__init__(f"{source}: {detail}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TargetModel(_Model):
    percent: Annotated[float, Field(gt=0, le=100)] = 80.0
    seconds: Annotated[float, Field(gt=0, le=3600)] = 20.0


class StepModel(_Model):
    """One relaxation step: exactly one of `level`, `any_level`, `overflow`."""

    after: Seconds
    skill: Name | None = None
    level: Level | None = None
    any_level: bool = False
    overflow: Name | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> StepModel:
        kinds = [self.level is not None, self.any_level, self.overflow is not None]
        if sum(kinds) != 1:
            raise ValueError("a step has exactly one of level, any_level: true, overflow")
        if self.overflow is None and self.skill is None:
            raise ValueError("a level or any_level step names its skill")
        return self

    def to_step(self) -> Relaxation:
        if self.overflow is not None:
            return Overflow(self.after, self.overflow)
        assert self.skill is not None
        if self.level is not None:
            return LowerLevel(self.after, self.skill, self.level)
        return AnyLevel(self.after, self.skill)


class ServiceModel(_Model):
    skills: dict[Name, Level] = Field(default_factory=dict)
    numbers: list[Number] = Field(default_factory=list)
    target: TargetModel = TargetModel()
    wrap_up_seconds: Seconds = 10.0
    ring_timeout_seconds: Annotated[float, Field(ge=5, le=300)] = 15.0
    relaxation: list[StepModel] = Field(default_factory=list)
    priority_weight: Annotated[float, Field(ge=-3600, le=3600)] = 0.0
    sticky_seconds: Seconds = 0.0
    caller_id: Number | None = None
    # The level-2 service an agent escalates this service's calls to.
    escalation: Name | None = None
    # When the service is open (the IVR's schedule format). Callbacks are
    # promised only inside them: ASAP while open, slots that start open.
    # None: always open.
    hours: Schedule | None = None
    callback_mode: CallbackMode = CallbackMode.AGENT_FIRST

    @model_validator(mode="after")
    def _customer_first_caller_id(self) -> ServiceModel:
        # The customer is called before anyone is on the line: the number
        # they see must be the center's, not whatever the trunk defaults to.
        if self.callback_mode is CallbackMode.CUSTOMER_FIRST and self.caller_id is None:
            raise ValueError("a customer-first service needs caller_id (the number the"
                             " called-back customer sees)")
        return self


# An agent id is the extension `cti-connect` is entered with (its `_X.`
# pattern in dialplans/cti.conf): digits only.
AgentId = Annotated[str, Field(pattern=r"^[0-9]{2,20}$")]


class AgentModel(_Model):
    id: AgentId
    name: Annotated[str, Field(min_length=1, max_length=80)]
    device: Annotated[str, Field(min_length=3, max_length=80)]
    skills: dict[Name, Level] = Field(default_factory=dict)
    login_at_start: bool = False
    # `cti hash-password` makes one; an agent without it cannot log in to
    # the desk (the supervisor can still log them in).
    password_hash: str | None = None

    @field_validator("password_hash")
    @classmethod
    def _hash(cls, value: str | None) -> str | None:
        if value is not None and not is_password_hash(value):
            raise ValueError("not a password hash: make one with `cti hash-password`")
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        try:
            return dial_string("device", value)
        except InvalidCommand as exc:
            raise ValueError(exc.reason) from None


class SupervisorModel(_Model):
    id: Name
    name: Annotated[str, Field(min_length=1, max_length=80)]
    device: Annotated[str, Field(min_length=3, max_length=80)] | None = None
    password_hash: str | None = None

    _hash = field_validator("password_hash")(AgentModel._hash.__func__)  # type: ignore[attr-defined]

    @field_validator("device")
    @classmethod
    def _device(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return dial_string("device", value)
        except InvalidCommand as exc:
            raise ValueError(exc.reason) from None


class ClassModel(_Model):
    base: Annotated[float, Field(ge=-86_400, le=86_400)]
    aging_per_second: Annotated[float, Field(ge=0, le=100)] = 1.0


class CenterModel(_Model):
    services: Annotated[dict[Name, ServiceModel], Field(min_length=1)]
    agents: list[AgentModel] = Field(default_factory=list)
    supervisors: list[SupervisorModel] = Field(default_factory=list)
    pause_reasons: list[Annotated[str, Field(min_length=1, max_length=40)]] = Field(
        default_factory=lambda: ["break", "lunch", "meeting", "training", "back office"])
    default_service: Name | None = None
    vip_numbers: list[Number] = Field(default_factory=list)
    priority_classes: dict[Name, ClassModel] | None = None
    agent_choice: Literal["best-skill-level then longest-idle", "longest-idle"] = (
        "best-skill-level then longest-idle")
    no_answer_pause_reason: Annotated[str, Field(min_length=1, max_length=40)] = "no answer"
    no_answer_retry_seconds: Seconds = 60.0
    transfer_wait_seconds: Annotated[float, Field(ge=5, le=3600)] = 60.0

    @model_validator(mode="after")
    def _consistent(self) -> CenterModel:
        if self.default_service is not None and self.default_service not in self.services:
            raise ValueError(f"default_service {self.default_service!r} is not a service")
        for name, service in self.services.items():
            if service.escalation is not None and service.escalation not in self.services:
                raise ValueError(f"services.{name}.escalation: {service.escalation!r}"
                                 " is not a service")
            if service.escalation == name:
                raise ValueError(f"services.{name}.escalation: a service cannot escalate"
                                 " to itself")
        seen: set[str] = set()
        for person_id in [*(a.id for a in self.agents), *(s.id for s in self.supervisors)]:
            if person_id in seen:
                raise ValueError(f"id {person_id!r} appears twice among agents and supervisors")
            seen.add(person_id)
        return self


@dataclass(frozen=True, slots=True)
class Person:
    """A supervisor (agents are routing `Agent`s)."""

    id: str
    name: str
    device: str | None


@dataclass(frozen=True, slots=True)
class Center:
    """The checked center: the router's policy and agents, and the rest."""

    policy: Policy
    agents: tuple[Agent, ...]
    login_at_start: frozenset[str]
    default_service: str
    vip_numbers: frozenset[str]
    no_answer_pause_reason: str
    caller_ids: Mapping[str, str]
    pause_reasons: tuple[str, ...] = ()
    # id -> (role, password hash) of everyone who may log in with a password
    credentials: Mapping[str, tuple[Role, str]] = field(default_factory=dict)
    supervisors: Mapping[str, Person] = field(default_factory=dict)
    # service -> the service its calls are escalated to (level 2)
    escalations: Mapping[str, str] = field(default_factory=dict)
    # service -> its business hours; a service not listed is always open
    hours: Mapping[str, Schedule] = field(default_factory=dict)
    # How long a caller transferred to a named agent waits for that agent
    # (busy, wrapping up) before going back to the queue of their service.
    transfer_wait_seconds: float = 60.0
    # services whose callbacks are not agent-first (the default)
    callback_modes: Mapping[str, CallbackMode] = field(default_factory=dict)

    def callback_mode(self, service: str) -> CallbackMode:
        return self.callback_modes.get(service, CallbackMode.AGENT_FIRST)

    def service_for(self, requested: str | None, did: str | None) -> str:
        """The service of a new call: the one the IVR or dialplan named if
        it exists, else the one its DID leads to, else the default."""
        services = self.policy.services
        if requested and requested in services:
            return requested
        if did:
            by_number = self.policy.service_for_number(did)
            if by_number is not None:
                return by_number.name
        return self.default_service


def load_center(path: Path) -> Center:
    """Read and check a center file; raise CenterError naming every problem."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CenterError(source, [("file", exc.strerror or str(exc))]) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "file"
        raise CenterError(source, [(where, str(getattr(exc, "problem", exc)))]) from None
    return center_from(raw, source)


def center_from(raw: Any, source: str = "center") -> Center:
    """Check a center given as plain data (the parsed YAML)."""
    try:
        model = CenterModel.model_validate(raw)
    except ValidationError as exc:
        problems = [(".".join(str(part) for part in error["loc"]) or "(top)", error["msg"])
                    for error in exc.errors()]
        raise CenterError(source, problems) from None
    try:
        return _build(model)
    except (InvalidPolicy, ValueError) as exc:
        raise CenterError(source, [("policy", str(exc))]) from None


def _build(model: CenterModel) -> Center:
    services = {
        name: Service(
            name=name, skills=dict(spec.skills), numbers=tuple(spec.numbers),
            target=ServiceLevel(spec.target.percent, spec.target.seconds),
            wrap_up_seconds=spec.wrap_up_seconds, ring_timeout_seconds=spec.ring_timeout_seconds,
            relaxation=tuple(step.to_step() for step in spec.relaxation),
            priority_weight=spec.priority_weight, sticky_seconds=spec.sticky_seconds,
        )
        for name, spec in model.services.items()
    }
    classes = (DEFAULT_CLASSES if model.priority_classes is None else
               {name: PriorityClass(c.base, c.aging_per_second)
                for name, c in model.priority_classes.items()})
    policy = Policy(services=services, classes=classes,
                    agent_choice=AgentChoice(model.agent_choice),
                    no_answer_retry_seconds=model.no_answer_retry_seconds)
    agents = tuple(Agent(id=a.id, name=a.name, interface=a.device, skills=dict(a.skills))
                   for a in model.agents)
    return Center(
        policy=policy, agents=agents,
        login_at_start=frozenset(a.id for a in model.agents if a.login_at_start),
        default_service=model.default_service or next(iter(services)),
        vip_numbers=frozenset(model.vip_numbers),
        no_answer_pause_reason=model.no_answer_pause_reason,
        caller_ids={name: spec.caller_id for name, spec in model.services.items()
                    if spec.caller_id is not None},
        pause_reasons=tuple(dict.fromkeys([*model.pause_reasons, model.no_answer_pause_reason])),
        credentials={
            **{a.id: ("agent", a.password_hash) for a in model.agents if a.password_hash},
            **{s.id: ("supervisor", s.password_hash) for s in model.supervisors
               if s.password_hash},
        },
        supervisors={s.id: Person(s.id, s.name, s.device) for s in model.supervisors},
        escalations={name: spec.escalation for name, spec in model.services.items()
                     if spec.escalation is not None},
        hours={name: spec.hours for name, spec in model.services.items()
               if spec.hours is not None},
        transfer_wait_seconds=model.transfer_wait_seconds,
        callback_modes={name: spec.callback_mode for name, spec in model.services.items()
                        if spec.callback_mode is not CallbackMode.AGENT_FIRST},
    )
