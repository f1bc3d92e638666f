"""Logging for the whole process: structlog for our own logs, with the
standard library's (panoramisk, aiohttp, asyncio) routed through the same
processors and renderer.

One JSON object per line in production (ISO timestamp, level, event,
logger), a readable console rendering in a terminal. Ids bound with
`structlog.contextvars.bound_contextvars(call=..., agent=...)` appear on
every line logged inside that context. Values under keys that name a secret
are replaced with `***`, and so are `secret: ...`-like pairs in the text of
stdlib records, which we do not control.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

LogFormat = Literal["json", "console", "auto"]

REDACTED = "***"
_SECRET_WORDS = ("secret", "password", "token", "authorization")
_SECRET_IN_TEXT = re.compile(
    r"(?i)\b(secret|password|token|authorization)(['\"]?\s*[:=]\s*['\"]?)"
    r"(?:(?:bearer|basic)\s+)?[^'\"\s,;&}]+"
)


def _names_secret(key: object) -> bool:
    if not isinstance(key, str):
        return False
    lowered = key.lower()
    return any(lowered == word or lowered.endswith(("_" + word, "-" + word))
               for word in _SECRET_WORDS)


def _redacted(value: object) -> object:
    if isinstance(value, Mapping):
        return {key: REDACTED if _names_secret(key) else _redacted(item)
                for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redacted(item) for item in value)
    return value


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Replace the value of any key named secret, password, token or
    authorization (also `ami_secret`, nested dicts included) with `***`, and
    `secret: ...`-like pairs in the event text (stdlib records carry free
    text we do not control: panoramisk logs whole actions)."""
    for key, value in event_dict.items():
        if _names_secret(key):
            event_dict[key] = REDACTED
        elif isinstance(value, dict | list | tuple):
            event_dict[key] = _redacted(value)
    event = event_dict.get("event")
    if isinstance(event, str):
        event_dict["event"] = _SECRET_IN_TEXT.sub(rf"\1\2{REDACTED}", event)
    return event_dict


class _CtiHandler(logging.StreamHandler[TextIO]):
    """The root handler this module installs (and replaces on reconfiguring)."""


_FIRST = ("timestamp", "level", "logger", "event")


def _key_order(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """The fixed keys first, so JSON lines read well in a terminal too."""
    head = {key: event_dict.pop(key) for key in _FIRST if key in event_dict}
    return {**head, **event_dict}


def _level_number(level: str | int) -> int:
    if isinstance(level, int):
        return level
    number = logging.getLevelNamesMapping().get(level.upper())
    if number is None:
        raise ValueError(f"unknown log level {level!r}")
    return number


def configure_logging(
    format: LogFormat = "auto", level: str | int = "info", stream: TextIO | None = None
) -> None:
    """Send every log record of the process, structlog's and the stdlib's,
    to `stream` (stderr by default) in one format."""
    out = sys.stderr if stream is None else stream
    console = format == "console" or (format == "auto" and out.isatty())
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        redact_secrets,
    ]
    renderer: Processor
    if console:
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
        final: list[Processor] = [renderer]
    else:
        renderer = structlog.processors.JSONRenderer()
        final = [structlog.processors.format_exc_info, _key_order, renderer]

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )
    handler = _CtiHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _CtiHandler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(_level_number(level))

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: loggers made at import time follow a later
        # configure_logging (the CLI configures after importing).
        cache_logger_on_first_use=False,
    )

