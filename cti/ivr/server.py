"""The FastAGI server: accepts Asterisk's AGI connections and runs one
handler per call.

Held here (PANORAMISK.md items 13, 15, 16): routes match the script path
without its query string; the environment block is read with
`readuntil(b"\\n\\n")` under a timeout and a size bound, so a client that
closes or stalls before the blank line costs nothing but its own socket;
handlers are plain coroutines; on close every session is cancelled, the
cancellation propagates, and each socket is closed and awaited.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

from cti.ivr.agi import MAX_ENV_BYTES, MAX_LINE_BYTES, AgiError, AgiRequest, AgiSession

log = structlog.get_logger(__name__)

AgiHandler = Callable[[AgiSession], Awaitable[None]]


class FastAgiServer:
    def __init__(
        self,
        routes: dict[str, AgiHandler],
        *,
        host: str = "127.0.0.1",
        port: int = 4573,
        env_timeout: float = 5.0,
        command_timeout: float = 60.0,
        max_sessions: int = 1000,
    ) -> None:
        self.routes = routes
        self.host = host
        self.port = port
        self._env_timeout = env_timeout
        self._command_timeout = command_timeout
        self._max_sessions = max_sessions
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[None]] = set()
        self.completed = 0
        self.failed = 0
        self._closing = False

    @property
    def active(self) -> int:
        return len(self._sessions)

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, self.host, self.port, limit=max(MAX_ENV_BYTES, MAX_LINE_BYTES)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("agi.listening", host=self.host, port=self.port)

    async def close(self) -> None:
        self._closing = True
        if self._server is not None:
            self._server.close()
        for task in list(self._sessions):
            task.cancel()
        if self._sessions:
            await asyncio.gather(*self._sessions, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._sessions) >= self._max_sessions:
            log.warning("agi.refused", reason="too many sessions", limit=self._max_sessions)
            writer.close()
            await writer.wait_closed()
            return
        self._sessions.add(task)
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            # The flow saw the cancellation and cleaned up. When close()
            # cancelled it, this task (owned by asyncio.start_server, which
            # on 3.11 logs a cancelled handler as an error) ends normally;
            # any other cancellation goes on up.
            if not self._closing:
                raise
        finally:
            self._sessions.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            block = await asyncio.wait_for(reader.readuntil(b"\n\n"), self._env_timeout)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                ConnectionError) as exc:
            log.warning("agi.bad_environment", reason=type(exc).__name__)
            self.failed += 1
            return
        try:
            request = AgiRequest.parse(block)
        except AgiError as exc:
            log.warning("agi.bad_environment", reason=str(exc))
            self.failed += 1
            return
        handler = self.routes.get(request.script)
        bound = log.bind(call=request.uniqueid, script=request.script)
        if handler is None:
            bound.warning("agi.unknown_script")
            self.failed += 1
            return
        session = AgiSession(request, reader, writer, command_timeout=self._command_timeout)
        try:
            await handler(session)
            self.completed += 1
        except AgiError as exc:
            # The caller hung up or Asterisk refused a command: the flow ends
            # here and the call record says how (the handler saw it first).
            bound.info("agi.ended", reason=exc.code, detail=str(exc))
            self.completed += 1
        except TimeoutError:
            bound.warning("agi.timeout")
            self.failed += 1
        except asyncio.CancelledError:
            bound.info("agi.cancelled")
            raise
        except Exception:
            bound.exception("agi.handler_failed")
            self.failed += 1
