"""Logs: JSON lines that parse, bound call/agent ids on every line, secrets
redacted, stdlib records (panoramisk, aiohttp) through the same output."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from cti.logs import configure_logging

SECRET = "hunter2-not-for-logs"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    config = structlog.get_config()
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    structlog.reset_defaults()
    structlog.configure(**config)


def json_lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_json_lines_carry_time_level_event_and_logger() -> None:
    out = io.StringIO()
    configure_logging("json", "info", out)
    structlog.get_logger("cti.calls").info("call.routed", agent="1001", waited_ms=3007)
    logging.getLogger("aiohttp.access").warning("GET %s %d", "/healthz", 200)
    ours, theirs = json_lines(out)
    assert ours["event"] == "call.routed"
    assert ours["level"] == "info"
    assert ours["logger"] == "cti.calls"
    assert ours["waited_ms"] == 3007
    assert datetime.fromisoformat(str(ours["timestamp"])).tzinfo is not None
    assert theirs["event"] == "GET /healthz 200"
    assert theirs["level"] == "warning"
    assert theirs["logger"] == "aiohttp.access"


def test_bound_call_and_agent_ids_appear_on_every_line_inside_the_context() -> None:
    out = io.StringIO()
    configure_logging("json", "info", out)
    log = structlog.get_logger("cti.test")
    with structlog.contextvars.bound_contextvars(call="1795369606.0", agent="1001"):
        log.info("call.ringing")
        logging.getLogger("panoramisk.manager").info("Manager connected")
    log.info("call.after")
    inside_ours, inside_stdlib, after = json_lines(out)
    for line in (inside_ours, inside_stdlib):
        assert (line["call"], line["agent"]) == ("1795369606.0", "1001")
    assert "call" not in after and "agent" not in after


def test_secret_keys_are_redacted_at_any_depth() -> None:
    out = io.StringIO()
    configure_logging("json", "info", out)
    structlog.get_logger("cti.test").info(
        "ami.login", secret=SECRET, Password=SECRET, api_token=SECRET,
        headers={"Authorization": f"Bearer {SECRET}", "Accept": "text/plain"},
        actions=[{"Action": "Login", "Secret": SECRET}], token_count=3,
    )
    text = out.getvalue()
    assert SECRET not in text
    (line,) = json_lines(out)
    assert line["secret"] == line["Password"] == line["api_token"] == "***"
    assert line["headers"] == {"Authorization": "***", "Accept": "text/plain"}
    assert line["actions"] == [{"Action": "Login", "Secret": "***"}]
    assert line["token_count"] == 3


def test_secrets_in_stdlib_message_text_are_redacted() -> None:
    out = io.StringIO()
    configure_logging("json", "debug", out)
    # panoramisk logs whole actions, Login included
    action = {"action": "Login", "username": "cti", "secret": SECRET}
    logging.getLogger("panoramisk.ami_protocol").info(
        'Adding action "%s" to awaiting list: %s', "login", str(action))
    logging.getLogger("aiohttp.client").debug(
        "Authorization: Bearer %s password=%s&x=1", SECRET, SECRET)
    assert SECRET not in out.getvalue()
    first, second = json_lines(out)
    assert "'secret': '***'" in str(first["event"])
    assert "'username': 'cti'" in str(first["event"])
    assert "password=***&x=1" in str(second["event"])


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]),
               min_size=8))
def test_any_value_under_a_secret_key_is_gone(value: str) -> None:
    out = io.StringIO()
    configure_logging("json", "info", out)
    structlog.get_logger("cti.test").info("ami.login", secret=value, password=[value])
    (line,) = json_lines(out)
    assert line["secret"] == line["password"] == "***"


def test_level_filters_ours_and_the_stdlib() -> None:
    out = io.StringIO()
    configure_logging("json", "warning", out)
    structlog.get_logger("cti.test").info("hidden")
    logging.getLogger("aiohttp.server").info("hidden too")
    structlog.get_logger("cti.test").warning("shown")
    assert [line["event"] for line in json_lines(out)] == ["shown"]


def test_an_exception_stays_on_one_json_line() -> None:
    out = io.StringIO()
    configure_logging("json", "info", out)
    try:
        raise ValueError("bad frame")
    except ValueError:
        structlog.get_logger("cti.test").exception("ami.reader_failed")
    (line,) = json_lines(out)
    assert "ValueError: bad frame" in str(line["exception"])


def test_console_format_is_for_humans() -> None:
    out = io.StringIO()
    configure_logging("console", "info", out)
    with structlog.contextvars.bound_contextvars(call="c1"):
        structlog.get_logger("cti.test").info("call.routed", agent="1001", secret=SECRET)
    text = out.getvalue()
    assert "call.routed" in text and "agent=1001" in text and "call=c1" in text
    assert SECRET not in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_auto_picks_console_on_a_terminal_and_json_elsewhere() -> None:
    terminal, pipe = Terminal(), io.StringIO()
    configure_logging("auto", "info", terminal)
    structlog.get_logger("cti.test").info("call.routed")
    configure_logging("auto", "info", pipe)
    structlog.get_logger("cti.test").info("call.routed")
    assert not terminal.getvalue().startswith("{")
    assert json_lines(pipe)[0]["event"] == "call.routed"


def test_reconfiguring_replaces_the_handler_and_reaches_early_loggers() -> None:
    early = structlog.get_logger("cti.early")  # made at import time in real modules
    first, second = io.StringIO(), io.StringIO()
    configure_logging("json", "info", first)
    configure_logging("json", "info", second)
    early.info("once")
    assert first.getvalue() == ""
    assert [line["event"] for line in json_lines(second)] == ["once"]
