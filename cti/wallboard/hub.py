"""The supervisor hub: a snapshot for each new socket, then coalesced
deltas to all of them.

Events only mark the board dirty; at most once per `update_seconds` the
board is built once, compared section by section with the last one, and
the changed sections are serialised once and queued to every socket. Each
socket has a bounded queue and its own sender task: a socket that falls
behind is closed, never waited on, so supervisors cannot slow routing.

Messages (JSON, `v` is the schema version):
    {"type": "snapshot", "v": 1, "seq": n, "board": {...}}
    {"type": "delta", "v": 1, "seq": n, "changes": {section: value, ...}}
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web

log = structlog.get_logger(__name__)

QUEUE = 32


class _Socket:
    def __init__(self, ws: web.WebSocketResponse, who: str, size: int) -> None:
        self.ws = ws
        self.who = who
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=size)
        self.sender: asyncio.Task[None] | None = None

    def deliver(self, text: str) -> bool:
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            return False
        return True

    async def send_all(self) -> None:
        while True:
            text = await self.queue.get()
            await self.ws.send_str(text)


class SupervisorHub:
    def __init__(self, build: Callable[[], dict[str, Any]], *, update_seconds: float,
                 queue_size: int = QUEUE) -> None:
        self._build = build
        self._update = update_seconds
        self._size = queue_size
        self._sockets: set[_Socket] = set()
        self._board: dict[str, Any] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.seq = 0
        self.dropped = 0
        self.updates = 0

    def mark_dirty(self) -> None:
        if not self._sockets:
            # Nobody watches: no rebuild every update period (it costs the
            # routing loop); the next supervisor gets a board built afresh.
            self._board = None
            return
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._update, self._flush)

    def _flush(self) -> None:
        self._timer = None
        try:
            board = self._build()
        except Exception:
            log.exception("wallboard.build_failed")
            return
        last = self._board or {}
        changes = {key: value for key, value in board.items() if last.get(key) != value}
        self._board = board
        if not changes:
            return
        message: dict[str, Any] = {"type": "delta", "v": 1, "seq": 0, "changes": changes}
        rows = _changed_rows(last.get("agents"), changes.get("agents"))
        if rows is not None:
            # The same agents in the same order: only the rows that changed
            # travel (a floor of 1,000 agents is most of the board).
            del changes["agents"]
            message["agent_rows"] = rows
        self.seq += 1
        self.updates += 1
        message["seq"] = self.seq
        text = json.dumps(message)
        for sock in list(self._sockets):
            if not sock.deliver(text):
                self._drop(sock, "fell behind")

    def _drop(self, sock: _Socket, reason: str) -> None:
        self.dropped += 1
        self._sockets.discard(sock)
        log.warning("wallboard.socket_dropped", supervisor=sock.who, reason=reason)
        if sock.sender is not None:
            sock.sender.cancel()

    async def serve(self, ws: web.WebSocketResponse, who: str) -> None:
        """Run one supervisor socket until it closes or is dropped."""
        if self._board is None:
            self._board = self._build()
        sock = _Socket(ws, who, self._size)
        sock.deliver(json.dumps({"type": "snapshot", "v": 1, "seq": self.seq,
                                 "board": self._board}))
        self._sockets.add(sock)
        sock.sender = asyncio.create_task(sock.send_all(), name=f"wallboard-{who}")
        try:
            reading = asyncio.ensure_future(self._read(ws))
            await asyncio.wait({reading, sock.sender},
                               return_when=asyncio.FIRST_COMPLETED)
            for task in (reading, sock.sender):
                task.cancel()
            for task in (reading, sock.sender):
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await task
        finally:
            self._sockets.discard(sock)
            await ws.close()

    async def _read(self, ws: web.WebSocketResponse) -> None:
        # Supervisors act through the REST API; the socket only listens.
        async for _ in ws:
            pass

    @property
    def sockets(self) -> int:
        return len(self._sockets)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for sock in list(self._sockets):
            self._drop(sock, "server stopping")
            await sock.ws.close()


def _changed_rows(before: Any, after: Any) -> list[dict[str, Any]] | None:
    """The agent rows of `after` that differ from `before` when both list
    the same agents in the same order; None when the list itself changed."""
    if not isinstance(before, list) or not isinstance(after, list) or len(before) != len(after):
        return None
    if any(old.get("id") != new.get("id") for old, new in zip(before, after, strict=True)):
        return None
    return [new for old, new in zip(before, after, strict=True) if old != new]
