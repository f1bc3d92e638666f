"""A tiny AMI client for tests of the simulated PBX, built on
`cti.pbx.wire`: it logs in, sends actions, and keeps every message it
receives so a test can wait for an event or compare the whole stream."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from cti.pbx.wire import AmiMessage, MessageReader, encode_action


class AmiClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.received: list[AmiMessage] = []
        self._changed = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._read())
        self.closed = asyncio.Event()
        self._counter = 0

    @classmethod
    async def connect(cls, port: int) -> AmiClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def _read(self) -> None:
        framer = MessageReader()
        try:
            while data := await self._reader.read(65536):
                self.received.extend(framer.feed(data))
                self._changed.set()
        finally:
            self.closed.set()
            self._changed.set()

    @property
    def events(self) -> list[AmiMessage]:
        return [m for m in self.received if m.event is not None]

    def send_raw(self, data: bytes) -> None:
        self._writer.write(data)

    def send(self, name: str, *fields: tuple[str, str], action_id: str | None = "auto") -> str:
        if action_id == "auto":
            self._counter += 1
            action_id = f"t-{self._counter:03d}-{name.lower()}"
        pairs = ([("ActionID", action_id)] if action_id else []) + list(fields)
        self._writer.write(encode_action(name, pairs))
        return action_id or ""

    async def action(self, name: str, *fields: tuple[str, str],
                     within: float = 10.0) -> AmiMessage:
        """Send and return the response (the message carrying its ActionID)."""
        action_id = self.send(name, *fields)
        return await self.wait_for(
            lambda m: m.response is not None and m.action_id == action_id, within
        )

    async def wait_for(
        self, predicate: Callable[[AmiMessage], bool], within: float = 10.0, since: int = 0
    ) -> AmiMessage:
        async with asyncio.timeout(within):
            while True:
                for message in self.received[since:]:
                    if predicate(message):
                        return message
                if self.closed.is_set():
                    raise ConnectionError("AMI connection closed")
                self._changed.clear()
                await self._changed.wait()

    async def event(self, name: str, within: float = 10.0, since: int = 0,
                    **fields: str) -> AmiMessage:
        def match(m: AmiMessage) -> bool:
            return m.event == name and all(m.get(k) == v for k, v in fields.items())

        return await self.wait_for(match, within, since)

    async def login(self, events: str = "on", secret: str = "cti-secret") -> AmiMessage:
        await self.wait_for(lambda m: m.get("Banner") is not None)
        return await self.action("Login", ("Username", "cti"), ("Secret", secret),
                                 ("Events", events))

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
