"""One FastAGI conversation with Asterisk: the environment block, commands
and their results, read line-exactly.

Held here (see PANORAMISK.md, items 13-16):
- the unsolicited `HANGUP` line that Asterisk sends after the result of the
  command during which the caller hung up is consumed as such, never taken
  as the result of the next command (recording 08, agi2);
- a `520-` usage block is read to its `520 End of proper usage.` line, so
  the stream never gets out of step;
- GET DATA's `-1` is not taken for a hang-up: Asterisk answers the same
  when the prompt file is missing, so the channel is asked;
- every read has a timeout and a size bound.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

MAX_ENV_BYTES = 16 * 1024
MAX_LINE_BYTES = 8 * 1024
MAX_USAGE_LINES = 200

# The result is kept as text: GET DATA answers with the digits themselves,
# which may start with 0 or hold `*`, and with `200 result= (timeout)` when
# the caller keyed nothing (res_agi.c handle_getdata).
_RESULT = re.compile(r"^200 result=(\S*)(?: \((.*)\))?(?: (.*))?$")
_INTEGER = re.compile(r"^-?\d+$")
_DTMF = re.compile(r"^[0-9*#]+$")
_SAFE_ARG = re.compile(r"^[^\r\n\x00]*$")
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_()]*$")


class AgiError(Exception):
    """Base of FastAGI errors; `code` is stable for logs and metrics."""

    code = "agi_error"


class AgiHangup(AgiError):
    """The channel hung up (HANGUP line, or Asterisk closed the socket)."""

    code = "agi_hangup"


class AgiDeadChannel(AgiHangup):
    """511: a channel command on a channel that is gone."""

    code = "agi_dead_channel"


class AgiPromptFailed(AgiError):
    """A prompt could not be played on a channel that is still up (a
    missing sound file): the caller is there but did not hear the question."""

    code = "agi_prompt_failed"


class AgiCommandFailed(AgiError):
    """510 (unknown command) or 520 (usage error, with the usage text)."""

    code = "agi_command_failed"

    def __init__(self, command: str, status: int, text: str) -> None:
        super().__init__(f"AGI {command.split(' ', 1)[0]} failed with {status}: {text}")
        self.command = command
        self.status = status
        self.text = text


class AgiProtocolError(AgiError):
    code = "agi_protocol_error"


@dataclass(frozen=True, slots=True)
class AgiRequest:
    """What Asterisk told us when it connected.

    `script` is the path of `agi_network_script` without its query string
    (Asterisk keeps the query: `ivr?flow=main`, finding 17); the query is in
    `params`; `args` are `agi_arg_1..N` in order.
    """

    env: dict[str, str]
    script: str
    params: dict[str, str]
    args: tuple[str, ...]

    @property
    def uniqueid(self) -> str:
        return self.env.get("agi_uniqueid", "")

    @property
    def channel(self) -> str:
        return self.env.get("agi_channel", "")

    @property
    def caller_number(self) -> str | None:
        value = self.env.get("agi_callerid", "")
        return None if value in ("", "unknown") else value

    @classmethod
    def parse(cls, block: bytes) -> AgiRequest:
        env: dict[str, str] = {}
        for raw in block.decode("utf-8", errors="replace").split("\n"):
            line = raw.rstrip("\r")
            if not line:
                continue
            key, sep, value = line.partition(":")
            if not sep or not key.startswith("agi_"):
                raise AgiProtocolError(f"not an AGI environment line: {line[:80]!r}")
            env[key] = value[1:] if value.startswith(" ") else value
        if "agi_network_script" not in env and "agi_request" not in env:
            raise AgiProtocolError("AGI environment without agi_network_script/agi_request")
        script_field = env.get("agi_network_script") or urlsplit(env["agi_request"]).path
        parts = urlsplit("/" + script_field.lstrip("/"))
        args = []
        index = 1
        while f"agi_arg_{index}" in env:
            args.append(env[f"agi_arg_{index}"])
            index += 1
        return cls(
            env=env,
            script=parts.path.strip("/"),
            params=dict(parse_qsl(parts.query)),
            args=tuple(args),
        )


@dataclass(frozen=True, slots=True)
class AgiResult:
    """`200 result=<value> [(<data>)] [key=value ...]`.

    `value` is the result as a number (-1 when it is not one); `text` is the
    result exactly as sent.
    """

    value: int
    data: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    text: str = ""

    @property
    def digits(self) -> str:
        """GET DATA's digits, leading zeros kept; "" when none were keyed."""
        return self.text if _DTMF.match(self.text) else ""


def quote(argument: str) -> str:
    """Quote one AGI argument; refuse what would end the command line."""
    if not _SAFE_ARG.match(argument):
        raise ValueError("AGI argument contains a newline or NUL")
    return '"' + argument.replace("\\", "\\\\").replace('"', '\\"') + '"'


class AgiSession:
    """Commands on one channel, one at a time, each with a timeout."""

    def __init__(
        self,
        request: AgiRequest,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        command_timeout: float = 60.0,
    ) -> None:
        self.request = request
        self.hung_up = False
        self._reader = reader
        self._writer = writer
        self._timeout = command_timeout
        self._lock = asyncio.Lock()

    async def command(self, line: str, within: float | None = None) -> AgiResult:
        """Send one command line and read its result.

        Raises AgiDeadChannel on 511, AgiCommandFailed on 510/520,
        AgiHangup when Asterisk closed the connection.
        """
        if "\n" in line or "\r" in line:
            raise ValueError("an AGI command is one line")
        async with self._lock:
            try:
                self._writer.write(line.encode("utf-8") + b"\n")
                await self._writer.drain()
            except (ConnectionError, RuntimeError) as exc:
                self.hung_up = True
                raise AgiHangup(f"connection closed before {line.split(' ', 1)[0]}") from exc
            return await asyncio.wait_for(self._read_result(line), within or self._timeout)

    async def _readline(self) -> str:
        try:
            raw = await self._reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            self.hung_up = True
            raise AgiHangup("Asterisk closed the AGI connection") from exc
        except asyncio.LimitOverrunError as exc:
            raise AgiProtocolError("AGI line too long") from exc
        return raw.decode("utf-8", errors="replace").rstrip("\r\n")

    async def _read_result(self, command: str) -> AgiResult:
        while True:
            line = await self._readline()
            if line == "HANGUP":
                # Unsolicited: the caller hung up during the previous command
                # (its result came first). The result we wait for follows.
                self.hung_up = True
                continue
            break
        if line.startswith("200"):
            match = _RESULT.match(line)
            if match is None:
                raise AgiProtocolError(f"unexpected AGI result {line[:80]!r}")
            text, data, rest = match.groups()
            extra = dict(item.split("=", 1) for item in (rest or "").split() if "=" in item)
            value = int(text) if _INTEGER.match(text) else -1
            return AgiResult(value, data, extra, text)
        if line.startswith("511"):
            self.hung_up = True
            raise AgiDeadChannel(line[4:])
        if line.startswith("510"):
            raise AgiCommandFailed(command, 510, line[4:])
        if line.startswith("520-"):
            usage = [line[4:]]
            while True:
                follow = await self._readline()
                if follow.startswith("520 "):
                    break
                usage.append(follow)
                if len(usage) > MAX_USAGE_LINES:
                    raise AgiProtocolError("520 usage block without its end line")
            raise AgiCommandFailed(command, 520, "\n".join(usage))
        if line.startswith("520"):
            raise AgiCommandFailed(command, 520, line[4:])
        raise AgiProtocolError(f"unexpected AGI reply {line[:80]!r}")

    # -- typed commands (arguments quoted; names checked) -----------------

    async def answer(self) -> AgiResult:
        return await self.command("ANSWER")

    async def channel_status(self) -> int:
        return (await self.command("CHANNEL STATUS")).value

    async def stream_file(self, prompt: str, escape_digits: str = "") -> AgiResult:
        return await self.command(f"STREAM FILE {_name(prompt)} {quote(escape_digits)}")

    async def get_data(self, prompt: str, timeout_ms: int, max_digits: int) -> str:
        """The digits keyed ("" if none before the timeout). Asterisk stops
        at `max_digits` or at `#`, which is not returned.

        Raises AgiDeadChannel when the caller hung up, AgiPromptFailed when
        the prompt could not be played."""
        result = await self.command(
            f"GET DATA {_name(prompt)} {int(timeout_ms)} {int(max_digits)}",
            within=timeout_ms / 1000 * max(1, max_digits) + self._timeout,
        )
        if result.text == "-1":
            # -1 is a hang-up, or a prompt that did not open: app.c
            # ast_app_getdata_full returns ast_streamfile()'s -1 before
            # reading any key. The channel tells them apart (511 on a dead
            # one raises AgiDeadChannel).
            await self.channel_status()
            raise AgiPromptFailed(f"GET DATA could not play {prompt!r}")
        return result.digits

    async def wait_for_digit(self, timeout_ms: int) -> str | None:
        result = await self.command(f"WAIT FOR DIGIT {int(timeout_ms)}",
                                    within=timeout_ms / 1000 + self._timeout)
        if result.value < 0:
            raise AgiHangup("caller hung up during WAIT FOR DIGIT")
        return None if result.value == 0 else chr(result.value)

    async def say_digits(self, digits: str, escape_digits: str = "") -> AgiResult:
        if not digits.isdigit():
            raise ValueError("SAY DIGITS takes digits")
        return await self.command(f"SAY DIGITS {digits} {quote(escape_digits)}")

    async def say_number(self, number: int, escape_digits: str = "") -> AgiResult:
        return await self.command(f"SAY NUMBER {int(number)} {quote(escape_digits)}")

    async def say_alpha(self, text: str, escape_digits: str = "") -> AgiResult:
        if not re.fullmatch(r"[A-Za-z0-9]{1,64}", text):
            raise ValueError("SAY ALPHA takes letters and digits")
        return await self.command(f"SAY ALPHA {text} {quote(escape_digits)}")

    async def say_datetime(
        self, epoch: int, pattern: str = "ABdY", timezone: str = "UTC", escape_digits: str = ""
    ) -> AgiResult:
        """SAY DATETIME: `pattern` uses Asterisk's say.conf letters (A weekday,
        B month, d day, Y year, IMp time); `timezone` is a zoneinfo name."""
        if not re.fullmatch(r"[A-Za-z0-9_+/-]{1,64}", timezone):
            raise ValueError(f"unsafe time zone {timezone!r}")
        return await self.command(
            f"SAY DATETIME {int(epoch)} {quote(escape_digits)} {quote(pattern)} {timezone}"
        )

    async def set_context(self, context: str) -> None:
        """Where the dialplan continues once the AGI returns (with
        set_extension and set_priority)."""
        await self.command(f"SET CONTEXT {_dialplan_name(context)}")

    async def set_extension(self, extension: str) -> None:
        if not re.fullmatch(r"\+?[0-9A-Za-z*#_-]{1,64}", extension):
            raise ValueError(f"unsafe extension {extension!r}")
        await self.command(f"SET EXTENSION {extension}")

    async def set_priority(self, priority: int | str) -> None:
        await self.command(f"SET PRIORITY {_dialplan_name(str(priority))}")

    async def set_variable(self, name: str, value: str) -> None:
        await self.command(f"SET VARIABLE {_variable(name)} {quote(value)}")

    async def get_variable(self, name: str) -> str | None:
        result = await self.command(f"GET VARIABLE {_variable(name)}")
        return result.data if result.value == 1 else None

    async def verbose(self, message: str, level: int = 1) -> None:
        await self.command(f"VERBOSE {quote(message)} {int(level)}")

    async def exec(self, application: str, arguments: str = "") -> AgiResult:
        return await self.command(f"EXEC {_name(application)} {quote(arguments)}")

    async def hangup(self) -> None:
        await self.command("HANGUP")


def _name(value: str) -> str:
    """Prompt and application names: a safe charset, no quoting needed."""
    if not re.fullmatch(r"[A-Za-z0-9_./-]{1,128}", value) or ".." in value:
        raise ValueError(f"unsafe AGI name {value!r}")
    return value


def _dialplan_name(value: str) -> str:
    """Contexts and priority labels: nothing a dialplan would split on."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,80}", value):
        raise ValueError(f"unsafe dialplan name {value!r}")
    return value


def _variable(name: str) -> str:
    if not _VARIABLE.match(name):
        raise ValueError(f"unsafe AGI variable name {name!r}")
    return name
