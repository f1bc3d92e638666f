"""The IVR flow schema (pydantic v2): a flow is a list of typed steps joined
by step ids. This module owns the shape and the per-field rules; rules that
need the whole flow (gotos, loops, reachability) live in `checks.py`.

Validation context: `{"catalogue": frozenset[str] | None}`; when a
catalogue of sound names is given, every prompt must name one of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    PrivateAttr,
    StringConstraints,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

from cti.hours import Schedule

# Names that end up in AGI commands or channel variables: none of the
# characters a dialplan splits on (, | & ; ( ) $) nor spaces or quotes.
StepId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")]
ServiceName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
SkillName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Priority = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
FieldName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
Language = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}(_[A-Z]{2})?$")]
Tier = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
Did = Annotated[str, StringConstraints(pattern=r"^\+?[0-9]{2,20}$")]
DialplanName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,80}$")]
# E.164 for external numbers, or an internal extension.
PhoneNumber = Annotated[str, StringConstraints(pattern=r"^(\+[1-9][0-9]{6,14}|[0-9]{2,15})$")]

DTMF = "0123456789*#"

_SOUND = re.compile(r"^[A-Za-z0-9_./-]{1,128}$")
# ${caller}, ${language}, ${did}, ${fields.account}, ${customer.balance},
# ${data.reason}, ${choice.main_menu}
TEMPLATE_REF = re.compile(r"\$\{([a-z]+)(?:\.([A-Za-z0-9_]+))?\}")
TEMPLATE_ROOTS = {"caller": False, "language": False, "did": False,
                  "fields": True, "customer": True, "data": True, "choice": True}


def _coerce_key(value: Any) -> Any:
    """YAML reads `1: sales` with an int key; menus want the digit as text."""
    if isinstance(value, dict):
        return {str(k) if isinstance(k, int) and not isinstance(k, bool) else k: v
                for k, v in value.items()}
    return value


def _sound(value: Any, info: ValidationInfo) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("empty prompt: name a sound file")
    if not _SOUND.match(value) or ".." in value:
        raise ValueError(f"bad sound name {value!r}: letters, digits, _ . / - only")
    catalogue = (info.context or {}).get("catalogue")
    if catalogue is not None and value not in catalogue:
        raise ValueError(f"prompt {value!r} is not in the prompt catalogue")
    return value


@dataclass(frozen=True, slots=True)
class Prompt:
    """A sound for every language, or one per language (`*` = any)."""

    sounds: tuple[tuple[str, str], ...]

    def sound(self, language: str, default_language: str) -> str:
        table = dict(self.sounds)
        return table.get(language) or table.get(default_language) or table["*"]

    def languages(self) -> frozenset[str]:
        return frozenset(lang for lang, _ in self.sounds)

    def names(self) -> tuple[str, ...]:
        return tuple(sound for _, sound in self.sounds)


def _prompt(value: Any, info: ValidationInfo) -> Prompt:
    # One plain validator, so a bad prompt gives one message (a str | dict
    # union would report a failure per member).
    if isinstance(value, Prompt):
        return value
    if isinstance(value, str) or value is None:
        return Prompt((("*", _sound(value, info)),))
    if isinstance(value, dict):
        if not value:
            raise ValueError("empty prompt: give a sound or a language -> sound mapping")
        sounds = []
        for language, sound in value.items():
            if not isinstance(language, str) or not re.fullmatch(
                r"[a-z]{2,3}(_[A-Z]{2})?", language
            ):
                raise ValueError(f"bad prompt language {language!r}")
            try:
                sounds.append((language, _sound(sound, info)))
            except ValueError as exc:
                # The language in ctx lets the loader point at its own line.
                raise PydanticCustomError("prompt_sound", str(exc), {"key": language}) from None
        return Prompt(tuple(sounds))
    raise ValueError("a prompt is a sound name or a language -> sound mapping")


PromptRef = Annotated[Prompt, PlainValidator(_prompt)]


def _template(value: str) -> str:
    rest = TEMPLATE_REF.sub("", value)
    if "${" in rest:
        raise ValueError(f"bad reference in {value!r}: use ${{root}} or ${{root.name}}")
    for match in TEMPLATE_REF.finditer(value):
        root, name = match.group(1), match.group(2)
        if root not in TEMPLATE_ROOTS:
            raise ValueError(f"unknown reference root {root!r} in {value!r} "
                             f"(known: {', '.join(TEMPLATE_ROOTS)})")
        if TEMPLATE_ROOTS[root] != (name is not None):
            form = f"${{{root}.name}}" if TEMPLATE_ROOTS[root] else f"${{{root}}}"
            raise ValueError(f"bad reference {match.group(0)!r}: write {form}")
    return value


Template = Annotated[str, StringConstraints(max_length=256), AfterValidator(_template)]


def references(template: str) -> list[tuple[str, str | None]]:
    return [(m.group(1), m.group(2)) for m in TEMPLATE_REF.finditer(template)]


class StepBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: StepId
    # Ends the call (handoff, hangup, transfer, callback): every step must
    # be able to reach one (checks.py).
    terminal: ClassVar[bool] = False

    def edges(self) -> list[tuple[tuple[str | int, ...], str]]:
        """(location of the field inside the step, target step id)."""
        found: list[tuple[tuple[str | int, ...], str]] = []
        for name in ("next", "target", "on_invalid", "on_no_input", "on_not_found",
                     "on_failed", "on_locked", "on_closed", "on_missing"):
            target = getattr(self, name, None)
            if isinstance(target, str):
                found.append(((name,), target))
        for name in ("options", "on_tier"):
            table = getattr(self, name, None)
            if isinstance(table, dict):
                found.extend(((name, key), target) for key, target in table.items())
        return found

    def prompts(self) -> list[tuple[tuple[str | int, ...], Prompt]]:
        return [((name,), value) for name, value in self
                if isinstance(value, Prompt)]

    def templates(self) -> list[tuple[tuple[str | int, ...], str]]:
        return []


class Play(StepBase):
    """Play a prompt, then go on."""

    type: Literal["play"]
    prompt: PromptRef
    next: StepId


def _dtmf_key(value: str) -> str:
    if len(value) != 1 or value not in DTMF:
        raise ValueError(f"menu option {value!r} is not a single DTMF digit (0-9, *, #)")
    return value


Digit = Annotated[str, AfterValidator(_dtmf_key)]


class Menu(StepBase):
    """Play a prompt, read one digit, go where the option says.

    Invalid digits and silence count together against `retries`; once they
    are used up the call goes to `on_invalid` (last try was a wrong digit)
    or `on_no_input` (last try was silence; defaults to `on_invalid`).
    """

    type: Literal["menu"]
    prompt: PromptRef
    options: Annotated[dict[Digit, StepId], BeforeValidator(_coerce_key)] = Field(min_length=1)
    timeout: float = Field(5.0, gt=0, le=60, description="seconds to wait for a digit")
    retries: int = Field(2, ge=0, le=9)
    invalid_prompt: PromptRef | None = None
    no_input_prompt: PromptRef | None = None
    on_invalid: StepId
    on_no_input: StepId | None = None


class Collect(StepBase):
    """Read a number (account, order...) into `fields[into]`.

    Asterisk's GET DATA always ends on `#`; with terminator `*` the digits
    are read one by one. `timeout` is per digit. More digits than
    `max_length` are ignored.
    """

    type: Literal["collect"]
    prompt: PromptRef
    into: FieldName
    min_length: int = Field(1, ge=1, le=32)
    max_length: int = Field(ge=1, le=32)
    terminator: Literal["#", "*"] = "#"
    timeout: float = Field(5.0, gt=0, le=60)
    retries: int = Field(2, ge=0, le=9)
    invalid_prompt: PromptRef | None = None
    no_input_prompt: PromptRef | None = None
    next: StepId
    on_invalid: StepId
    on_no_input: StepId | None = None

    @model_validator(mode="after")
    def _lengths(self) -> Collect:
        if self.min_length > self.max_length:
            raise ValueError(f"min_length {self.min_length} > max_length {self.max_length}")
        return self


class Identify(StepBase):
    """Find the customer by caller number or by an account number keyed in
    earlier (`account_field`); `on_tier` branches on the customer's tier."""

    type: Literal["identify"]
    by: Literal["caller", "account"]
    account_field: FieldName | None = None
    next: StepId
    on_not_found: StepId
    on_tier: dict[Tier, StepId] = {}

    @model_validator(mode="after")
    def _account_field(self) -> Identify:
        if self.by == "account" and self.account_field is None:
            raise ValueError("identify by account needs account_field (the collected field)")
        if self.by == "caller" and self.account_field is not None:
            raise ValueError("account_field is only for identify by account")
        return self


class Authenticate(StepBase):
    """Ask the identified customer's PIN; `max_tries` wrong PINs lock
    self-service for `lock_minutes` and go to `on_failed`. Silence is not a
    wrong PIN: it uses `retries` then goes to `on_no_input`."""

    type: Literal["authenticate"]
    prompt: PromptRef
    invalid_prompt: PromptRef | None = None
    min_length: int = Field(4, ge=1, le=16)
    max_length: int = Field(8, ge=1, le=16)
    max_tries: int = Field(3, ge=1, le=10)
    lock_minutes: int = Field(30, ge=1, le=7 * 24 * 60)
    timeout: float = Field(5.0, gt=0, le=60)
    retries: int = Field(2, ge=0, le=9)
    next: StepId
    on_failed: StepId
    on_locked: StepId | None = None
    on_no_input: StepId | None = None

    @model_validator(mode="after")
    def _lengths(self) -> Authenticate:
        if self.min_length > self.max_length:
            raise ValueError(f"min_length {self.min_length} > max_length {self.max_length}")
        return self


class Say(StepBase):
    """Read out a value: number, digits, alpha, amount (currency) or date.

    An amount is said as `<units> <unit_prompt> [and] <cents>
    <subunit_prompt>`, negative ones after `minus_prompt`. When the value is
    missing or not of the kind, the step goes to `on_missing` (or `next`).
    """

    type: Literal["say"]
    kind: Literal["number", "digits", "alpha", "amount", "date"]
    value: Template
    prompt: PromptRef | None = None
    unit_prompt: PromptRef | None = None
    subunit_prompt: PromptRef | None = None
    and_prompt: PromptRef | None = None
    minus_prompt: PromptRef | None = None
    next: StepId
    on_missing: StepId | None = None

    @model_validator(mode="after")
    def _amount_prompts(self) -> Say:
        if self.kind == "amount" and (self.unit_prompt is None or self.subunit_prompt is None):
            raise ValueError("say amount needs unit_prompt and subunit_prompt "
                             "(e.g. euros / cents)")
        return self

    def templates(self) -> list[tuple[tuple[str | int, ...], str]]:
        return [(("value",), self.value)]


class Hours(StepBase):
    """Open now (per `schedule`) -> `next`, else `on_closed`."""

    type: Literal["hours"]
    schedule: Schedule
    next: StepId
    on_closed: StepId


class SetData(StepBase):
    """Attach key/values to the call (screen pop, routing); with `export`
    they are also set as channel variables `IVR_<KEY>`."""

    type: Literal["set_data"]
    data: dict[FieldName, Template] = Field(min_length=1)
    export: bool = False
    next: StepId

    def templates(self) -> list[tuple[tuple[str | int, ...], str]]:
        return [(("data", key), value) for key, value in self.data.items()]


class SetLanguage(StepBase):
    """Switch the call's language (prompts and Asterisk's own say-*)."""

    type: Literal["set_language"]
    language: Language
    next: StepId


class Goto(StepBase):
    type: Literal["goto"]
    target: StepId


class Handoff(StepBase):
    """Hand the call to routing: service, priority, required skills with
    their minimum level."""

    type: Literal["handoff"]
    service: ServiceName
    priority: Priority = "standard"
    skills: dict[SkillName, Annotated[int, Field(ge=1, le=10)]] = {}
    prompt: PromptRef | None = None
    terminal: ClassVar[bool] = True


class Callback(StepBase):
    """The caller takes a callback instead of waiting: the call ends and the
    callback feature gets the request (service, number)."""

    type: Literal["callback"]
    service: ServiceName
    number: Template = "${caller}"
    prompt: PromptRef | None = None
    terminal: ClassVar[bool] = True

    def templates(self) -> list[tuple[tuple[str | int, ...], str]]:
        return [(("number",), self.number)]


class Transfer(StepBase):
    """Transfer to another service (routing continues there) or to a number
    (the dialplan continues at `context`, `number`, 1 when the AGI returns).
    """

    type: Literal["transfer"]
    service: ServiceName | None = None
    number: PhoneNumber | None = None
    context: DialplanName | None = None
    prompt: PromptRef | None = None
    terminal: ClassVar[bool] = True

    @model_validator(mode="after")
    def _one_target(self) -> Transfer:
        if (self.service is None) == (self.number is None):
            raise ValueError("a transfer goes to exactly one of: service, number")
        if self.number is not None and self.context is None:
            raise ValueError("a transfer to a number needs the dialplan context to dial it from")
        if self.service is not None and self.context is not None:
            raise ValueError("context is only for a transfer to a number")
        return self


class Hangup(StepBase):
    """End the call (after an optional goodbye): the caller was served or
    nothing more can be done."""

    type: Literal["hangup"]
    prompt: PromptRef | None = None
    terminal: ClassVar[bool] = True


Step = Annotated[
    Play | Menu | Collect | Identify | Authenticate | Say | Hours | SetData | SetLanguage
    | Goto | Handoff | Callback | Transfer | Hangup,
    Field(discriminator="type"),
]
STEP_TYPES = ("play", "menu", "collect", "identify", "authenticate", "say", "hours",
              "set_data", "set_language", "goto", "handoff", "callback", "transfer", "hangup")


class Flow(BaseModel):
    """One IVR flow (one YAML file). `start` defaults to the first step;
    `fallback_service` takes the call when the flow itself fails, so no
    caller is ever dropped; `dids` are the numbers this flow answers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    language: Language = "en"
    fallback_service: ServiceName
    dids: list[Did] = []
    start: StepId | None = None
    steps: list[Step] = Field(min_length=1)

    _by_id: dict[str, Step] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any, /) -> None:
        # First definition wins; duplicates are reported by checks.py.
        for step in reversed(self.steps):
            self._by_id[step.id] = step

    @property
    def start_id(self) -> str:
        return self.start or self.steps[0].id

    def step(self, step_id: str) -> Step:
        return self._by_id[step_id]

    def has_step(self, step_id: str) -> bool:
        return step_id in self._by_id
