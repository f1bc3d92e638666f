"""The simulator's AMI server: TCP sessions, login, per-session event
switches (Events, EventMask, Filter) and the fan-out of events.

It speaks the bytes recording 11 shows: the banner, `Authentication
accepted` then FullyBooted then SuccessfulAuth, a failed login answered 1 s
late before the close, `Permission denied` before login, security events
broadcast to every events-on session (finding 12); and its part in a
`core restart` (Shutdown, dropped sessions, a listener down then back).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from cti.pbx.wire import AmiMessage, MessageReader, WireError
from cti.sim.channels import Pairs

BANNER = b"Asterisk Call Manager/11.0.0\r\n"
ALWAYS_ALLOWED = {"login", "challenge", "logoff"}
EVENT_CLASSES = {"system", "call", "log", "verbose", "command", "agent", "user", "config",
                 "dtmf", "reporting", "cdr", "dialplan", "originate", "agi", "cc", "aoc",
                 "test", "security", "message"}


def encode(pairs: Pairs) -> bytes:
    return "".join(f"{key}: {value}\r\n" for key, value in pairs).encode() + b"\r\n"


@dataclass(eq=False)
class Session:
    writer: asyncio.StreamWriter
    local: str
    remote: str
    session_id: str
    started: float = field(default_factory=time.time)
    username: str = ""
    authenticated: bool = False
    events: bool = True
    mask: set[str] | None = None  # None = every class
    filters: list[str] = field(default_factory=list)
    challenge: str = ""
    closing: bool = False

    def ended(self) -> bool:
        return self.closing

    def send(self, pairs: Pairs) -> None:
        if not self.closing and not self.writer.is_closing():
            self.writer.write(encode(pairs))

    def wants(self, privilege: str, text: str) -> bool:
        if not self.authenticated or not self.events:
            return False
        if self.mask is not None and privilege not in self.mask:
            return False
        return not self.filters or any(rule in text for rule in self.filters)


def respond(message: AmiMessage, response: str, *pairs: tuple[str, str]) -> Pairs:
    """A response: `Response`, then `ActionID` only when one was sent."""
    head = [("Response", response)]
    action_id = message.action_id
    if action_id is not None:
        head.append(("ActionID", action_id))
    return [*head, *pairs]


Handler = Callable[["Session", AmiMessage], Awaitable[None]]


class AmiServer:
    """Sessions and fan-out; actions are handled by `actions` (name in
    lower case -> coroutine)."""

    def __init__(
        self,
        username: str,
        secret: str,
        login_failure_delay: float = 1.0,
    ) -> None:
        self._username = username
        self._secret = secret
        self._failure_delay = login_failure_delay
        self.sessions: set[Session] = set()
        self.actions: dict[str, Handler] = {}
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = time.monotonic()
        self._next_session = 0x7F0000001000
        # between the dropped sessions and the closed listener of a restart
        # a connect is accepted then reset, with no banner (recording 11)
        self._resetting = False
        # False from a restart's listen() until its FullyBooted broadcast
        self.booted = True

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._serve, host, port)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._end_sessions()
        if self._server is not None:
            await self._server.wait_closed()

    # ------------------------------------------------------------ restart
    def shut_down(self) -> None:
        """`core restart`: Shutdown to every session that takes system
        events, and nothing more is said on any session (recording 11: no
        response to the Command)."""
        self.broadcast("Shutdown", "system", [("Shutdown", "Cleanly"), ("Restart", "True")])
        for session in self.sessions:
            session.closing = True

    async def drop(self) -> None:
        """Every connection closed; a new one is reset until stop_listening()."""
        self._resetting = True
        await self._end_sessions()

    async def stop_listening(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def listen(self, host: str, port: int) -> None:
        """The restarted Asterisk's listener: uptime from now, not booted
        until fully_booted()."""
        self._resetting = False
        self._started = time.monotonic()
        self.booted = False
        await self.start(host, port)

    def fully_booted(self) -> None:
        """The end of a restart: FullyBooted to the sessions logged in
        meanwhile, `Status` first (recording 11, unlike the one at login)."""
        self.booted = True
        self.broadcast("FullyBooted", "system", [("Status", "Fully Booted"),
                                                 ("Uptime", self.uptime()),
                                                 ("LastReload", self.uptime())])

    async def _end_sessions(self) -> None:
        sessions = list(self.sessions)
        for session in sessions:
            session.closing = True
            session.writer.close()
        if self._tasks:
            # closed sockets end the sessions; one blocked in an action is cancelled
            await asyncio.wait(list(self._tasks), timeout=1.0)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for session in sessions:
            # A client that stopped reading leaves unsent events behind and
            # the socket would wait for it forever (Server.wait_closed on
            # Python 3.12+ waits for every connection): drop them.
            session.writer.transport.abort()

    # ------------------------------------------------------------ events
    def broadcast(self, event: str, privilege: str, pairs: Pairs) -> None:
        full = [("Event", event), ("Privilege", f"{privilege},all"), *pairs]
        data = encode(full)
        # the text is only read by Filter rules: no decode per event otherwise
        text = data.decode() if any(s.filters for s in self.sessions) else ""
        for session in list(self.sessions):
            if (session.wants(privilege, text) and not session.closing
                    and not session.writer.is_closing()):
                session.writer.write(data)

    def security(self, session: Session, event: str, severity: str, *extra: tuple[str, str],
                 version: str = "1", account: bool = True) -> None:
        now = _tv(time.time())
        pairs: Pairs = [("EventTV", now), ("Severity", severity), ("Service", "AMI"),
                        ("EventVersion", version)]
        if account:
            pairs.append(("AccountID", session.username))
        pairs += [("SessionID", session.session_id), ("LocalAddress", session.local),
                  ("RemoteAddress", session.remote)]
        pairs += list(extra)
        self.broadcast(event, "security", pairs)

    def uptime(self) -> str:
        return str(int(time.monotonic() - self._started))

    # ------------------------------------------------------------ sessions
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._resetting:
            # SO_LINGER 0: the close is a reset, as the dying Asterisk's
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        local = writer.get_extra_info("sockname")
        remote = writer.get_extra_info("peername")
        self._next_session += 0x10
        session = Session(
            writer,
            f"IPV4/TCP/{local[0]}/{local[1]}",
            f"IPV4/TCP/{remote[0]}/{remote[1]}",
            hex(self._next_session),
        )
        self.sessions.add(session)
        try:
            writer.write(BANNER)
            framer = MessageReader()
            while not session.closing:
                data = await reader.read(65536)
                if not data:
                    break
                try:
                    messages = framer.feed(data)
                except WireError:
                    break
                for message in messages:
                    await self._dispatch(session, message)
                    if session.ended():
                        break
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # close() cancels sessions still busy (a synchronous Originate);
            # asyncio.start_server's done-callback calls task.exception() and
            # logs an error for a cancelled handler (Python 3.11), so the
            # handler ends normally instead.
            pass
        finally:
            self.sessions.discard(session)
            session.closing = True
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self._tasks.discard(task)

    async def _dispatch(self, session: Session, message: AmiMessage) -> None:
        action = message.get("Action")
        if action is None:
            session.send(respond(message, "Error", ("Message", "Missing action in request")))
            self.security(session, "RequestBadFormat", "Error",
                          ("RequestType", "Action: NONE"), ("SessionTV", _tv(session.started)),
                          ("AccountID", session.username), account=False)
            return
        name = action.lower()
        if not session.authenticated and name not in ALWAYS_ALLOWED:
            session.send(respond(message, "Error", ("Message", "Permission denied")))
            self.security(session, "RequestNotAllowed", "Error",
                          ("RequestType", f"Action: {action}"),
                          ("SessionTV", "1970-01-01T00:00:00.000+0000"))
            return
        if name == "login":
            await self._login(session, message)
        elif name == "challenge":
            session.challenge = str(int(time.monotonic() * 1e6) % 900000000 + 100000000)
            session.send(respond(message, "Success", ("Challenge", session.challenge)))
        elif name == "logoff":
            session.send(respond(message, "Goodbye", ("Message", "Thanks for all the fish.")))
            session.closing = True
        elif name in self.actions:
            await self.actions[name](session, message)
        else:
            session.send(respond(message, "Error", (
                "Message",
                f"Invalid/unknown command: {action}. "
                "Use Action: ListCommands to show available commands.",
            )))
            self.security(session, "RequestBadFormat", "Error",
                          ("RequestType", f"Action: {action}"),
                          ("SessionTV", _tv(session.started)),
                          ("AccountID", session.username), account=False)

    async def _login(self, session: Session, message: AmiMessage) -> None:
        username = message.get("Username", "") or ""
        ok = username == self._username
        if (message.get("AuthType") or "").lower() == "md5":
            digest = hashlib.md5((session.challenge + self._secret).encode()).hexdigest()  # noqa: S324 - AMI's own scheme
            ok = ok and bool(session.challenge) and message.get("Key") == digest
        else:
            ok = ok and message.get("Secret") == self._secret
        session.username = username
        if not ok:
            # InvalidPassword goes out at once; the response comes 1 s later
            # and the server closes (finding 15).
            self.security(session, "InvalidPassword", "Error",
                          ("SessionTV", "1970-01-01T00:00:00.000+0000"), version="2")
            await asyncio.sleep(self._failure_delay)
            session.send(respond(message, "Error", ("Message", "Authentication failed")))
            session.closing = True
            return
        session.authenticated = True
        self.apply_events(session, message.get("Events"))
        session.send(respond(message, "Success", ("Message", "Authentication accepted")))
        if session.wants("system", "") and self.booted:
            session.send([("Event", "FullyBooted"), ("Privilege", "system,all"),
                          ("Uptime", self.uptime()), ("LastReload", self.uptime()),
                          ("Status", "Fully Booted")])
        self.security(session, "SuccessfulAuth", "Informational", ("UsingPassword", "0"),
                      ("SessionTV", _tv(session.started)))

    @staticmethod
    def apply_events(session: Session, value: str | None) -> None:
        """`Events:` / `EventMask:` value: on, off, or a list of classes."""
        if value is None:
            return
        words = {w.strip().lower() for w in value.split(",") if w.strip()}
        if words <= {"on", "all", "yes", "true"} and words:
            session.events, session.mask = True, None
        elif not words or words & {"off", "no", "false"}:
            session.events = False
        else:
            session.events, session.mask = True, words & EVENT_CLASSES


def _tv(seconds: float) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{stamp}.{int(seconds * 1000) % 1000:03d}+0000"
