"""Scripted Asterisks for IVR tests: each connects to the FastAGI server
over TCP like Asterisk does, sends an `agi_*` environment block and answers
each command with the lines Asterisk 22 sends (recording 08 and res_agi.c):
`200 result=...`, the unsolicited `HANGUP` after the command during which
the caller left, `511` for channel commands on a dead channel.

`FakeAsterisk` is the quick one (one key string per prompt). Recording 08
itself is read here (`recorded_conversation`), and `RecordedAsterisk`
answers in its exact bytes: its environment block, its 510/511/520 lines,
and res_agi.c's formats where the recording has no example."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cti.pbx.recording import agi_entries

HANG_UP = "<hang up>"  # a key that is the caller hanging up
CLOSE = "<close>"  # the caller's side closes the socket without a word

# Commands res_agi.c still answers on a dead channel (its `dead` flag).
_DEAD_OK = ("GET VARIABLE", "GET FULL VARIABLE", "SET VARIABLE", "VERBOSE", "NOOP")


def env_block(script: str, *, caller: str | None = "+33677777777", language: str = "en",
              uniqueid: str = "1795369761.62", extension: str = "0140000010",
              args: Sequence[str] = ()) -> bytes:
    lines = [
        "agi_network: yes",
        f"agi_network_script: {script}",
        f"agi_request: agi://127.0.0.1:4573/{script}",
        "agi_channel: Local/ivr@sim-caller-0000001f;1",
        f"agi_language: {language}",
        "agi_type: Local",
        f"agi_uniqueid: {uniqueid}",
        "agi_version: 22.10.1",
        f"agi_callerid: {caller or 'unknown'}",
        "agi_calleridname: Test Caller",
        "agi_dnid: unknown",
        "agi_context: cti-inbound",
        f"agi_extension: {extension}",
        "agi_priority: 5",
        *[f"agi_arg_{index}: {arg}" for index, arg in enumerate(args, 1)],
    ]
    return ("\n".join(lines) + "\n\n").encode()


@dataclass
class FakeAsterisk:
    """`keys` answer GET DATA (a string of digits, None for silence,
    HANG_UP, CLOSE) and WAIT FOR DIGIT (one key each). When keys run out
    the caller hangs up. `missing_sounds` answer STREAM FILE with -1;
    during `hang_up_during` sounds the caller hangs up (-1, then HANGUP);
    `stall_during` sounds are never answered."""

    keys: list[str | None]
    script: str = "ivr?flow=main"
    caller: str | None = "+33677777777"
    language: str = "en"
    uniqueid: str = "1795369761.62"
    missing_sounds: frozenset[str] = frozenset()
    hang_up_during: frozenset[str] = frozenset()
    stall_during: frozenset[str] = frozenset()  # Asterisk never answers
    on_command: Callable[[str], None] | None = None
    commands: list[str] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    dead: bool = False

    async def call(self, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(env_block(self.script, caller=self.caller, language=self.language,
                                   uniqueid=self.uniqueid))
            await writer.drain()
            while True:
                raw = await asyncio.wait_for(reader.readline(), 5)
                if not raw:
                    return  # the server ended the AGI
                command = raw.decode().rstrip("\n")
                self.commands.append(command)
                if self.on_command is not None:
                    self.on_command(command)
                reply = self.reply(command)
                if reply is None:
                    return
                writer.write("".join(line + "\n" for line in reply).encode())
                await writer.drain()
        finally:
            writer.close()
            await writer.wait_closed()

    def reply(self, command: str) -> list[str] | None:
        words = shlex.split(command)
        verb = " ".join(words[:2]).upper()
        if self.dead and not command.upper().startswith(_DEAD_OK):
            return ["511 Command Not Permitted on a dead channel or intercept routine"]
        if verb == "SET VARIABLE":
            self.variables[words[2]] = words[3]
            return ["200 result=1"]
        if words[0] == "ANSWER":
            return ["200 result=0"]
        if verb == "CHANNEL STATUS":
            return ["200 result=6"]
        if verb == "STREAM FILE":
            if words[2] in self.stall_during:
                return []
            if words[2] in self.hang_up_during:
                self.dead = True
                return ["200 result=-1 endpos=0", "HANGUP"]
            if words[2] in self.missing_sounds:
                return ["200 result=-1 endpos=0"]
            return ["200 result=0 endpos=8000"]
        if words[0] == "SAY" or verb in ("SET CONTEXT", "SET EXTENSION", "SET PRIORITY"):
            return ["200 result=0"]
        if verb == "GET DATA":
            key = self.keys.pop(0) if self.keys else HANG_UP
            if key == CLOSE:
                return None
            if key == HANG_UP:
                self.dead = True
                return ["200 result=-1", "HANGUP"]
            return ["200 result= (timeout)"] if key is None else [f"200 result={key}"]
        if verb == "WAIT FOR":
            key = self.keys.pop(0) if self.keys else HANG_UP
            if key == CLOSE:
                return None
            if key == HANG_UP:
                self.dead = True
                return ["200 result=-1", "HANGUP"]
            return ["200 result=0"] if key is None else [f"200 result={ord(key)}"]
        return ["510 Invalid or unknown command"]

    def sent(self, prefix: str) -> list[str]:
        return [command for command in self.commands if command.startswith(prefix)]


# -- recording 08: the oracle ------------------------------------------------------

RECORDING_08 = Path(__file__).parent / "fixtures" / "asterisk-22" / "08-fastagi-ivr.txt"


@dataclass(frozen=True)
class RecordedConversation:
    """One FastAGI connection of recording 08.

    `exchange` pairs each command with the lines Asterisk answered to it, as
    res_agi.c wrote them (the AGIExecEnd events of the AMI side confirm the
    pairing): a `520-` block is one answer, and the unsolicited `HANGUP`
    belongs to the command during which the caller left, though on the wire
    it arrived after the next command was sent. `received` is every byte
    Asterisk sent after the environment block, in wire order.
    """

    env: bytes
    exchange: tuple[tuple[str, tuple[str, ...]], ...]
    received: bytes


@functools.cache
def recorded_conversation(conn: str) -> RecordedConversation:
    entries = agi_entries(RECORDING_08)[conn]
    env = entries[0].payload.rstrip(b"\n") + b"\n\n"
    commands = [e.payload.decode().removesuffix("\n") for e in entries[1:] if e.direction == ">>"]
    received = b"".join(e.payload for e in entries[1:] if e.direction == "<<")
    lines = received.decode().splitlines()
    answers: list[list[str]] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if line == "HANGUP":
            answers[-1].append(line)
        elif line.startswith("520-"):
            end = next(i for i in range(index, len(lines)) if lines[i].startswith("520 "))
            answers.append(lines[index:end + 1])
            index = end
        else:
            answers.append([line])
        index += 1
    exchange = tuple((command, tuple(answer))
                     for command, answer in zip(commands, answers, strict=True))
    return RecordedConversation(env, exchange, received)


@dataclass(frozen=True)
class AsteriskLines:
    """Lines Asterisk 22 sent verbatim in recording 08 (agi2), kept as bytes
    of the recording rather than retyped."""

    unknown: str  # FOO BAR -> 510
    dead: str  # a channel command after the hang-up -> 511
    hangup: str  # the unsolicited line after the result of WAIT FOR DIGIT
    usage_stream_file: tuple[str, ...]  # STREAM FILE without arguments -> 520 block


@functools.cache
def asterisk_lines() -> AsteriskLines:
    agi2 = dict(recorded_conversation("agi2").exchange)
    [unknown] = agi2["FOO BAR"]
    [dead] = agi2["CHANNEL STATUS"]
    _, hangup = agi2["WAIT FOR DIGIT 15000"]
    return AsteriskLines(unknown, dead, hangup, agi2["STREAM FILE"])


def recorded_env(values: Mapping[str, str], args: Sequence[str] = ()) -> bytes:
    """The environment block Asterisk sent for agi1, in its order and bytes,
    with `values` (agi_* field -> value) substituted and `args` as the
    agi_arg_N fields."""
    lines: list[str] = []
    seen: set[str] = set()
    for line in recorded_conversation("agi1").env.decode().split("\n"):
        key = line.partition(":")[0]
        if not line or key.startswith("agi_arg_"):
            continue
        seen.add(key)
        lines.append(f"{key}: {values[key]}" if key in values else line)
    if unknown := set(values) - seen:
        raise KeyError(f"not in Asterisk's environment block: {sorted(unknown)}")
    lines += [f"agi_arg_{index}: {arg}" for index, arg in enumerate(args, 1)]
    return ("\n".join(lines) + "\n\n").encode()


def parse_args(line: str) -> list[str]:
    """A command line split as res_agi.c parse_args() splits it: blanks
    between words, `"` toggles quoting, a backslash makes the next
    character literal."""
    argv: list[str] = []
    quoted = escaped = False
    blank = True
    for char in line:
        literal = True
        if char == '"' and not escaped:
            quoted = not quoted
            if quoted and blank:
                argv.append("")
                blank = False
            literal = False
        elif char in " \t" and not quoted and not escaped:
            blank = True
            literal = False
        elif char == "\\" and not escaped:
            escaped = True
            continue
        if literal:
            if blank:
                argv.append("")
                blank = False
            argv[-1] += char
        escaped = False
    return argv


# res_agi.c commands[] in Asterisk 22: the command words, and whether the
# command still runs on a dead channel (its `dead` flag). Anything else is
# answered with the recorded 510.
_ASTERISK_COMMANDS: dict[tuple[str, ...], bool] = {
    tuple(name.split()): dead for name, dead in (
        ("ANSWER", False), ("ASYNCAGI BREAK", True), ("CHANNEL STATUS", False),
        ("DATABASE DEL", True), ("DATABASE DELTREE", True), ("DATABASE GET", True),
        ("DATABASE PUT", True), ("EXEC", True), ("GET DATA", False),
        ("GET FULL VARIABLE", True), ("GET OPTION", False), ("GET VARIABLE", True),
        ("HANGUP", False), ("NOOP", True), ("RECEIVE CHAR", False), ("RECEIVE TEXT", False),
        ("RECORD FILE", False), ("SAY ALPHA", False), ("SAY DIGITS", False),
        ("SAY NUMBER", False), ("SAY PHONETIC", False), ("SAY DATE", False),
        ("SAY TIME", False), ("SAY DATETIME", False), ("SEND IMAGE", False),
        ("SEND TEXT", False), ("SET AUTOHANGUP", False), ("SET CALLERID", False),
        ("SET CONTEXT", False), ("SET EXTENSION", False), ("SET MUSIC", False),
        ("SET PRIORITY", False), ("SET VARIABLE", True), ("STREAM FILE", False),
        ("CONTROL STREAM FILE", False), ("TDD MODE", False), ("VERBOSE", True),
        ("WAIT FOR DIGIT", False), ("SPEECH CREATE", False), ("SPEECH SET", False),
        ("SPEECH DESTROY", True), ("SPEECH LOAD GRAMMAR", False),
        ("SPEECH UNLOAD GRAMMAR", True), ("SPEECH ACTIVATE GRAMMAR", False),
        ("SPEECH DEACTIVATE GRAMMAR", False), ("SPEECH RECOGNIZE", False),
    )
}
# Recorded endpos of the sounds played in recording 08 (8 kHz samples).
RECORDED_SAMPLES = {"hello-world": 11360, "you-entered": 7840}
MAX_COMMANDS = 500


class PeerError(AssertionError):
    """The server sent something this peer cannot answer the way Asterisk
    22 would (no recording or documented format for it)."""


def _find_command(argv: Sequence[str]) -> tuple[str, ...] | None:
    """res_agi.c find_command(argv, 0): every word of a command matches the
    first words of the line, case-insensitively; the longest wins."""
    words = tuple(word.upper() for word in argv)
    found = [name for name in _ASTERISK_COMMANDS if words[:len(name)] == name]
    return max(found, key=len) if found else None


@dataclass
class RecordedAsterisk:
    """Asterisk 22 as recording 08 shows it, for our real FastAGI server.

    It connects like AGI(agi://...) does, sends agi1's environment block
    with this call's fields, and answers each command in the formats of the
    recording; where the recording has no example (GET DATA timeout, SAY
    NUMBER, SET CONTEXT...) the format is res_agi.c's in Asterisk 22, named
    in a comment at each place.

    The caller is scripted: `keys` holds, for each command that listens
    (GET DATA, WAIT FOR DIGIT, STREAM FILE with escape digits), what the
    caller keys during it: a DTMF string, None for silence, or HANG_UP.
    The caller also hangs up during command number `hang_up_at` (1 is the
    first; a command that plays or listens answers -1, any other one its
    usual result, then the hang-up is noticed), or while the sound
    `hang_up_during` plays. `missing_sounds` do not open: STREAM FILE and
    GET DATA answer -1 on a live channel, as Asterisk does. After a hang-up
    Asterisk sends `HANGUP` once (right after the result of the command
    during which it happened, or, with `hangup_late`, just before the next
    answer, which is the timing recording 08 shows), answers channel
    commands with 511 and the others as usual, and waits for the server
    to close the socket (res_agi.c run_agi never closes it itself).
    `dead_on_arrival`: the channel was gone before AGI() ran; res_agi.c
    then runs the AGI dead from the start, without a HANGUP line.
    """

    keys: list[str | None] = field(default_factory=list)
    script: str = "ivr?did=0140000010"
    caller: str | None = "+33677777777"
    caller_name: str = "Ivan Ivr"
    uniqueid: str = "1795369761.62"
    channel: str = "Local/ivr@sim-caller-0000001f;1"
    language: str = "en"
    context: str = "cti-inbound"
    extension: str = "0140000010"
    priority: str = "5"  # AGI() is priority 5 of [cti-inbound] in dialplans/cti.conf
    args: tuple[str, ...] = ()
    environment: Mapping[str, str] = field(default_factory=dict)  # other agi_* fields
    hang_up_at: int | None = None
    hang_up_during: str | None = None
    hangup_late: bool = False
    dead_on_arrival: bool = False
    missing_sounds: frozenset[str] = frozenset()
    samples: Mapping[str, int] = field(default_factory=lambda: dict(RECORDED_SAMPLES))
    # what happened
    commands: list[str] = field(default_factory=list)
    replies: list[bytes] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    hung_up_at: int | None = None  # the command after whose result HANGUP was due
    closed_by_server: bool = False
    agi_status: str = "SUCCESS"  # what AGISTATUS would be when the AGI returns
    _dead: bool = False
    _hangup_due: bool = False
    _buffered: list[str] = field(default_factory=list)

    def env(self, port: int) -> bytes:
        return recorded_env({
            "agi_network_script": self.script,
            "agi_request": f"agi://127.0.0.1:{port}/{self.script}",
            "agi_channel": self.channel,
            "agi_language": self.language,
            "agi_uniqueid": self.uniqueid,
            "agi_callerid": self.caller or "unknown",
            "agi_calleridname": self.caller_name,
            "agi_context": self.context,
            "agi_extension": self.extension,
            "agi_priority": self.priority,
            **self.environment,
        }, self.args)

    async def call(self, port: int, *, within: float = 5.0) -> None:
        """The whole AGI: returns once the server has closed the socket;
        `within` bounds each wait for a command."""
        self._dead = self.dead_on_arrival
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(self.env(port))
            await writer.drain()
            for _ in range(MAX_COMMANDS):
                try:
                    raw = await asyncio.wait_for(reader.readline(), within)
                except ConnectionResetError:
                    raw = b""
                except TimeoutError:
                    raise PeerError(f"the server neither sent a command nor closed the AGI "
                                    f"socket within {within} s (Asterisk would wait forever)"
                                    ) from None
                if not raw.endswith(b"\n"):
                    # EOF: fgets() in run_agi ends the AGI; a partial line
                    # is never run.
                    self.closed_by_server = True
                    return
                reply = self.answer(raw.decode().removesuffix("\n"))
                try:
                    writer.write(reply)
                    await writer.drain()
                except ConnectionError:
                    self.closed_by_server = True
                    return
            raise PeerError(f"the server sent more than {MAX_COMMANDS} commands")
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def answer(self, command: str) -> bytes:
        """Asterisk's bytes for one command line (without its newline)."""
        self.commands.append(command)
        lines: list[str] = []
        if self._hangup_due:
            lines.append(asterisk_lines().hangup)
            self._hangup_due = False
        argv = parse_args(command)
        name = _find_command(argv)
        if name is None:
            lines.append(asterisk_lines().unknown)
        elif self._dead and not _ASTERISK_COMMANDS[name]:
            lines.append(asterisk_lines().dead)
        else:
            lines += self._run(" ".join(name), argv, len(self.commands))
        reply = "".join(f"{line}\n" for line in lines).encode()
        self.replies.append(reply)
        return reply

    def sent(self, prefix: str) -> list[str]:
        return [command for command in self.commands if command.startswith(prefix)]

    def after_hang_up(self) -> list[tuple[str, bytes]]:
        """Commands the server sent once the caller had gone, with answers."""
        if self.hung_up_at is None:
            return []
        return list(zip(self.commands[self.hung_up_at:], self.replies[self.hung_up_at:],
                        strict=True))

    # -- one command ------------------------------------------------------------

    def _run(self, name: str, argv: list[str], index: int) -> list[str]:
        gone = index == self.hang_up_at
        args = argv[len(name.split()):]
        if name == "STREAM FILE" and len(args) not in (2, 3):
            return list(asterisk_lines().usage_stream_file)  # recorded (agi2)
        if name in ("STREAM FILE", "GET DATA") and args and args[0] == self.hang_up_during:
            gone = True
        if name == "ANSWER":
            return self._result(-1 if gone else 0, gone)  # recorded: 200 result=0
        if name == "CHANNEL STATUS" and not args:
            return self._after(["200 result=6"], gone)  # recorded: 6 is AST_STATE_UP
        if name == "SET VARIABLE" and len(args) == 2:
            self._set(args[0], args[1])
            return self._after(["200 result=1"], gone)  # recorded
        if name == "GET VARIABLE" and len(args) == 1:
            # recorded "200 result=0" when unset; the "1 (value)" form is
            # handle_getvariable's, recorded for GET FULL VARIABLE
            value = self._get(args[0])
            return self._after(["200 result=0" if value is None else f"200 result=1 ({value})"],
                               gone)
        if name == "GET FULL VARIABLE" and len(args) == 1:
            return self._after([f"200 result=1 ({self._expand(args[0])})"], gone)  # recorded
        if name == "NOOP":
            return self._after(["200 result=0"], gone)  # recorded
        if name == "VERBOSE" and args:
            return self._after(["200 result=1"], gone)  # recorded
        if name == "EXEC" and args:
            return self._result(-1 if gone else 0, gone)  # recorded for Playback
        if name == "STREAM FILE":
            return self._stream(args[0], args[1], gone)
        if name == "GET DATA" and args:
            return self._get_data(args, gone)
        if name == "WAIT FOR DIGIT" and len(args) == 1:
            return self._wait_for_digit(gone)
        if name in ("SAY DIGITS", "SAY NUMBER", "SAY ALPHA", "SAY DATETIME") and len(args) >= 2:
            # SAY DIGITS recorded "200 result=0"; the other SAY handlers
            # answer with the same "200 result=%d" (res_agi.c), -1 on hangup
            return self._result(-1 if gone else 0, gone)
        if name in ("SET CONTEXT", "SET EXTENSION", "SET PRIORITY") and len(args) == 1:
            self.variables[name] = args[0]
            return self._after(["200 result=0"], gone)  # res_agi.c handle_set*
        if name == "HANGUP" and not args:
            # res_agi.c handle_hangup: soft hangup, "200 result=1"; the AGI
            # loop then notices the hang-up like any other
            return self._after(["200 result=1"], True)
        raise PeerError(f"no recorded or documented Asterisk 22 answer for {' '.join(argv)!r}")

    def _stream(self, sound: str, escape: str, gone: bool) -> list[str]:
        if sound in self.missing_sounds:
            # res_agi.c handle_streamfile: the file does not open; it
            # returns RESULT_FAILURE, which makes AGISTATUS=FAILURE
            self.agi_status = "FAILURE"
            return ["200 result=-1 endpos=0"]
        samples = self.samples.get(sound, 8000)
        if gone:
            # endpos is where playback stopped (res_agi.c): half-way here
            return self._result(-1, gone, f" endpos={samples // 2}")
        if escape:
            # ast_waitstream_full: a key in the escape digits stops the
            # sound; other keys are dropped
            if not self._buffered:
                entry = self._next_keys()
                if entry == HANG_UP:
                    return self._result(-1, True, f" endpos={samples // 2}")
                self._buffered = list(entry or "")
            while self._buffered:
                key = self._buffered.pop(0)
                if key in escape:
                    return [f"200 result={ord(key)} endpos={samples // 2}"]
        return [f"200 result=0 endpos={samples}"]  # recorded

    def _get_data(self, args: list[str], gone: bool) -> list[str]:
        prompt = args[0]
        limit = int(args[2]) if len(args) > 2 else 1024
        if prompt in self.missing_sounds:
            # app.c ast_app_getdata_full returns ast_streamfile()'s -1 and
            # handle_getdata answers "200 result=-1": the same as a hang-up
            return ["200 result=-1"]
        entry = HANG_UP if gone else self._next_keys()
        # Keys the caller typed past the end of an entry come while the AGI
        # loop idles, which reads and drops non-voice frames (run_agi).
        self._buffered = []
        if entry == HANG_UP:
            return self._result(-1, True)  # handle_getdata: "200 result=-1"
        if entry is None:
            return ["200 result= (timeout)"]  # handle_getdata, nothing keyed
        # ast_readstring_full with enders "#"
        typed = ""
        for key in entry:
            if key == "#" and not typed:
                return ["200 result="]  # AST_GETDATA_EMPTY_END_TERMINATED, data ""
            if key != "#":
                typed += key
            if key == "#" or len(typed) >= limit:
                return [f"200 result={typed}"]  # recorded: 200 result=1234
        return [f"200 result={typed} (timeout)"]  # handle_getdata, res 1

    def _wait_for_digit(self, gone: bool) -> list[str]:
        if gone:
            return self._result(-1, True)
        if not self._buffered:
            entry = self._next_keys()
            if entry == HANG_UP:
                return self._result(-1, True)  # recorded: 200 result=-1, HANGUP
            if entry is None:
                return ["200 result=0"]  # handle_waitfordigit: 0 on timeout
            self._buffered = list(entry)
        return [f"200 result={ord(self._buffered.pop(0))}"]  # the key's ASCII code

    def _next_keys(self) -> str | None:
        if not self.keys:
            raise PeerError(f"the flow listens for keys at command {len(self.commands)} "
                            f"({self.commands[-1]!r}) but the caller's script is over")
        return self.keys.pop(0)

    def _result(self, value: int, gone: bool, extra: str = "") -> list[str]:
        if value < 0 and not gone:
            self.agi_status = "FAILURE"
        return self._after([f"200 result={value}{extra}"], gone)

    def _after(self, lines: list[str], gone: bool) -> list[str]:
        if not gone or self._dead:
            return lines
        self._dead = True
        self.hung_up_at = len(self.commands)
        if self.agi_status == "SUCCESS":
            self.agi_status = "HANGUP"
        if self.hangup_late:
            self._hangup_due = True
            return lines
        return [*lines, asterisk_lines().hangup]

    def _set(self, name: str, value: str) -> None:
        self.variables[name] = value
        if name == "CHANNEL(language)":
            self.language = value

    def _get(self, name: str) -> str | None:
        if name == "CHANNEL(language)":
            return self.language
        if name == "CALLERID(num)":
            return self.caller
        return self.variables.get(name)

    def _expand(self, text: str) -> str:
        return re.sub(r"\$\{([^}]*)\}", lambda match: self._get(match.group(1)) or "", text)
