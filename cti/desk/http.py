"""The desk's HTTP side: `POST /api/v1/login` (password or configured token
-> signed session token), the `/agent` page and its assets, and the
`/ws/agent` websocket (thin: parse -> hub / service -> reply)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Annotated, Any

import structlog
from aiohttp import WSMsgType, web
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from cti.auth import AuthError, Session, SessionKeys, password_matches
from cti.center import Center
from cti.desk.hub import Hub
from cti.desk.protocol import (
    CLIENT_MESSAGE,
    COMMAND_TYPES,
    MAX_MESSAGE_BYTES,
    AgentRef,
    ErrorMessage,
    Hello,
    Reply,
    Welcome,
)
from cti.desk.service import DeskService

log = structlog.get_logger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
SEND_QUEUE = 512          # messages queued per connection before it is dropped
HELLO_TIMEOUT_S = 10.0
# A hash checked when the user is unknown, so that an unknown name takes
# as long as a wrong password (scrypt of "x" with a fixed salt).
_DUMMY_HASH = ("scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA$"
               "zGsE6kE0c1ezrj8IU6J9xwGmZmPq7vF6yq0Bb3iPq8A")


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    password: Annotated[str, StringConstraints(min_length=1, max_length=1024)] | None = None
    token: Annotated[str, StringConstraints(min_length=1, max_length=2048)] | None = None


class DeskAuth:
    """Who is calling: a password checked against the center's hashes, a
    configured static token, or a session token this server signed."""

    def __init__(self, center: Center, sessions: SessionKeys, static_tokens: Mapping[str, str],
                 *, hours: float, clock: Callable[[], float]) -> None:
        self.center = center
        self.sessions = sessions
        self._static = dict(static_tokens)  # token -> agent id
        self._hours = hours
        self._clock = clock

    async def login(self, request: LoginRequest) -> Session:
        if request.token is not None:
            agent_id = self.static_agent(request.token)
            if agent_id is None:
                raise AuthError("unknown token")
            return self._session(agent_id, "agent")
        if request.username is None or request.password is None:
            raise AuthError("username and password, or token")
        role, stored = self.center.credentials.get(request.username, ("agent", _DUMMY_HASH))
        # scrypt takes tens of ms of CPU: off the loop.
        ok = await asyncio.to_thread(password_matches, request.password, stored)
        if not ok or stored is _DUMMY_HASH:
            raise AuthError("wrong username or password")
        return self._session(request.username, role)

    def _session(self, subject: str, role: Any) -> Session:
        now = self._clock()
        token = self.sessions.issue(subject, role, now, self._hours)
        return self.sessions.check(token, now)

    def token_for(self, session: Session) -> str:
        hours = max(0.0, (session.expires_at - self._clock()) / 3600)
        return self.sessions.issue(session.subject, session.role, self._clock(), hours)

    def static_agent(self, token: str) -> str | None:
        found = None
        for known, agent_id in self._static.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                found = agent_id
        return found

    def agent_of(self, token: str) -> Session:
        """The agent session a websocket token stands for, or AuthError."""
        agent_id = self.static_agent(token)
        if agent_id is not None:
            return self._session(agent_id, "agent")
        session = self.sessions.check(token, self._clock())
        if session.role != "agent":
            raise AuthError("not an agent")
        return session


class _Connection:
    """One websocket: a message is written at once when nothing is queued
    before it (the pop leaves inside the routing decision, not a loop turn
    later); otherwise, or when the socket must wait for the peer (flow
    control), it goes through a bounded queue drained by a sender task,
    in order."""

    def __init__(self, ws: web.WebSocketResponse, agent_id: str) -> None:
        self.ws = ws
        self.agent_id = agent_id
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(SEND_QUEUE)
        self.dropped: str | None = None
        self._holding = False  # the sender took a message and has not sent it yet
        self._writing: asyncio.Future[None] | None = None  # a direct write still going
        self.sender = asyncio.create_task(self._send(), name=f"desk-send-{agent_id}")
        self._closing: asyncio.Task[bool] | None = None

    def deliver(self, text: str) -> bool:
        if self.dropped is not None:
            return False
        if self.queue.empty() and not self._holding and (
                self._writing is None or self._writing.done()):
            self._write_now(text)
            return True
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            return False
        return True

    def _write_now(self, text: str) -> None:
        """Run `send_str` up to its first wait: a frame written to the
        transport needs none. One that must wait (flow control) finishes
        in a task, and the sender waits for it before the next message.

        This is what Python 3.12's eager tasks do (`eager_start=True`),
        by hand because 3.11 is supported: the coroutine is stepped with
        `send(None)` until it yields a future, and `_finish` waits for that
        future and steps it on, as `asyncio.Task` does. It relies only on
        the coroutine protocol, not on aiohttp's internals; aiohttp's
        writer awaits nothing while the transport takes the frame."""
        coro = self.ws.send_str(text)
        try:
            waiting = coro.send(None)
        except StopIteration:
            return
        except (ConnectionError, RuntimeError):
            return  # closing: the reader loop ends the socket
        self._writing = asyncio.ensure_future(self._finish(coro, waiting))

    async def _finish(self, coro: Coroutine[Any, Any, None], waiting: Any) -> None:
        """Drive a started `send_str` to its end, as a task would."""
        try:
            while True:
                if isinstance(waiting, asyncio.Future):
                    try:
                        await asyncio.wait([waiting])
                    except asyncio.CancelledError:
                        coro.close()
                        raise
                else:
                    await asyncio.sleep(0)
                waiting = coro.send(None)
        except StopIteration:
            pass
        except (ConnectionError, RuntimeError):
            pass

    def drop(self, reason: str) -> None:
        """Stop sending and close; the reader loop then ends the socket."""
        if self.dropped is not None:
            return
        self.dropped = reason
        self.sender.cancel()
        if self._writing is not None:
            self._writing.cancel()
        self._closing = asyncio.create_task(self.ws.close(code=4429, message=reason.encode()),
                                            name=f"desk-close-{self.agent_id}")

    async def _send(self) -> None:
        try:
            while (text := await self.queue.get()) is not None:
                self._holding = True
                try:
                    if self._writing is not None and not self._writing.done():
                        await asyncio.wait([self._writing])
                    await self.ws.send_str(text)
                finally:
                    self._holding = False
        except (ConnectionError, RuntimeError):
            return

    async def close(self) -> None:
        self.sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.sender
        if self._writing is not None:
            self._writing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writing
        if self._closing is not None:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self._closing


class DeskHttp:
    def __init__(self, auth: DeskAuth, hub: Hub, service: DeskService) -> None:
        self.auth = auth
        self.hub = hub
        self.service = service
        self._inflight: dict[tuple[str, str], asyncio.Future[Reply]] = {}
        self._sockets: set[web.WebSocketResponse] = set()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/api/v1/login", self.login)
        app.router.add_get("/agent", self.page)
        app.router.add_static("/agent/static", STATIC, append_version=False)
        app.router.add_get("/ws/agent", self.socket)

    async def close(self) -> None:
        for ws in list(self._sockets):
            await ws.close(message=b"server shutdown")

    async def page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "agent.html",
                                headers={"Cache-Control": "no-cache",
                                         "Content-Security-Policy": "default-src 'self'"})

    async def login(self, request: web.Request) -> web.Response:
        body = await request.read()
        if len(body) > 4096:
            return _json_error(413, "too_large", "the login body is 4 KiB at most")
        try:
            login = LoginRequest.model_validate_json(body)
        except ValidationError as exc:
            return _json_error(422, "invalid", _problems(exc))
        try:
            session = await self.auth.login(login)
        except AuthError as exc:
            log.info("desk.login_refused", username=login.username, reason=exc.reason)
            return _json_error(401, "invalid_credentials", "invalid credentials")
        log.info("desk.login", subject=session.subject, role=session.role)
        name = self.service.name_of(session.subject)
        return web.json_response({"token": self.auth.token_for(session),
                                  "subject": session.subject, "role": session.role,
                                  "name": name, "expires_at": session.expires_at})

    async def socket(self, request: web.Request) -> web.StreamResponse:
        # aiohttp closes on larger frames; between the two, we answer
        # "too_large" and carry on.
        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=MAX_MESSAGE_BYTES * 4)
        await ws.prepare(request)
        self._sockets.add(ws)
        try:
            await self._serve(ws, request.query.get("token"))
        finally:
            self._sockets.discard(ws)
        return ws

    async def _serve(self, ws: web.WebSocketResponse, url_token: str | None) -> None:
        hello = await self._hello(ws)
        if hello is None:
            return
        token = hello.token or url_token
        try:
            if token is None:
                raise AuthError("no token")
            session = self.auth.agent_of(token)
            if session.subject not in self.service.switchboard.agents:
                raise AuthError("not an agent of this center")
        except AuthError as exc:
            log.info("desk.socket_refused", reason=exc.reason)
            await ws.send_str(ErrorMessage(code="unauthorized",
                                           message="invalid or expired token").model_dump_json())
            await ws.close(code=4401, message=b"unauthorized")
            return
        agent_id = session.subject
        connection = _Connection(ws, agent_id)
        center = self.service.center
        self.hub.reply(agent_id, connection, Welcome(
            agent_id=agent_id, agent_name=self.service.name_of(agent_id),
            stream=self.hub.stream_id(agent_id), pause_reasons=list(center.pause_reasons),
            services=sorted(center.policy.services),
            agents=[AgentRef(id=agent.id, name=agent.name) for agent in center.agents
                    if agent.id != agent_id],
            expires_at=session.expires_at))
        if not self.hub.attach(agent_id, connection, hello.stream, hello.last_seq):
            self.hub.attach_with_snapshot(agent_id, connection, self.service.snapshot(agent_id))
        log.info("desk.connected", agent_id=agent_id, resumed=hello.last_seq is not None,
                 tabs=self.hub.connections(agent_id))
        try:
            async for message in ws:
                if message.type is WSMsgType.TEXT:
                    await self._on_text(agent_id, connection, message.data)
                elif message.type is WSMsgType.BINARY:
                    self._refuse(agent_id, connection, "bad_message", "text frames only")
                elif message.type is WSMsgType.ERROR:
                    break
        finally:
            self.hub.detach(agent_id, connection)
            await connection.close()
            log.info("desk.disconnected", agent_id=agent_id, reason=connection.dropped)

    async def _hello(self, ws: web.WebSocketResponse) -> Hello | None:
        try:
            message = await ws.receive(timeout=HELLO_TIMEOUT_S)
        except TimeoutError:
            await ws.close(code=4408, message=b"no hello")
            return None
        if message.type is not WSMsgType.TEXT:
            await ws.close()
            return None
        try:
            parsed = CLIENT_MESSAGE.validate_json(message.data)
        except ValidationError as exc:
            await ws.send_str(ErrorMessage(code="invalid", message=_problems(exc))
                              .model_dump_json())
            await ws.close(code=4400, message=b"expected hello")
            return None
        if not isinstance(parsed, Hello):
            await ws.send_str(ErrorMessage(code="invalid", message="send hello first")
                              .model_dump_json())
            await ws.close(code=4400, message=b"expected hello")
            return None
        return parsed

    async def _on_text(self, agent_id: str, connection: _Connection, text: str) -> None:
        if len(text.encode()) > MAX_MESSAGE_BYTES:
            self._refuse(agent_id, connection, "too_large",
                         f"messages are {MAX_MESSAGE_BYTES} bytes at most")
            return
        try:
            raw = json.loads(text)
        except ValueError:
            self._refuse(agent_id, connection, "bad_json", "not a JSON object")
            return
        kind = raw.get("type") if isinstance(raw, dict) else None
        command_id = raw.get("id") if isinstance(raw, dict) else None
        command_id = command_id if isinstance(command_id, str) and len(command_id) <= 64 else None
        if kind not in COMMAND_TYPES:
            self._refuse(agent_id, connection, "unknown_type",
                         f"unknown message type {str(kind)[:40]!r}", command_id)
            return
        try:
            command = CLIENT_MESSAGE.validate_python(raw)
        except ValidationError as exc:
            self._refuse(agent_id, connection, "invalid", _problems(exc), command_id)
            return
        assert not isinstance(command, Hello)
        self.hub.reply(agent_id, connection, await self._once(agent_id, command))

    async def _once(self, agent_id: str, command: Any) -> Reply:
        """Run a command once per id: a retry, even from another tab while
        the first is running, gets the first answer."""
        done = self.hub.answer_of(agent_id, command.id)
        if done is not None:
            return done
        key = (agent_id, command.id)
        running = self._inflight.get(key)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            answer = await self.service.run(agent_id, command)
            self.hub.remember(agent_id, command.id, answer)
            future.set_result(answer)
            return answer
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning
            raise
        finally:
            del self._inflight[key]

    def _refuse(self, agent_id: str, connection: _Connection, code: str, message: str,
                command_id: str | None = None) -> None:
        self.hub.reply(agent_id, connection,
                       ErrorMessage(code=code, message=message, command_id=command_id))


def _problems(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:5]:
        where = ".".join(str(part) for part in error["loc"]) or "message"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def _json_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)
