"""A fake Asterisk AMI server over real TCP, for tests.

It speaks the wire protocol as the Asterisk 22 recordings show it (banner,
Login accepted, or refused after a delay and then closed, FullyBooted after
login, Ping/Pong, answers echoing the ActionID, event lists ended by their
`...Complete` event), records every action it receives, and misbehaves on
request: drop connections, stop answering while keeping the socket open
(half-open), stop listening, split bytes across writes. It is a real TCP
server rather than `panoramisk.testing`, which rewrites the line ending of
the whole process (panoramisk defect 12).

    async with AmiPeer() as peer:
        peer.channels.append(core_show_channel("Local/60@sim-caller-00000000;1", "1.1"))
        link = AmiLink("127.0.0.1", peer.port, "cti", "cti-secret", subscriber=...)
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType

from cti.pbx.wire import AmiMessage, MessageReader

BANNER = b"Asterisk Call Manager/11.0.0\r\n"

Pairs = Sequence[tuple[str, str]]
Reply = Pairs | bytes
Replies = Sequence[Reply]
Handler = Callable[["AmiSession", AmiMessage], Awaitable[Replies | None] | Replies | None]


async def eventually(predicate: Callable[[], bool], within: float = 2.0) -> None:
    """Wait until `predicate()` holds, checked every 5 ms; TimeoutError
    after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        if predicate():
            return
        if loop.time() > deadline:
            raise TimeoutError(f"condition still false after {within} s")
        await asyncio.sleep(0.005)


def encode(pairs: Pairs) -> bytes:
    return "".join(f"{key}: {value}\r\n" for key, value in pairs).encode() + b"\r\n"


def _with_action_id(pairs: Pairs, action_id: str | None) -> Pairs:
    """Asterisk echoes the ActionID as the second header."""
    if action_id is None or any(key.lower() == "actionid" for key, _ in pairs):
        return pairs
    return [pairs[0], ("ActionID", action_id), *pairs[1:]]


def success(message: str, *extra: tuple[str, str]) -> list[Pairs]:
    return [[("Response", "Success"), ("Message", message), *extra]]


def error(message: str) -> list[Pairs]:
    return [[("Response", "Error"), ("Message", message)]]


def core_show_channel(channel: str, uniqueid: str, *, linkedid: str | None = None,
                      context: str = "cti-wait", exten: str = "s", state: int = 6,
                      caller_number: str = "+33612345678", caller_name: str = "Alice Dupont",
                      application: str = "MusicOnHold", bridge: str = "",
                      duration: str = "00:00:05") -> Pairs:
    """The fields of one CoreShowChannel item, in recording 09's order."""
    return [
        ("Channel", channel), ("ChannelState", str(state)),
        ("ChannelStateDesc", "Up" if state == 6 else "Ring"),
        ("CallerIDNum", caller_number), ("CallerIDName", caller_name),
        ("ConnectedLineNum", "<unknown>"), ("ConnectedLineName", "<unknown>"),
        ("Language", "en"), ("AccountCode", ""), ("Context", context), ("Exten", exten),
        ("Priority", "1"), ("Uniqueid", uniqueid), ("Linkedid", linkedid or uniqueid),
        ("Application", application), ("ApplicationData", ""), ("Duration", duration),
        ("BridgeId", bridge),
    ]


def queue_member(queue: str, interface: str, name: str, *, status: int = 1,
                 paused: bool = False, reason: str = "", penalty: int = 0) -> Pairs:
    """The fields of one QueueMember item (QueueStatus), as in recording 09."""
    return [
        ("Queue", queue), ("Name", name), ("Location", interface),
        ("StateInterface", interface), ("Membership", "static"), ("Penalty", str(penalty)),
        ("CallsTaken", "0"), ("LastCall", "0"), ("LastPause", "0"), ("LoginTime", "0"),
        ("InCall", "0"), ("Status", str(status)), ("Paused", "1" if paused else "0"),
        ("PausedReason", reason), ("Wrapuptime", "0"),
    ]


class AmiSession:
    """One client connection."""

    def __init__(self, peer: AmiPeer, index: int, writer: asyncio.StreamWriter) -> None:
        self.peer = peer
        self.index = index
        self.writer = writer
        self.logged_in = False
        self.events = False
        self.frozen = False
        self._writing = asyncio.Lock()

    @property
    def closed(self) -> bool:
        return self.writer.is_closing()

    async def write(self, data: bytes, split_at: int | None = None) -> None:
        """Write bytes; with `split_at`, in two writes far enough apart in
        time to arrive in two reads. Nothing else is written in between."""
        async with self._writing:
            if self.closed:
                return
            if split_at is None:
                self.writer.write(data)
            else:
                self.writer.write(data[:split_at])
                await self.writer.drain()
                await asyncio.sleep(0.05)
                if self.writer.is_closing():
                    return
                self.writer.write(data[split_at:])
            with contextlib.suppress(ConnectionError):
                await self.writer.drain()

    async def send(self, *replies: Reply, action_id: str | None = None) -> None:
        data = b"".join(r if isinstance(r, bytes) else encode(_with_action_id(r, action_id))
                        for r in replies)
        await self.write(data)

    def close(self) -> None:
        self.writer.close()


class AmiPeer:
    """The fake Asterisk. Answers can be replaced per action name with
    `answer(name, handler)`; `silence(name)` leaves an action unanswered."""

    def __init__(self, *, username: str = "cti", secret: str = "cti-secret",
                 login_failure_delay: float = 0.05, login_delay: float = 0.0) -> None:
        self.username = username
        self.secret = secret
        # Asterisk 22 answers a bad login 1 s late and closes (recording 11).
        self.login_failure_delay = login_failure_delay
        self.login_delay = login_delay
        self.port = 0
        self.actions: list[tuple[int, AmiMessage]] = []
        self.sessions: list[AmiSession] = []
        self.channels: list[Pairs] = []
        self.queue_params: list[Pairs] = []
        self.queue_members: list[Pairs] = []
        self.devices: list[tuple[str, str]] = []
        self.variables: dict[tuple[str, str], str] = {}
        self.handlers: dict[str, Handler] = {}
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> AmiPeer:
        await self.listen()
        return self

    async def __aenter__(self) -> AmiPeer:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def listen(self) -> None:
        """Listen (again) on 127.0.0.1, on the same port once one was chosen."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop_listening(self) -> None:
        """New connections are refused; open ones stay."""
        if self._server is not None:
            self._server.close()
            self._server = None
        await asyncio.sleep(0)

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        await self.drop()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    # -- misbehaviour ----------------------------------------------------------

    async def drop(self) -> None:
        """Close every connection (network cut, Asterisk restart)."""
        for session in self.live_sessions:
            session.close()
        for session in self.sessions:
            with contextlib.suppress(ConnectionError):
                await session.writer.wait_closed()

    def freeze(self) -> None:
        """Open connections stay open but answer nothing (half-open TCP)."""
        for session in self.live_sessions:
            session.frozen = True

    def answer(self, name: str, handler: Handler) -> None:
        self.handlers[name.lower()] = handler

    def silence(self, name: str) -> None:
        self.answer(name, lambda session, action: None)

    def restore(self, name: str) -> None:
        self.handlers.pop(name.lower(), None)

    # -- observation -----------------------------------------------------------

    @property
    def live_sessions(self) -> list[AmiSession]:
        return [s for s in self.sessions if not s.closed]

    def received(self, name: str) -> list[AmiMessage]:
        """Every action of that name received, on any connection."""
        return [m for _, m in self.actions if (m.get("Action") or "").lower() == name.lower()]

    @property
    def logins(self) -> int:
        return len(self.received("Login"))

    async def push_event(self, event: Pairs | bytes, *, split_at: int | None = None) -> None:
        """Send an event to every logged-in session with events on."""
        data = event if isinstance(event, bytes) else encode(event)
        for session in self.live_sessions:
            if session.logged_in and session.events and not session.frozen:
                await session.write(data, split_at)

    # -- protocol ----------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        session = AmiSession(self, len(self.sessions), writer)
        self.sessions.append(session)
        self.connections += 1
        framing = MessageReader()
        try:
            await session.write(BANNER)
            while not session.closed:
                data = await reader.read(65536)
                if not data:
                    break
                for action in framing.feed(data):
                    self.actions.append((session.index, action))
                    if not session.frozen:
                        await self._handle(session, action)
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self._tasks.discard(task)

    async def _handle(self, session: AmiSession, action: AmiMessage) -> None:
        name = (action.get("Action") or "").lower()
        action_id = action.action_id
        if name == "login":
            await self._login(session, action)
            return
        if not session.logged_in and name not in ("challenge", "logoff"):
            await session.send(*error("Permission denied"), action_id=action_id)
            return
        handler = self.handlers.get(name) or DEFAULT_ANSWERS.get(name)
        if handler is None:
            replies: Replies | None = error(
                f"Invalid/unknown command: {action.get('Action')}. "
                "Use Action: ListCommands to show available commands.")
        else:
            result = handler(session, action)
            replies = await result if inspect.isawaitable(result) else result
        if replies:
            await session.send(*replies, action_id=action_id)
        if name == "logoff":
            session.close()

    async def _login(self, session: AmiSession, action: AmiMessage) -> None:
        if action.get("Username") != self.username or action.get("Secret") != self.secret:
            await asyncio.sleep(self.login_failure_delay)
            await session.send(*error("Authentication failed"), action_id=action.action_id)
            session.close()
            return
        await asyncio.sleep(self.login_delay)
        session.logged_in = True
        session.events = (action.get("Events") or "on").lower() != "off"
        await session.send(*success("Authentication accepted"), action_id=action.action_id)
        if session.events:
            await session.send([("Event", "FullyBooted"), ("Privilege", "system,all"),
                                ("Uptime", "212"), ("LastReload", "212"),
                                ("Status", "Fully Booted")])


def _event_list(action: AmiMessage, message: str, complete: str,
                items: Sequence[Pairs], *extra: tuple[str, str]) -> list[Reply]:
    action_id = action.action_id or ""
    replies: list[Reply] = [[("Response", "Success"), ("ActionID", action_id),
                             ("EventList", "start"), ("Message", message)]]
    replies += items
    replies.append([("Event", complete), ("ActionID", action_id), ("EventList", "Complete"),
                    ("ListItems", str(len(items))), *extra])
    return replies


def _core_show_channels(session: AmiSession, action: AmiMessage) -> list[Reply]:
    action_id = action.action_id or ""
    items = [[("Event", "CoreShowChannel"), ("ActionID", action_id), *fields]
             for fields in session.peer.channels]
    return _event_list(action, "Channels will follow", "CoreShowChannelsComplete", items)


def _queue_status(session: AmiSession, action: AmiMessage) -> list[Reply]:
    # QueueStatus items carry their ActionID last (recording 09).
    wanted = action.get("Queue")
    action_id = action.action_id or ""
    items: list[Pairs] = []
    for kind, rows in (("QueueParams", session.peer.queue_params),
                       ("QueueMember", session.peer.queue_members)):
        for fields in rows:
            if wanted is None or dict(fields).get("Queue") == wanted:
                items.append([("Event", kind), *fields, ("ActionID", action_id)])
    return _event_list(action, "Queue status will follow", "QueueStatusComplete", items)


def _device_state_list(session: AmiSession, action: AmiMessage) -> list[Reply]:
    action_id = action.action_id or ""
    items = [[("Event", "DeviceStateChange"), ("ActionID", action_id), ("Device", device),
              ("State", state)] for device, state in session.peer.devices]
    return _event_list(action, "Device State Changes will follow", "DeviceStateListComplete",
                       items)


def _status(session: AmiSession, action: AmiMessage) -> list[Reply]:
    action_id = action.action_id or ""
    wanted = action.get("Channel")
    rows = [f for f in session.peer.channels if wanted is None or dict(f)["Channel"] == wanted]
    if wanted is not None and not rows:
        return list(error("No such channel"))
    items = [[("Event", "Status"), ("Privilege", "Call"), *fields, ("ActionID", action_id)]
             for fields in rows]
    return _event_list(action, "Channel status will follow", "StatusComplete", items,
                       ("Items", str(len(items))))


def _getvar(session: AmiSession, action: AmiMessage) -> list[Pairs]:
    variable = action.get("Variable") or ""
    value = session.peer.variables.get((action.get("Channel") or "", variable), "")
    return [[("Response", "Success"), ("Variable", variable), ("Value", value)]]


def _queue_pause(session: AmiSession, action: AmiMessage) -> list[Pairs]:
    paused = (action.get("Paused") or "").lower() in ("true", "1", "yes")
    return success("Interface paused successfully" if paused
                   else "Interface unpaused successfully")


DEFAULT_ANSWERS: dict[str, Handler] = {
    "ping": lambda s, a: [[("Response", "Success"), ("Ping", "Pong"),
                           ("Timestamp", f"{time.time():.6f}")]],
    "logoff": lambda s, a: [[("Response", "Goodbye"), ("Message", "Thanks for all the fish.")]],
    "setvar": lambda s, a: success("Variable Set"),
    "getvar": _getvar,
    "redirect": lambda s, a: success("Redirect successful"),
    "hangup": lambda s, a: success("Channel Hungup"),
    "originate": lambda s, a: success("Originate successfully queued"),
    "atxfer": lambda s, a: success("Atxfer successfully queued"),
    "queueadd": lambda s, a: success("Added interface to queue"),
    "queueremove": lambda s, a: success("Removed interface from queue"),
    "queuepause": _queue_pause,
    "userevent": lambda s, a: success("Event Sent"),
    "coreshowchannels": _core_show_channels,
    "queuestatus": _queue_status,
    "devicestatelist": _device_state_list,
    "status": _status,
}
