"""The AGI() application over FastAGI: the simulator connects to the CTI
server's FastAGI port and speaks AGI the way Asterisk 22 does in
recording 08 (env block, `200 result=` replies, `510`, the `520-` usage
block, the unsolicited `HANGUP` and `511` on a dead channel).

An unreachable FastAGI server (refused, or silent for 2 s) gives
AGISTATUS=FAILURE and the call goes on in the dialplan, as in Asterisk.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
from urllib.parse import urlsplit

from cti.sim.apps import SOUNDS, answer_channel
from cti.sim.channels import Channel
from cti.sim.runtime import Outcome, Runtime

USAGE_STREAM_FILE = (
    "520-Invalid command syntax.  Proper usage follows:",
    "Send the given file, allowing playback to be interrupted by the given digits, if any."
    " Returns <literal>0</literal> if playback completes without a digit being pressed, or"
    " the ASCII numerical value of the digit if one was pressed, or <literal>-1</literal> on"
    " error or if the channel was disconnected. If musiconhold is playing before calling"
    " stream file it will be automatically stopped and will not be restarted after"
    " completion.",
    "It sets the following channel variables upon completion:",
    "<variable>PLAYBACKSTATUS</variable>: The status of the playback attempt as a text string.",
    "    <value>SUCCESS</value>",
    "    <value>FAILED</value>",
    "520 End of proper usage.",
)
DEAD = "511 Command Not Permitted on a dead channel or intercept routine"
DIGIT_SECONDS = 0.38
# res_agi.c MAX_AGI_CONNECT: a FastAGI server that does not accept within
# 2 s is a failure (real seconds: a network wait, not simulated time).
CONNECT_TIMEOUT_S = 2.0
ALLOWED_DEAD = {"GET VARIABLE", "GET FULL VARIABLE", "SET VARIABLE", "VERBOSE", "NOOP"}
KNOWN = ("ANSWER", "CHANNEL STATUS", "GET FULL VARIABLE", "GET VARIABLE", "SET VARIABLE",
         "STREAM FILE", "GET DATA", "SAY DIGITS", "WAIT FOR DIGIT", "EXEC", "VERBOSE",
         "NOOP", "HANGUP", "SAY NUMBER")


class _Conversation:
    def __init__(self, rt: Runtime, chan: Channel, writer: asyncio.StreamWriter) -> None:
        self.rt = rt
        self.chan = chan
        self.writer = writer
        self.dead_told = False
        self.digits_seen = 0

    def send(self, *lines: str) -> None:
        self.writer.write("".join(f"{line}\n" for line in lines).encode())

    @property
    def dead(self) -> bool:
        return self.chan.hangup_requested or not self.chan.alive

    async def play(self, name: str, escape: str) -> tuple[str, int]:
        """Play a file; returns (the digit that stopped it or "", samples)."""
        length = SOUNDS.get(name, 1.0)
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + self.rt.real(length)
        while not self.dead:
            while self.chan.dtmf:
                digit = self.chan.dtmf.popleft()
                if digit in escape:
                    played = (loop.time() - start) * self.rt.speed
                    return digit, int(played * 8000)
            left = deadline - loop.time()
            if left <= 0:
                break
            await self.rt.switch.wait_any([self.chan], left)
        return "", int(length * 8000)

    async def digit(self, seconds: float | None) -> str | None:
        """Next DTMF digit, "" on timeout, None when the channel died."""
        loop = asyncio.get_running_loop()
        deadline = None if seconds is None else loop.time() + self.rt.real(seconds)
        while not self.dead:
            if self.chan.dtmf:
                return self.chan.dtmf.popleft()
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return ""
            await self.rt.switch.wait_any([self.chan], left)
        return None

    async def run(self, line: str) -> str:
        """Execute one command; returns its reply (may be several lines)."""
        words = line.split()
        upper = " ".join(words).upper()
        name = next((k for k in KNOWN if upper == k or upper.startswith(k + " ")), None)
        if name is None:
            return "510 Invalid or unknown command"
        if self.dead and name not in ALLOWED_DEAD:
            return DEAD
        try:
            args = shlex.split(line)[len(name.split()):]
        except ValueError:
            args = words[len(name.split()):]
        chan, switch = self.chan, self.rt.switch
        if name == "ANSWER":
            answer_channel(self.rt, chan)
            return "200 result=0"
        if name == "CHANNEL STATUS":
            return f"200 result={int(chan.state)}"
        if name in ("GET VARIABLE", "GET FULL VARIABLE"):
            if not args:
                return "520 Invalid command syntax.  Proper usage not available."
            expr = args[0] if name == "GET FULL VARIABLE" else "${" + args[0] + "}"
            value = self.rt.expand(chan, expr)
            return f"200 result=1 ({value})" if value else "200 result=0"
        if name == "SET VARIABLE":
            if len(args) < 2:
                return "520 Invalid command syntax.  Proper usage not available."
            switch.set_var(chan, args[0], args[1])
            return "200 result=1"
        if name in ("VERBOSE", "NOOP"):
            return "200 result=1" if name == "VERBOSE" else "200 result=0"
        if name == "HANGUP":
            switch.ami_hangup(chan, 16)
            return "200 result=1"
        if name == "STREAM FILE":
            if len(args) < 2:
                return "\n".join(USAGE_STREAM_FILE)
            digit, samples = await self.play(args[0], args[1])
            if self.dead:
                return f"200 result=-1 endpos={samples}"
            switch.set_var(chan, "PLAYBACKSTATUS", "SUCCESS")
            return f"200 result={ord(digit) if digit else 0} endpos={samples}"
        if name in ("SAY DIGITS", "SAY NUMBER"):
            digits = args[0] if args else ""
            await self.rt.hold(chan, DIGIT_SECONDS * 2 * len(digits))
            return "200 result=-1" if self.dead else "200 result=0"
        if name == "WAIT FOR DIGIT":
            ms = int(args[0]) if args and args[0].lstrip("-").isdigit() else -1
            got = await self.digit(None if ms < 0 else ms / 1000)
            if got is None:
                return "200 result=-1"
            return f"200 result={ord(got) if got else 0}"
        if name == "GET DATA":
            return await self.get_data(args)
        return await self.exec(args)

    async def get_data(self, args: list[str]) -> str:
        if not args:
            return "520 Invalid command syntax.  Proper usage not available."
        timeout = int(args[1]) / 1000 if len(args) > 1 else 5.0
        limit = int(args[2]) if len(args) > 2 else 1024
        first, _ = await self.play(args[0], "0123456789*#")
        typed = first
        while not self.dead and len(typed) < limit and typed[-1:] != "#":
            got = await self.digit(timeout)
            if not got:
                break
            typed += got
        if self.dead:
            return "200 result=-1"
        typed = typed.rstrip("#")
        return f"200 result={typed}" if typed else "200 result= (timeout)"

    async def exec(self, args: list[str]) -> str:
        app = args[0] if args else ""
        data = args[1] if len(args) > 1 else ""
        if app.lower() == "playback":
            await self.play(data.split(",")[0], "")
            if not self.dead:
                self.rt.switch.set_var(self.chan, "PLAYBACKSTATUS", "SUCCESS")
            return "200 result=-1" if self.dead else "200 result=0"
        runner = self.rt.apps.get(app)
        if runner is None:
            return "200 result=-2"
        await runner(self.rt, self.chan, data.split(",") if data else [])
        return "200 result=-1" if self.dead else "200 result=0"


def env_block(chan: Channel, url: str, args: list[str], threadid: int) -> str:
    parts = urlsplit(url)
    script = parts.path.lstrip("/") + (f"?{parts.query}" if parts.query else "")
    rows = [
        ("network", "yes"), ("network_script", script), ("request", url),
        ("channel", chan.name), ("language", "en"), ("type", "Local"),
        ("uniqueid", chan.uniqueid), ("version", "22.10.1"),
        ("callerid", chan.cid_num), ("calleridname", chan.cid_name),
        ("callingpres", "0"), ("callingani2", "0"), ("callington", "0"),
        ("callingtns", "0"), ("dnid", "unknown"), ("rdnis", "unknown"),
        ("context", chan.context), ("extension", chan.exten),
        ("priority", str(chan.priority)), ("enhanced", "0.0"), ("accountcode", ""),
        ("threadid", str(threadid)),
    ]
    rows += [(f"arg_{n}", value) for n, value in enumerate(args, start=1)]
    return "".join(f"agi_{key}: {value}\n" for key, value in rows) + "\n"


async def agi(rt: Runtime, chan: Channel, args: list[str]) -> Outcome:
    """AGI(agi://host:port/script?query,arg1,...)."""
    url = args[0] if args else ""
    parts = urlsplit(url)
    if parts.scheme != "agi" or parts.hostname is None:
        rt.switch.set_var(chan, "AGISTATUS", "FAILURE")
        return Outcome.NEXT
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 4573)
    except (OSError, TimeoutError):
        rt.switch.set_var(chan, "AGISTATUS", "FAILURE")
        return Outcome.HANGUP if chan.hangup_requested else Outcome.NEXT
    talk = _Conversation(rt, chan, writer)
    try:
        writer.write(env_block(chan, url, args[1:], rt.rng.randrange(10**14)).encode())
        while True:
            raw = await reader.readline()
            if not raw:
                break
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if not line.strip():
                continue
            command_id = str(rt.rng.randrange(10**9, 2 * 10**9))
            head = [*chan.fields(), ("CommandId", command_id), ("Command", line)]
            rt.switch.emit("AGIExecStart", "agi", head)
            reply = await talk.run(line)
            talk.send(reply)
            code = reply[:3]
            result = {"200": "Success", "510": "Invalid or unknown command", "520": "Usage",
                      "511": DEAD[4:]}.get(code, "Success")
            if reply.startswith("200 result=-1"):
                code, result = "-1", "Failure"
            rt.switch.emit("AGIExecEnd", "agi", [*chan.fields(), ("CommandId", command_id),
                                                 ("Command", line), ("ResultCode", code),
                                                 ("Result", result)])
            if talk.dead and not talk.dead_told:
                # sent once, unsolicited, after the reply of the command
                # during which the channel died (finding 17)
                talk.dead_told = True
                talk.send("HANGUP")
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    status = "HANGUP" if talk.dead else "SUCCESS"
    rt.switch.set_var(chan, "AGISTATUS", status)
    return Outcome.HANGUP if talk.dead else Outcome.NEXT
