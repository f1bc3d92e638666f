"""The server's settings: one validated `Settings` value read from an
optional TOML file and the `CTI_*` environment, the environment winning.

Every setting `<section>.<name>` has one environment variable,
`CTI_<SECTION>_<NAME>` (`ami.port` is `CTI_AMI_PORT`); pydantic-settings'
nested form `CTI_AMI__PORT` is accepted too, and setting both forms of one
setting is an error. An empty variable counts as unset (compose files pass
`CTI_REDIS_URL=` through). A variable that names a known section but no
setting of it (`CTI_AMI_HOTS`) is refused, as is an unknown key in the file:
a typo is caught, not ignored. List values come from the environment comma
separated (`CTI_NUMBERS_ALLOWED_CALLBACK_COUNTRIES=FR,BE`).

`load_settings` is the one way in: it raises `ConfigError` with every
problem as a (dotted key, reason) pair. Secrets are `SecretStr`, so no
repr, dump or log shows them.
"""

from __future__ import annotations

import difflib
import os
import re
import string
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import phonenumbers
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from cti.pbx.commands import dial_string
from cti.pbx.errors import InvalidCommand

ENV_PREFIX = "CTI_"


class ConfigError(Exception):
    """The configuration is not usable; `problems` lists each (key, reason)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{key}: {reason}" for key, reason in problems))


def _host(value: str) -> str:
    value = value.strip()
    if not value or any(ch.isspace() or ch in "/@" for ch in value):
        raise ValueError("must be a host name or an IP address")
    return value


_CONTEXT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,79}")


def _context(value: str) -> str:
    # These names go into AMI Redirect and Originate actions: no room for a
    # `,` or `@` that would smuggle in another context or priority.
    if not _CONTEXT.fullmatch(value):
        raise ValueError("must be an Asterisk context name (letters, digits, '_', '-', '.')")
    return value


def _region(value: str) -> str:
    value = value.strip().upper()
    if value not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError("must be a region code phonenumbers knows (FR, BE, GB...)")
    return value


def _trunk(value: str) -> str:
    # Checked with a sample number as the Originate will be: the template
    # itself must not carry what a dial string may not (a second target).
    if value.count("{number}") != 1:
        raise ValueError("must contain {number} exactly once (PJSIP/{number}@trunk)")
    try:
        dial_string("trunk", value.replace("{number}", "+33100000000"))
    except InvalidCommand as exc:
        raise ValueError(exc.reason) from None
    return value


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


Host = Annotated[str, AfterValidator(_host)]
Port = Annotated[int, Field(ge=1, le=65535)]
Seconds = Annotated[float, Field(gt=0, le=3600)]
Context = Annotated[str, AfterValidator(_context)]
Region = Annotated[str, AfterValidator(_region)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AmiSettings(_Section):
    """The AMI connection to Asterisk (times in seconds)."""

    host: Host = "127.0.0.1"
    port: Port = 5038
    username: Annotated[str, Field(min_length=1)] = "cti"
    secret: SecretStr | None = None
    action_timeout: Seconds = 10.0
    ping_interval: Seconds = 20.0
    pong_timeout: Seconds = 5.0
    reconnect_backoff_min: Seconds = 0.5
    reconnect_backoff_max: Seconds = 30.0

    @field_validator("reconnect_backoff_max")
    @classmethod
    def _backoff_ordered(cls, value: float, info: ValidationInfo) -> float:
        low = info.data.get("reconnect_backoff_min")
        if low is not None and value < low:
            raise ValueError(f"must be at least reconnect_backoff_min ({low})")
        return value


_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


class RedisSettings(_Section):
    """Where the durable state lives; no URL means the in-process store,
    for the demo only (nothing survives a restart)."""

    url: SecretStr | None = None  # a secret: the URL may carry a password

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(_REDIS_SCHEMES):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @property
    def location(self) -> str:
        """The URL with any password masked, for logs and summaries."""
        if self.url is None:
            return "in-process (demo only)"
        url = self.url.get_secret_value()
        scheme, sep, rest = url.partition("://")
        if "@" in rest:
            return f"{scheme}{sep}***@{rest.rsplit('@', 1)[1]}"
        return url


class HttpSettings(_Section):
    """The HTTP and websocket listener."""

    host: Host = "127.0.0.1"
    port: Port = 8080
    # Signs agents' and supervisors' session tokens. Unset: a random key per
    # process (sessions end with a restart, and nodes do not share them).
    session_secret: SecretStr | None = None
    session_hours: Annotated[float, Field(gt=0, le=24)] = 10.0
    # Static desk tokens, `agent_id:token` (token of 24+ characters), for
    # desks that cannot log in with a password (kiosks, integrations).
    agent_tokens: list[SecretStr] = Field(default_factory=list)

    @field_validator("agent_tokens")
    @classmethod
    def _agent_tokens(cls, value: list[SecretStr]) -> list[SecretStr]:
        for entry in value:
            agent, sep, token = entry.get_secret_value().partition(":")
            if not sep or not agent or len(token) < 24:
                raise ValueError("each entry is agent_id:token, the token 24 characters or more")
        return value


class AgiSettings(_Section):
    """The FastAGI listener Asterisk connects to."""

    host: Host = "127.0.0.1"
    port: Port = 4573


class LogSettings(_Section):
    """`auto` renders for a human when stderr is a terminal, JSON otherwise."""

    format: Annotated[Literal["json", "console", "auto"], BeforeValidator(_lower)] = "auto"
    level: Annotated[
        Literal["debug", "info", "warning", "error", "critical"], BeforeValidator(_lower)
    ] = "info"


class DialplanSettings(_Section):
    """The context names of dialplans/cti.conf, if a site renamed them."""

    inbound: Context = "cti-inbound"
    wait: Context = "cti-wait"
    connect: Context = "cti-connect"
    callback: Context = "cti-callback"
    callback_customer: Context = "cti-callback-customer"
    outbound: Context = "cti-outbound"
    spy: Context = "cti-spy"


class NumbersSettings(_Section):
    """How phone numbers are read and which ones a callback may dial."""

    default_region: Region = "FR"
    allowed_callback_countries: Annotated[list[Region], Field(min_length=1)] = Field(
        default_factory=lambda: ["FR"]
    )


class CallbacksSettings(_Section):
    """Click-to-callback from web pages (times in seconds unless named)."""

    # Origins (scheme://host[:port]) whose pages may call the public API.
    allowed_origins: list[str] = Field(default_factory=list)
    # An ASAP request is accepted only if the call can come within this.
    promise_seconds: Annotated[float, Field(gt=0, le=86_400)] = 3600.0
    slot_minutes: Annotated[int, Field(ge=5, le=240)] = 30
    slots_offered: Annotated[int, Field(ge=1, le=48)] = 8
    handle_seconds: Annotated[float, Field(gt=0, le=7200)] = 300.0
    max_attempts: Annotated[int, Field(ge=1, le=10)] = 3
    retry_backoff_seconds: list[Annotated[float, Field(gt=0, le=86_400)]] = Field(
        default_factory=lambda: [120.0, 600.0, 1800.0])
    per_address_per_minute: Annotated[int, Field(ge=1, le=100_000)] = 20
    per_number_per_hour: Annotated[int, Field(ge=1, le=100_000)] = 5
    max_body_bytes: Annotated[int, Field(ge=256, le=65_536)] = 4096
    # When set, pages must send a site key signed with it (see callbacks.sites).
    site_secret: SecretStr | None = None
    poll_seconds: Annotated[float, Field(gt=0, le=60)] = 0.5
    lease_seconds: Annotated[float, Field(ge=1, le=3600)] = 30.0
    # How long a callback rings the customer before it counts as no answer.
    customer_ring_seconds: Annotated[float, Field(ge=5, le=120)] = 30.0
    # How the server dials a customer-first callback: a dial string with
    # `{number}` once, filled with the E.164 number (the shipped pjsip.conf
    # has an endpoint `trunk`).
    trunk: Annotated[str, AfterValidator(_trunk)] = "PJSIP/{number}@trunk"


class CenterSettings(_Section):
    """Where the center is defined (services, agents, routing policy: see
    cti/center.py) and where the IVR flows live."""

    file: Path | None = None
    flows: Path = Path("dialplans/ivr")


class WallboardSettings(_Section):
    """The supervisor wallboard: the short-abandon threshold of the KPIs,
    how often updates go out (coalesced), and where queue_log lines go
    (none: not written)."""

    short_abandon_seconds: Annotated[float, Field(ge=0, le=600)] = 5.0
    update_seconds: Annotated[float, Field(gt=0, le=10)] = 0.2
    queue_log: Path | None = None


CRM_PLACEHOLDERS = ("phone", "account")
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}")
_MARK = "\x00"  # stands for a placeholder while the template's URL is checked


def crm_placeholders(template: str) -> tuple[str, ...]:
    """The placeholders a CRM URL template uses, in order of first use; a
    ValueError saying what is wrong with it otherwise.

    Only `{phone}` and `{account}` exist, with no conversion, format spec,
    attribute or index (`{phone.__class__}` is refused): the client fills
    them with `str.format_map` from validated, URL-encoded values only.
    They may stand in the path or the query, never in the scheme or host.
    """
    try:
        pieces = list(string.Formatter().parse(template))
    except ValueError:
        raise ValueError("unbalanced { or }; write {{ and }} for literal braces") from None
    used: list[str] = []
    skeleton = []
    for literal, name, spec, conversion in pieces:
        skeleton.append(literal)
        if name is None:
            continue
        if name not in CRM_PLACEHOLDERS:
            raise ValueError(f"unknown placeholder {{{name}}}: only {{phone}} and {{account}}")
        if spec or conversion:
            raise ValueError(f"placeholder {{{name}}} takes no format spec or conversion")
        skeleton.append(_MARK)
        if name not in used:
            used.append(name)
    if not used:
        raise ValueError("uses neither {phone} nor {account}: every caller would get the"
                         " same answer")
    url = urlsplit("".join(skeleton))
    if url.scheme not in ("http", "https"):
        raise ValueError("must be an http:// or https:// URL")
    if not url.hostname or _MARK in url.netloc:
        raise ValueError("must name a fixed host (placeholders go in the path or query)")
    if "@" in url.netloc:
        raise ValueError("must not carry credentials: put them in crm.auth_header")
    try:
        url.port  # noqa: B018 (read for its check)
    except ValueError:
        raise ValueError("has a port that is not a number from 1 to 65535") from None
    if url.fragment or any(char.isspace() or ord(char) < 32 for char in template):
        raise ValueError("must have no fragment (#), spaces or control characters")
    return tuple(used)


def _auth_header(value: SecretStr | None) -> SecretStr | None:
    if value is None:
        return None
    name, sep, given = value.get_secret_value().partition(":")
    if not sep or not _HEADER_NAME.fullmatch(name.strip()) or not given.strip() \
            or any(ord(char) < 32 or ord(char) == 127 for char in given):
        # The value is a secret: the message never quotes it.
        raise ValueError("must be 'Header-Name: value' on one line, e.g."
                         " 'Authorization: Bearer ...'")
    return value


# A [crm] setting that must not exceed another: the pop waits at most the
# request's timeout, a "not found" is kept at most as long as an answer.
_CRM_BOUNDS = {"pop_wait_seconds": "timeout_seconds",
               "negative_cache_seconds": "cache_seconds"}


class CrmSettings(_Section):
    """An optional CRM asked over HTTP for the caller's record, shown in
    the screen pop (README, "CRM lookup"). No `url_template`: no CRM.
    Times in seconds; a cache time of 0 caches nothing."""

    # e.g. https://crm.example/api/customers?phone={phone}&account={account}
    url_template: str | None = None
    # `Header-Name: value`, sent with every request; never shown or logged.
    auth_header: Annotated[SecretStr | None, AfterValidator(_auth_header)] = None
    timeout_seconds: Annotated[float, Field(gt=0, le=30)] = 2.0
    # How long the first pop waits for the CRM; past it, the pop goes out
    # and an update follows when the CRM answers (within timeout_seconds).
    pop_wait_seconds: Annotated[float, Field(ge=0, le=5)] = 0.2
    cache_seconds: Annotated[float, Field(ge=0, le=86_400)] = 300.0
    negative_cache_seconds: Annotated[float, Field(ge=0, le=86_400)] = 30.0
    cache_size: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000
    max_response_bytes: Annotated[int, Field(ge=1024, le=1_048_576)] = 65_536
    # After this many failures in a row the CRM is not asked for
    # breaker_seconds; then one request tries it again.
    breaker_failures: Annotated[int, Field(ge=1, le=1000)] = 5
    breaker_seconds: Annotated[float, Field(gt=0, le=3600)] = 30.0

    @field_validator("url_template")
    @classmethod
    def _url_template(cls, value: str | None) -> str | None:
        if value is not None:
            crm_placeholders(value)
        return value

    @field_validator(*_CRM_BOUNDS)
    @classmethod
    def _bounded(cls, value: float, info: ValidationInfo) -> float:
        bound = _CRM_BOUNDS[str(info.field_name)]
        limit = info.data.get(bound)
        if limit is not None and value > limit:
            raise ValueError(f"must be at most {bound} ({limit})")
        return value

    @property
    def placeholders(self) -> tuple[str, ...]:
        return () if self.url_template is None else crm_placeholders(self.url_template)


class Settings(BaseSettings):
    """Every setting of the server, by section."""

    model_config = SettingsConfigDict(extra="forbid", frozen=True)

    ami: AmiSettings = Field(default_factory=AmiSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    agi: AgiSettings = Field(default_factory=AgiSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    dialplan: DialplanSettings = Field(default_factory=DialplanSettings)
    numbers: NumbersSettings = Field(default_factory=NumbersSettings)
    center: CenterSettings = Field(default_factory=CenterSettings)
    wallboard: WallboardSettings = Field(default_factory=WallboardSettings)
    callbacks: CallbacksSettings = Field(default_factory=CallbacksSettings)
    crm: CrmSettings = Field(default_factory=CrmSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # `load_settings` merges the file and the environment (with both
        # naming forms) and passes the result in; building a Settings never
        # reads the process environment behind the caller's back.
        return (init_settings,)

    def summary(self) -> list[str]:
        """One line per section, secrets masked."""
        lines = []
        for section in type(self).model_fields:
            values = getattr(self, section).model_dump(mode="json")
            if section == "redis":
                values = {"url": self.redis.location}
            pairs = " ".join(f"{key}={_show(value)}" for key, value in values.items())
            lines.append(f"{section}: {pairs}")
        return lines


def _show(value: object) -> str:
    if value is None:
        return "(not set)"
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    return str(value)


def env_var(section: str, name: str) -> str:
    """The environment variable of a setting: `env_var("ami", "port")` is CTI_AMI_PORT."""
    return f"{ENV_PREFIX}{section.upper()}_{name.upper()}"


def _sections() -> dict[str, type[BaseModel]]:
    sections: dict[str, type[BaseModel]] = {}
    for name, field in Settings.model_fields.items():
        assert isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
        sections[name] = field.annotation
    return sections


def _is_list(model: type[BaseModel], name: str) -> bool:
    annotation = model.model_fields[name].annotation
    return getattr(annotation, "__origin__", None) is list


def _from_environment(
    env: Mapping[str, str],
) -> tuple[dict[str, dict[str, Any]], dict[str, str], list[tuple[str, str]]]:
    """Nested values from the `CTI_*` variables, the variable each came
    from (by dotted key), and the problems found."""
    sections = _sections()
    values: dict[str, dict[str, Any]] = {}
    origin: dict[str, str] = {}
    problems: list[tuple[str, str]] = []
    for var in sorted(env):
        raw = env[var]
        upper = var.upper()
        if not upper.startswith(ENV_PREFIX) or raw == "":
            continue
        section, _, name = upper[len(ENV_PREFIX):].partition("_")
        section = section.lower()
        if section not in sections or not name:
            continue  # not a setting (a variable for another tool, or CTI_CONFIG-like)
        name = name.removeprefix("_").lower()  # CTI_AMI__PORT, the nested form
        key = f"{section}.{name}"
        model = sections[section]
        if name not in model.model_fields:
            problems.append((key, f"unknown setting (from {var}){_suggest(name, model)}"))
            continue
        if key in origin:
            problems.append((key, f"set by both {origin[key]} and {var}; keep one"))
            continue
        origin[key] = var
        value: Any = raw
        if _is_list(model, name):
            value = [item.strip() for item in raw.split(",") if item.strip()]
        values.setdefault(section, {})[name] = value
    return values, origin, problems


def _suggest(name: str, model: type[BaseModel]) -> str:
    close = difflib.get_close_matches(name, list(model.model_fields), n=1)
    return f"; did you mean {close[0]}?" if close else ""


_TOML_POSITION = re.compile(r"^(?P<msg>.*) \(at line (?P<line>\d+), column (?P<col>\d+)\)$")


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([(str(path), "no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError([(str(path), f"cannot read: {reason}")]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = _TOML_POSITION.match(str(exc))
        if found:
            reason = (f"TOML syntax error at line {found['line']}, column {found['col']}: "
                      f"{found['msg']}")
        else:
            reason = f"TOML syntax error: {exc}"
        raise ConfigError([(str(path), reason)]) from None


def _merge(
    file_values: dict[str, Any], env_values: dict[str, dict[str, Any]]
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The file's sections overlaid with the environment's, and the file's
    top-level keys that are no section."""
    sections = _sections()
    problems = []
    merged = {}
    for key, value in file_values.items():
        if key in sections:
            merged[key] = value
        else:
            # Checked here, not left to validation: BaseSettings would take
            # a key like `_env_file` as an instruction to itself.
            close = difflib.get_close_matches(key, list(sections), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            problems.append((key, f"unknown section{hint}"))
    for section, values in env_values.items():
        in_file = merged.get(section)
        merged[section] = {**in_file, **values} if isinstance(in_file, dict) else values
    return merged, problems


_SECRET_KEYS = frozenset({"ami.secret", "redis.url", "http.session_secret",
                          "callbacks.site_secret", "http.agent_tokens", "crm.auth_header"})


def _problems(exc: ValidationError, origin: Mapping[str, str]) -> list[tuple[str, str]]:
    sections = _sections()
    problems = []
    for error in exc.errors():
        parts = [str(part) for part in error["loc"] if not isinstance(part, int)]
        key = "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"]
        ).removeprefix(".")
        head = ".".join(parts[:2])
        if error["type"] == "extra_forbidden":
            where = sections.get(parts[0]) if len(parts) == 2 else None
            reason = "unknown setting" + (_suggest(parts[-1], where) if where else "")
        else:
            reason = error["msg"].removeprefix("Value error, ")
            given = error.get("input")
            if head not in _SECRET_KEYS and isinstance(given, str | int | float):
                reason += f" (got {given!r})"
        if head in origin:
            reason += f" (from {origin[head]})"
        problems.append((key, reason))
    return problems


def load_settings(path: Path | None, env: Mapping[str, str] | None = None) -> Settings:
    """Settings from the TOML file at `path` (if any) and `env` (the process
    environment when None); raise `ConfigError` listing every problem."""
    environ: Mapping[str, str] = os.environ if env is None else env
    file_values = _read_file(path) if path is not None else {}
    env_values, origin, problems = _from_environment(environ)
    merged, unknown = _merge(file_values, env_values)
    problems = unknown + problems
    settings: Settings | None = None
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        problems.extend(_problems(exc, origin))
    if settings is None or problems:
        raise ConfigError(sorted(problems, key=lambda problem: problem[0]))
    return settings
