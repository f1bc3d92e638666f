"""Typed commands towards Asterisk, validated before any action is built.

This module owns the check of every value that reaches an AMI action: a
dial string, a channel name, a context, an extension, a variable name or
value, a caller id, a queue. A command that could inject a second dial
target (`&`), an application argument (`,` `|`), a dialplan expression or
function (`$` `{` `(`), a header (CR/LF) or another statement (`;`) is
refused with `InvalidCommand` naming the field, so nothing is ever sent.
External numbers are E.164, checked with `phonenumbers`.

Field order in each action follows the actions sent to the real Asterisk 22
(recordings 01, 04, 05, 06, 07, 09, 10, 11).
"""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import phonenumbers

from cti.pbx.actions import AmiAction
from cti.pbx.errors import InvalidCommand

# Characters that change how Asterisk reads a value once the dialplan
# substitutes it into an application argument: `&` a second dial target,
# `,` `|` an argument separator, `;` a comment / statement, `$ { } ( ) [ ]`
# expressions and functions, `\` and `"` quoting in argument parsing.
DIALPLAN_SPECIAL = frozenset('&,|;$(){}[]\\"')
# Unicode categories refused in free text: control and format characters
# (zero-width, bidi overrides), line/paragraph separators, surrogates,
# private use and unassigned code points.
REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})

MAX_NAME = 79  # AST_MAX_CONTEXT / AST_MAX_EXTENSION are 80 including the NUL
MAX_CHANNEL = 200
MAX_TEXT = 80
MAX_VALUE = 256
MAX_NUMBER_INPUT = 40

_TECH = r"[A-Za-z][A-Za-z0-9]{0,15}"
_RESOURCE = r"[A-Za-z0-9_.@+*#:\-]{1,180}"
# A channel that exists: `PJSIP/1001-0000000a`, `Local/60@sim-caller-00000000;1`.
# The `;1`/`;2` half suffix is the only `;` Asterisk puts in a channel name.
_CHANNEL = re.compile(rf"(?:Local/{_RESOURCE};[12]|{_TECH}/{_RESOURCE})")
# A device to dial: `PJSIP/1001`, `Local/1001@sim-agent`, `Local/1001@ctx/n`.
_DIAL = re.compile(rf"(?:Local/[A-Za-z0-9_.@+*#\-]{{1,180}}(?:/[nbmj]{{1,4}})?"
                   rf"|{_TECH}/[A-Za-z0-9_.@+*#\-]{{1,180}})")
_CONTEXT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,78}")
# A literal extension; `_` first would make it a pattern.
_EXTEN = re.compile(r"[A-Za-z0-9+*#][A-Za-z0-9+*#_.\-]{0,78}")
_QUEUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,78}")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,79}")
_HEADER = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{0,79}")
_CHANNEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,127}")
_CALLER_NUMBER = re.compile(r"\+?[0-9*#]{1,31}")
_NUMBER_INPUT = re.compile(r"[0-9+\-. ()/]+")
_RESERVED_HEADERS = frozenset({"action", "actionid", "event", "userevent", "response"})


def _string(field: str, value: object, max_len: int) -> str:
    if not isinstance(value, str):
        raise InvalidCommand(field, f"must be a string, not {type(value).__name__}")
    if not value:
        raise InvalidCommand(field, "must not be empty")
    if len(value) > max_len:
        raise InvalidCommand(field, f"longer than {max_len} characters ({len(value)})")
    for char in value:
        if unicodedata.category(char) in REFUSED_CATEGORIES:
            raise InvalidCommand(field, f"control or invisible character U+{ord(char):04X}")
    return value


def _refuse_special(field: str, value: str, extra: str = "", allowed: str = "") -> None:
    # NFKC first: a fullwidth ampersand (U+FF06) is refused like `&`.
    refused = (DIALPLAN_SPECIAL | frozenset(extra)) - frozenset(allowed)
    for char in unicodedata.normalize("NFKC", value):
        if char in refused:
            raise InvalidCommand(field, f"character {char!r} is not allowed")


def _shaped(field: str, value: object, pattern: re.Pattern[str], what: str, *,
            max_len: int = MAX_NAME, allowed: str = "") -> str:
    text = _string(field, value, max_len)
    _refuse_special(field, text, allowed=allowed)
    if not pattern.fullmatch(text):
        raise InvalidCommand(field, f"{text!r} is not {what}")
    return text


def _text(field: str, value: object, max_len: int = MAX_TEXT, extra: str = "") -> str:
    """Free text (a name, a reason, a variable value): any printable
    character except the dialplan specials."""
    text = _string(field, value, max_len)
    _refuse_special(field, text, extra=extra)
    return text


def _int(field: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidCommand(field, f"must be an integer, not {type(value).__name__}")
    if not low <= value <= high:
        raise InvalidCommand(field, f"{value} is outside {low}..{high}")
    return value


def _bool(field: str, value: object) -> bool:
    # `Async: False` from a Python bool was read as async by panoramisk
    # (defect 2): the wire form is always the string "true" or "false".
    if not isinstance(value, bool):
        raise InvalidCommand(field, f"must be true or false, not {type(value).__name__}")
    return value


def _optional_instance(field: str, value: object, kind: type) -> None:
    if value is not None and not isinstance(value, kind):
        raise InvalidCommand(field, f"must be a {kind.__name__}, not {type(value).__name__}")


def _wire_bool(value: bool) -> str:
    return "true" if value else "false"


def channel_name(field: str, value: object) -> str:
    return _shaped(field, value, _CHANNEL, "a channel name", max_len=MAX_CHANNEL, allowed=";")


def dial_string(field: str, value: object) -> str:
    return _shaped(field, value, _DIAL, "a device (Tech/resource)", max_len=MAX_CHANNEL)


def context_name(field: str, value: object) -> str:
    return _shaped(field, value, _CONTEXT, "a dialplan context name")


def exten_name(field: str, value: object) -> str:
    return _shaped(field, value, _EXTEN, "a literal extension")


def variable_name(field: str, value: object) -> str:
    return _shaped(field, value, _VARIABLE, "a variable name ([A-Za-z_][A-Za-z0-9_]*)")


def queue_name(field: str, value: object) -> str:
    return _shaped(field, value, _QUEUE, "a queue name")


def normalize_number(raw: object, default_region: str, field: str = "number") -> str:
    """An external number in E.164 (`+33612345678`), or InvalidCommand
    naming `field`. National forms are read in `default_region` (ISO 3166
    code such as "FR")."""
    if default_region not in phonenumbers.SUPPORTED_REGIONS:
        raise InvalidCommand("default_region", f"{default_region!r} is not a known region")
    text = _string(field, raw, MAX_NUMBER_INPUT).strip()
    if not text or not _NUMBER_INPUT.fullmatch(text):
        raise InvalidCommand(field, "only digits, spaces and + - . ( ) / are allowed")
    try:
        parsed = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidCommand(field, f"not a phone number ({exc})") from exc
    if parsed.extension:
        raise InvalidCommand(field, "extensions are not dialled")
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidCommand(field, f"not a valid number (read in region {default_region})")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _pairs(field: str, value: object) -> tuple[tuple[str, str], ...]:
    """Variables or headers given as a mapping or as pairs, as checked pairs."""
    items: list[object]
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, tuple | list):
        items = list(value)
    else:
        raise InvalidCommand(field, f"must be a mapping, not {type(value).__name__}")
    if len(items) > 64:
        raise InvalidCommand(field, f"more than 64 entries ({len(items)})")
    pairs: list[tuple[str, str]] = []
    for item in items:
        if not isinstance(item, tuple) or len(item) != 2:
            raise InvalidCommand(field, "entries must be (name, value) pairs")
        pairs.append((item[0], item[1]))
    return tuple(pairs)


class AmiCommand(Protocol):
    def to_action(self) -> AmiAction: ...


@dataclass(frozen=True, slots=True)
class CallerId:
    """`"Name" <number>` as Asterisk reads it; the name may be any printable
    text (`Zoë Ærø`), never quotes or angle brackets."""

    number: str
    name: str | None = None

    def __post_init__(self) -> None:
        _shaped("caller_id.number", self.number, _CALLER_NUMBER, "a caller id number", max_len=32)
        if self.name is not None:
            _text("caller_id.name", self.name, extra="<>")

    def render(self) -> str:
        return f"<{self.number}>" if self.name is None else f'"{self.name}" <{self.number}>'


@dataclass(frozen=True, slots=True)
class Originate:
    """Call `device` (a dial string) and, once it answers, run
    `context`/`exten`/`priority` on it. `asynchronous` is always sent as
    `Async: true|false` (defect 2); with Async true, Asterisk reports the
    outcome in an `OriginateResponse` event carrying this ActionID."""

    device: str
    context: str
    exten: str
    priority: int = 1
    caller_id: CallerId | None = None
    timeout_ms: int = 30_000
    asynchronous: bool = True
    variables: tuple[tuple[str, str], ...] = ()
    channel_id: str | None = None
    other_channel_id: str | None = None

    def __post_init__(self) -> None:
        dial_string("device", self.device)
        context_name("context", self.context)
        exten_name("exten", self.exten)
        _int("priority", self.priority, 1, 9999)
        _optional_instance("caller_id", self.caller_id, CallerId)
        _int("timeout_ms", self.timeout_ms, 1, 3_600_000)
        _bool("asynchronous", self.asynchronous)
        pairs = _pairs("variables", self.variables)
        names: set[str] = set()
        for name, value in pairs:
            variable_name("variables", name)
            _text(f"variables.{name}", value, MAX_VALUE)
            if name in names:
                raise InvalidCommand("variables", f"{name} is given twice")
            names.add(name)
        object.__setattr__(self, "variables", pairs)
        if self.channel_id is not None:
            _shaped("channel_id", self.channel_id, _CHANNEL_ID, "a channel id", max_len=128)
        if self.other_channel_id is not None:
            if self.channel_id is None:
                raise InvalidCommand("other_channel_id", "needs channel_id")
            _shaped("other_channel_id", self.other_channel_id, _CHANNEL_ID, "a channel id",
                    max_len=128)

    @classmethod
    def to_number(cls, number: str, default_region: str, trunk: str, context: str,
                  exten: str, *, priority: int = 1, caller_id: CallerId | None = None,
                  timeout_ms: int = 30_000, asynchronous: bool = True,
                  variables: tuple[tuple[str, str], ...] = (), channel_id: str | None = None,
                  other_channel_id: str | None = None) -> Originate:
        """Call an external number through `trunk`, a dial-string template
        with one `{number}` (`PJSIP/{number}@provider`, `Local/{number}@out`)
        filled with the E.164 form of `number`."""
        e164 = normalize_number(number, default_region, "number")
        template = _string("trunk", trunk, MAX_CHANNEL)
        if template.count("{number}") != 1:
            raise InvalidCommand("trunk", "must contain {number} exactly once")
        # str.replace, not format(): the template is data, not a format spec.
        return cls(template.replace("{number}", e164), context, exten, priority, caller_id,
                   timeout_ms, asynchronous, variables, channel_id, other_channel_id)

    def to_action(self) -> AmiAction:
        fields = [("Channel", self.device), ("Context", self.context), ("Exten", self.exten),
                  ("Priority", str(self.priority))]
        if self.caller_id is not None:
            fields.append(("CallerID", self.caller_id.render()))
        fields += [("Timeout", str(self.timeout_ms)), ("Async", _wire_bool(self.asynchronous))]
        fields += [("Variable", f"{name}={value}") for name, value in self.variables]
        if self.channel_id is not None:
            fields.append(("ChannelId", self.channel_id))
        if self.other_channel_id is not None:
            fields.append(("OtherChannelId", self.other_channel_id))
        return AmiAction("Originate", tuple(fields))


class SpyMode(enum.Enum):
    """ChanSpy options for the three supervisor actions (q: no beep)."""

    LISTEN = "q"
    WHISPER = "qw"
    BARGE = "qB"


@dataclass(frozen=True, slots=True)
class Spy:
    """Ring the supervisor's `device`; once answered, ChanSpy on `target`
    (an existing channel). `E` ends the spy when the target hangs up, as in
    recording 10."""

    device: str
    target: str
    mode: SpyMode
    caller_id: CallerId | None = None
    timeout_ms: int = 30_000
    asynchronous: bool = True

    def __post_init__(self) -> None:
        dial_string("device", self.device)
        channel_name("target", self.target)
        _optional_instance("mode", self.mode, SpyMode)
        if self.mode is None:
            raise InvalidCommand("mode", "must be listen, whisper or barge")
        _optional_instance("caller_id", self.caller_id, CallerId)
        _int("timeout_ms", self.timeout_ms, 1, 3_600_000)
        _bool("asynchronous", self.asynchronous)

    def to_action(self) -> AmiAction:
        fields = [("Channel", self.device), ("Application", "ChanSpy"),
                  ("Data", f"{self.target},{self.mode.value}E")]
        if self.caller_id is not None:
            fields.append(("CallerID", self.caller_id.render()))
        fields += [("Async", _wire_bool(self.asynchronous)), ("Timeout", str(self.timeout_ms))]
        return AmiAction("Originate", tuple(fields))


@dataclass(frozen=True, slots=True)
class Redirect:
    """Send `channel` (and optionally the bridged `extra_channel`) to a
    dialplan location."""

    channel: str
    context: str
    exten: str
    priority: int = 1
    extra_channel: str | None = None
    extra_context: str | None = None
    extra_exten: str | None = None
    extra_priority: int | None = None

    def __post_init__(self) -> None:
        channel_name("channel", self.channel)
        context_name("context", self.context)
        exten_name("exten", self.exten)
        _int("priority", self.priority, 1, 9999)
        if self.extra_channel is not None:
            channel_name("extra_channel", self.extra_channel)
        elif (self.extra_context, self.extra_exten, self.extra_priority) != (None, None, None):
            raise InvalidCommand("extra_channel", "needed for an extra location")
        if (self.extra_context is None) != (self.extra_exten is None):
            raise InvalidCommand("extra_exten", "extra_context and extra_exten go together")
        if self.extra_context is not None:
            context_name("extra_context", self.extra_context)
            exten_name("extra_exten", self.extra_exten)
        if self.extra_priority is not None:
            if self.extra_exten is None:
                raise InvalidCommand("extra_priority", "needs extra_context and extra_exten")
            _int("extra_priority", self.extra_priority, 1, 9999)

    def to_action(self) -> AmiAction:
        fields = [("Channel", self.channel), ("Context", self.context), ("Exten", self.exten),
                  ("Priority", str(self.priority))]
        if self.extra_channel is not None:
            fields.append(("ExtraChannel", self.extra_channel))
        if self.extra_context is not None and self.extra_exten is not None:
            fields += [("ExtraContext", self.extra_context), ("ExtraExten", self.extra_exten),
                       ("ExtraPriority", str(self.extra_priority or 1))]
        return AmiAction("Redirect", tuple(fields))


@dataclass(frozen=True, slots=True)
class Setvar:
    """Set a variable on a channel. The channel is required: without it
    Asterisk sets a global (recording 11)."""

    channel: str
    variable: str
    value: str

    def __post_init__(self) -> None:
        channel_name("channel", self.channel)
        variable_name("variable", self.variable)
        _text("value", self.value, MAX_VALUE)

    def to_action(self) -> AmiAction:
        return AmiAction("Setvar", (("Channel", self.channel), ("Variable", self.variable),
                                    ("Value", self.value)))


@dataclass(frozen=True, slots=True)
class Getvar:
    channel: str
    variable: str

    def __post_init__(self) -> None:
        channel_name("channel", self.channel)
        variable_name("variable", self.variable)

    def to_action(self) -> AmiAction:
        return AmiAction("Getvar", (("Channel", self.channel), ("Variable", self.variable)),
                         idempotent=True)


@dataclass(frozen=True, slots=True)
class Hangup:
    """Hang up a channel; `cause` is a Q.850 cause (16 normal clearing)."""

    channel: str
    cause: int | None = None

    def __post_init__(self) -> None:
        channel_name("channel", self.channel)
        if self.cause is not None:
            _int("cause", self.cause, 0, 127)

    def to_action(self) -> AmiAction:
        fields = [("Channel", self.channel)]
        if self.cause is not None:
            fields.append(("Cause", str(self.cause)))
        return AmiAction("Hangup", tuple(fields))


@dataclass(frozen=True, slots=True)
class Atxfer:
    """Attended transfer of `channel` to `exten`@`context` (needs an
    `atxfer` feature code and the Dial `t` option, recording 06)."""

    channel: str
    exten: str
    context: str

    def __post_init__(self) -> None:
        channel_name("channel", self.channel)
        exten_name("exten", self.exten)
        context_name("context", self.context)

    def to_action(self) -> AmiAction:
        return AmiAction("Atxfer", (("Channel", self.channel), ("Exten", self.exten),
                                    ("Context", self.context)))


@dataclass(frozen=True, slots=True)
class QueueAdd:
    queue: str
    interface: str
    penalty: int = 0
    paused: bool = False
    member_name: str | None = None
    state_interface: str | None = None

    def __post_init__(self) -> None:
        queue_name("queue", self.queue)
        dial_string("interface", self.interface)
        _int("penalty", self.penalty, 0, 9999)
        _bool("paused", self.paused)
        if self.member_name is not None:
            _text("member_name", self.member_name)
        if self.state_interface is not None:
            dial_string("state_interface", self.state_interface)

    def to_action(self) -> AmiAction:
        fields = [("Queue", self.queue), ("Interface", self.interface),
                  ("Penalty", str(self.penalty)), ("Paused", _wire_bool(self.paused))]
        if self.member_name is not None:
            fields.append(("MemberName", self.member_name))
        if self.state_interface is not None:
            fields.append(("StateInterface", self.state_interface))
        return AmiAction("QueueAdd", tuple(fields))


@dataclass(frozen=True, slots=True)
class QueueRemove:
    queue: str
    interface: str

    def __post_init__(self) -> None:
        queue_name("queue", self.queue)
        dial_string("interface", self.interface)

    def to_action(self) -> AmiAction:
        return AmiAction("QueueRemove", (("Queue", self.queue), ("Interface", self.interface)))


@dataclass(frozen=True, slots=True)
class QueuePause:
    """Pause or unpause a member, in one queue or (queue None) in all."""

    interface: str
    paused: bool
    queue: str | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        dial_string("interface", self.interface)
        _bool("paused", self.paused)
        if self.queue is not None:
            queue_name("queue", self.queue)
        if self.reason is not None:
            _text("reason", self.reason)

    def to_action(self) -> AmiAction:
        fields = [] if self.queue is None else [("Queue", self.queue)]
        fields += [("Interface", self.interface), ("Paused", _wire_bool(self.paused))]
        if self.reason is not None:
            fields.append(("Reason", self.reason))
        return AmiAction("QueuePause", tuple(fields))


@dataclass(frozen=True, slots=True)
class UserEvent:
    """Broadcast a `UserEvent` to AMI sessions (a heartbeat, a marker)."""

    name: str
    headers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        _shaped("name", self.name, _HEADER, "an event name")
        pairs = _pairs("headers", self.headers)
        for key, value in pairs:
            _shaped("headers", key, _HEADER, "a header name")
            if key.lower() in _RESERVED_HEADERS:
                raise InvalidCommand("headers", f"{key} is reserved")
            _text(f"headers.{key}", value, MAX_VALUE)
        object.__setattr__(self, "headers", pairs)

    def to_action(self) -> AmiAction:
        return AmiAction("UserEvent", (("UserEvent", self.name), *self.headers))


@dataclass(frozen=True, slots=True)
class Ping:
    def to_action(self) -> AmiAction:
        return AmiAction("Ping", (), idempotent=True)


@dataclass(frozen=True, slots=True)
class CoreShowChannels:
    """Every live channel: the resync source for the tracker."""

    def to_action(self) -> AmiAction:
        return AmiAction("CoreShowChannels", (), list_complete="CoreShowChannelsComplete",
                         idempotent=True)


@dataclass(frozen=True, slots=True)
class QueueStatus:
    queue: str | None = None
    member: str | None = None

    def __post_init__(self) -> None:
        if self.queue is not None:
            queue_name("queue", self.queue)
        if self.member is not None:
            dial_string("member", self.member)

    def to_action(self) -> AmiAction:
        fields = [] if self.queue is None else [("Queue", self.queue)]
        if self.member is not None:
            fields.append(("Member", self.member))
        return AmiAction("QueueStatus", tuple(fields), list_complete="QueueStatusComplete",
                         idempotent=True)


@dataclass(frozen=True, slots=True)
class DeviceStateList:
    def to_action(self) -> AmiAction:
        return AmiAction("DeviceStateList", (), list_complete="DeviceStateListComplete",
                         idempotent=True)


@dataclass(frozen=True, slots=True)
class Status:
    """Status of every channel, or of one with some of its variables."""

    channel: str | None = None
    variables: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.channel is not None:
            channel_name("channel", self.channel)
        _optional_instance("variables", self.variables, tuple)
        for name in self.variables:
            variable_name("variables", name)
        if self.variables and self.channel is None:
            raise InvalidCommand("variables", "only with a channel")

    def to_action(self) -> AmiAction:
        fields = [] if self.channel is None else [("Channel", self.channel)]
        if self.variables:
            fields += [("Variables", ",".join(self.variables)), ("AllVariables", "false")]
        return AmiAction("Status", tuple(fields), list_complete="StatusComplete",
                         idempotent=True)


Command = (Originate | Spy | Redirect | Setvar | Getvar | Hangup | Atxfer | QueueAdd
           | QueueRemove | QueuePause | UserEvent | Ping | CoreShowChannels | QueueStatus
           | DeviceStateList | Status)
