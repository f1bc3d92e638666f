"""A scripted Asterisk for IVR tests: connects to the FastAGI server over
TCP like Asterisk does, sends an `agi_*` environment block and answers each
command with the lines Asterisk 22 sends (recording 08 and res_agi.c):
`200 result=...`, the unsolicited `HANGUP` after the command during which
the caller left, `511` for channel commands on a dead channel."""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

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
