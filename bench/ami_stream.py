"""A synthetic AMI event stream made of the recordings' real events, and a
loopback AMI server that plays it to a client after login.

Shared by the benchmarks: the stream is N copies of the events received in
recordings 01-10, with every Uniqueid/Linkedid made distinct per copy so the
tracker sees N times as many calls; copies follow each other so the live
state stays the size of one recording.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path

from cti.pbx.recording import read_entries
from cti.pbx.wire import TERMINATOR

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "asterisk-22"
_IDS = re.compile(rb"(\b1795\d{6}\.\d+|cti-cb-42-agent(?:-2)?)")
END_MARKER = b"Event: UserEvent\r\nUserEvent: BenchEnd\r\n\r\n"


def recorded_events() -> list[bytes]:
    """Every event message the events-on sessions of recordings 01-10 got."""
    blocks: list[bytes] = []
    for path in sorted(FIXTURES.glob("[01][0-9]-*.txt")):
        if path.name.startswith(("11-", "12-")):
            continue
        for entry in read_entries(path):
            if entry.direction != "<<" or entry.conn != "rec":
                continue
            for block in entry.payload.split(TERMINATOR):
                if block.startswith(b"Event: ") and not block.startswith(b"Event: FullyBooted"):
                    blocks.append(block + TERMINATOR)
    return blocks


def build_stream(copies: int) -> tuple[bytes, int]:
    """The stream bytes and the number of events in it (marker excluded)."""
    base = recorded_events()
    parts: list[bytes] = []
    for copy in range(copies):
        suffix = b"-%d" % copy
        parts.extend(_IDS.sub(lambda m, s=suffix: m.group(0) + s, block) for block in base)
    return b"".join(parts), len(base) * copies


class StreamServer:
    """Accepts AMI logins on 127.0.0.1 and, on each, sends the stream then
    the end marker; answers Ping and list actions so a client can resync."""

    def __init__(self, stream: bytes) -> None:
        self.stream = stream
        # Written in chunks cut at message boundaries so that action replies
        # interleave with the events, as Asterisk does, and a client's
        # resync is answered while the stream flows.
        self.chunks = _chunks(stream, 64 * 1024)
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.handlers: set[asyncio.Task[object]] = set()
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            for writer in list(self.writers):
                writer.close()
            # Closed transports end each handler's read with EOF.
            if self.handlers:
                await asyncio.wait(list(self.handlers), timeout=5)
            await self.server.wait_closed()

    async def _stream(self, writer: asyncio.StreamWriter) -> None:
        for chunk in self.chunks:
            writer.write(chunk)
            await writer.drain()
        writer.write(END_MARKER)
        await writer.drain()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"Asterisk Call Manager/11.0.0\r\n")
        streaming: asyncio.Task[None] | None = None
        self.writers.add(writer)
        me = asyncio.current_task()
        if me is not None:
            self.handlers.add(me)
        try:
            while True:
                raw = await reader.readuntil(TERMINATOR)
                fields = dict(
                    line.split(": ", 1) for line in raw.decode().split("\r\n") if ": " in line
                )
                action = fields.get("Action", "").lower()
                action_id = fields.get("ActionID", "")
                head = f"ActionID: {action_id}\r\n" if action_id else ""
                if action == "login":
                    writer.write(
                        f"Response: Success\r\n{head}Message: Authentication accepted\r\n\r\n"
                        "Event: FullyBooted\r\nPrivilege: system,all\r\nUptime: 100\r\n"
                        "LastReload: 100\r\nStatus: Fully Booted\r\n\r\n".encode()
                    )
                    await writer.drain()
                    streaming = asyncio.create_task(self._stream(writer))
                elif action == "ping":
                    writer.write(
                        f"Response: Success\r\n{head}Ping: Pong\r\nTimestamp: 0\r\n\r\n".encode()
                    )
                elif action in ("coreshowchannels", "queuestatus", "devicestatelist"):
                    complete = {
                        "coreshowchannels": "CoreShowChannelsComplete",
                        "queuestatus": "QueueStatusComplete",
                        "devicestatelist": "DeviceStateListComplete",
                    }[action]
                    writer.write(
                        f"Response: Success\r\n{head}EventList: start\r\n"
                        f"Message: Channels will follow\r\n\r\nEvent: {complete}\r\n{head}"
                        "EventList: Complete\r\nListItems: 0\r\n\r\n".encode()
                    )
                elif action == "logoff":
                    writer.write(f"Response: Goodbye\r\n{head}\r\n".encode())
                    await writer.drain()
                    break
                else:
                    writer.write(f"Response: Success\r\n{head}\r\n".encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if streaming is not None:
                streaming.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await streaming
            self.writers.discard(writer)
            if me is not None:
                self.handlers.discard(me)
            writer.close()


def _chunks(stream: bytes, size: int) -> list[bytes]:
    """`stream` cut into pieces of about `size` bytes, each ending at the
    end of an AMI message."""
    pieces: list[bytes] = []
    start = 0
    while start < len(stream):
        cut = stream.find(TERMINATOR, start + size)
        end = len(stream) if cut < 0 else cut + len(TERMINATOR)
        pieces.append(stream[start:end])
        start = end
    return pieces
