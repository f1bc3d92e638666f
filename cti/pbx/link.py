"""The AMI link: the server's one logged-in AMI connection, kept alive.

`AmiLink` owns panoramisk (its `Manager`, protocol and action futures) and
holds its defects 1-12 (`PANORAMISK.md`): it connects and logs in itself,
checks liveness with its own Ping and Pong deadline, reconnects with capped
backoff, resynchronises after every login, fails in-flight actions on a drop
without ever re-sending them, and hands typed events to one subscriber
through an error boundary.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import structlog
from panoramisk import actions as pano_actions
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.manager import Manager
from panoramisk.message import Message

from cti.pbx import events as ev
from cti.pbx.actions import AmiAction
from cti.pbx.commands import CoreShowChannels, DeviceStateList, Ping, QueueStatus
from cti.pbx.errors import (
    AmiActionFailed,
    AmiDisconnected,
    AmiLoginFailed,
    AmiTimeout,
    failure_from_response,
)
from cti.pbx.translate import Translator
from cti.pbx.wire import AmiMessage, MessageReader, WireError, encode_action

log = structlog.get_logger(__name__)

Subscriber = Callable[[ev.PbxEvent], Awaitable[None] | None]
Clock = Callable[[], float]

# Resync after every login: channels first (the tracker's source of truth),
# then queue members and device states.
RESYNC_ACTIONS = (CoreShowChannels(), QueueStatus(), DeviceStateList())


class LinkState(enum.Enum):
    IDLE = "idle"                  # not started
    CONNECTING = "connecting"      # start(): first connect and login
    CONNECTED = "connected"        # logged in; actions may be sent
    RECONNECTING = "reconnecting"  # the connection dropped; retrying with backoff
    FAILED = "failed"              # gave up: login refused too many times in a row
    CLOSED = "closed"              # close() was called, or start() failed


_TRANSITIONS: dict[LinkState, frozenset[LinkState]] = {
    LinkState.IDLE: frozenset({LinkState.CONNECTING, LinkState.CLOSED}),
    LinkState.CONNECTING: frozenset({LinkState.CONNECTED, LinkState.CLOSED}),
    LinkState.CONNECTED: frozenset({LinkState.RECONNECTING, LinkState.FAILED,
                                    LinkState.CLOSED}),
    LinkState.RECONNECTING: frozenset({LinkState.CONNECTED, LinkState.FAILED,
                                       LinkState.CLOSED}),
    LinkState.FAILED: frozenset({LinkState.CLOSED}),
    LinkState.CLOSED: frozenset(),
}


class _Message(Message):  # type: ignore[misc]
    """A panoramisk Message that keeps the exact AmiMessage it came from and
    the time it was received. The rest of the code only reads `raw`: a
    panoramisk Message answers '' for any misspelt header (defect 11)."""

    def __init__(self, raw: AmiMessage, at: float) -> None:
        headers: dict[str, str | list[str]] = {}
        for key, value in raw.pairs:
            previous = headers.get(key)
            if previous is None:
                headers[key] = value
            elif isinstance(previous, list):
                previous.append(value)
            else:
                headers[key] = [previous, value]
        super().__init__(headers)
        self.raw = raw
        self.at = at


class _Action(pano_actions.Action):  # type: ignore[misc]
    """A panoramisk Action with our wire form and our completion rule.

    panoramisk decides when an answer is complete from its message text and
    the `Async` header: a sync Originate without `Async` raises KeyError in
    `data_received` and kills the link (defect 2), an Async Originate waits
    for an OriginateResponse that an events-off session never gets
    (defect 3), QueueAdd waits on `Added interface to queue` forever
    (defect 4), and a list action answered by an error never resolves. Here
    the rule is explicit: a single-response action ends with its response;
    a list action ends with its `list_complete` event, or with an error
    response.
    """

    def __init__(self, action: AmiAction, action_id: str) -> None:
        headers: dict[str, str | list[str]] = {"Action": action.name, "ActionID": action_id}
        for key, value in action.fields:
            previous = headers.get(key)
            if previous is None:
                headers[key] = value
            elif isinstance(previous, list):
                previous.append(value)
            else:
                headers[key] = [previous, value]
        super().__init__(headers, as_list=action.list_complete is not None)
        self.name = action.name
        self.list_complete = action.list_complete
        # Our encoding, in the caller's field order; it also refuses CR/LF.
        self.wire = encode_action(action.name, (("ActionID", action_id), *action.fields))
        self.answer: list[_Message] = []

    def __str__(self) -> str:
        return self.wire.decode("utf-8")

    def __repr__(self) -> str:
        # panoramisk logs actions with %r; a Login carries the secret.
        return f"<AmiAction {self.name} {self.action_id}>"

    def accepts(self, message: _Message) -> bool:
        """Whether a message with our ActionID is part of our answer. An
        event with our ActionID before the response of a single-response
        action (an early OriginateResponse) is an event, not an answer."""
        if message.raw.response is not None:
            return not self.answer
        return self.list_complete is not None and bool(self.answer)

    def take(self, message: _Message) -> bool:
        """Add one message of the answer; True once the answer is complete."""
        self.answer.append(message)
        if len(self.answer) == 1:
            complete = (self.list_complete is None
                        or failure_from_response(self.name, message.raw) is not None)
        else:
            complete = (message.raw.event or "").lower() == (self.list_complete or "").lower()
        if complete and not self.future.done():
            self.future.set_result(list(self.answer))
        return complete


class _Protocol(AMIProtocol):  # type: ignore[misc]
    """panoramisk's protocol with bytes framed and decoded by us.

    panoramisk decodes each TCP chunk alone with errors='ignore', so a UTF-8
    character cut by a read boundary disappears (defect 7); that happens
    inside `data_received` and cannot be fixed from outside, hence this
    subclass: bytes are buffered by `MessageReader` and whole messages are
    decoded. Each message is handled under its own error boundary, so one
    failing message never closes the transport nor loses the rest of the
    read (defect 8). On close, every action still waiting fails with
    AmiDisconnected and nothing is queued for replay (defect 1).
    """

    closed: bool
    version: str | None
    responses: dict[str, _Action]

    def __init__(self, manager: _Manager, clock: Clock, on_lost: Callable[[], None]) -> None:
        super().__init__()
        self.closed = False
        self._manager = manager
        self._clock = clock
        self._on_lost = on_lost
        self._reader = MessageReader()
        self.lost_reason = "connection closed by Asterisk"
        self._lost_reported = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # Wired here, not after create_connection returns: the banner may
        # be read before the connecting coroutine resumes.
        self.factory = self._manager
        self.encoding = "utf-8"
        self.log = logging.getLogger("cti.pbx.panoramisk")

    def data_received(self, data: bytes) -> None:
        at = self._clock()
        try:
            messages = self._reader.feed(data)
        except WireError as exc:
            log.error("ami.wire_error", reason=str(exc))
            self.close(f"wire error: {exc}")
            return
        for raw in messages:
            banner = raw.get("Banner")
            if banner is not None and len(raw.pairs) == 1:
                self.version = banner.partition("/")[2].strip()
                continue
            try:
                if self._is_plain_event(raw):
                    # The hot path: an event no action waits for goes
                    # straight to the link, without panoramisk's per-message
                    # header dict and '*' dispatch (the link's only handler).
                    self._manager.on_event(raw, at)
                    if (raw.event or "").lower() == "shutdown":
                        self.close("Asterisk is shutting down")
                else:
                    self.handle_message(_Message(raw, at))
            except Exception:
                log.exception("ami.message_failed", ami_event=raw.event,
                              ami_response=raw.response)

    def _is_plain_event(self, raw: AmiMessage) -> bool:
        if raw.event is None:
            return False
        action_id = raw.action_id
        return not action_id or action_id not in self.responses

    def handle_message(self, message: _Message) -> None:
        action_id = message.raw.action_id
        pending = self.responses.get(action_id) if action_id else None
        if action_id and isinstance(pending, _Action) and pending.accepts(message):
            if pending.take(message):
                self.responses.pop(action_id, None)
            return
        if message.raw.event is None:
            return  # the answer of an action we stopped waiting for
        self.factory.dispatch(message)
        if message.raw.event.lower() == "shutdown":
            self.close("Asterisk is shutting down")

    def forget(self, action: _Action) -> None:
        self.responses.pop(action.action_id, None)

    def close(self, reason: str | None = None) -> None:
        if reason is not None and not self.closed:
            self.lost_reason = reason
        pending = {id(a): a for a in self.responses.values()}
        self.responses.clear()
        for action in pending.values():
            if not action.future.done():
                action.future.set_exception(AmiDisconnected(action.name, self.lost_reason))
        # panoramisk queues unanswered actions here and re-sends them on
        # the next FullyBooted (defect 1): never.
        self._manager.awaiting_actions.clear()
        if not self.closed:
            self.closed = True
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and not self.closed:
            self.lost_reason = f"connection lost: {exc}"
        self.close()
        # panoramisk's own connection_lost tells the Manager, which
        # reconnects on a timer that close() cannot stop (defect 10); the
        # link's supervisor is told instead.
        if not self._lost_reported:
            self._lost_reported = True
            self._on_lost()


class _Manager(Manager):  # type: ignore[misc]
    """panoramisk's Manager without its connect, login, keep-alive and
    reconnect timers, which the link replaces (defects 6, 9, 10, 11)."""

    def connect(self, *args: object, **kwargs: object) -> None:
        raise RuntimeError("AmiLink connects and logs in itself (panoramisk defects 6, 10)")

    def send_awaiting_actions(self, *_: object) -> None:
        # Registered by Manager for FullyBooted: it would replay actions
        # caught in a drop (defect 1). The link never replays anything.
        self.awaiting_actions.clear()

    def on_event(self, raw: AmiMessage, at: float) -> None:
        """Where an event that no action waits for goes: set by the link."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class _Received:
    at: float
    message: AmiMessage


@dataclass(frozen=True, slots=True)
class _ListAnswer:
    action: str
    sent_at: float
    answer: tuple[_Message, ...]


class AmiLink:
    """The server's AMI connection. `await start()` returns once logged in
    (or raises); from then on the link keeps itself connected until
    `close()`. Typed events go to `subscriber`; `send()` sends an action
    and returns its answer, or raises a `PbxError`."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        secret: str,
        *,
        subscriber: Subscriber,
        clock: Clock = time.time,
        action_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        ping_interval: float = 10.0,
        pong_timeout: float = 5.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        backoff_jitter: float = 0.1,
        max_login_failures: int = 3,
        queue_size: int = 10_000,
        rng: random.Random | None = None,
    ) -> None:
        if min(action_timeout, connect_timeout, ping_interval, pong_timeout) <= 0:
            raise ValueError("AMI timeouts and intervals must be positive seconds")
        if backoff_initial <= 0 or backoff_max < backoff_initial or backoff_jitter < 0:
            raise ValueError("AMI backoff: need 0 < initial <= max and jitter >= 0")
        if max_login_failures < 1 or queue_size < 1:
            raise ValueError("max_login_failures and queue_size must be at least 1")
        self.host = host
        self.port = port
        self.username = username
        self._secret = secret
        self._subscriber = subscriber
        self._clock = clock
        self.action_timeout = action_timeout
        self.connect_timeout = connect_timeout
        self.ping_interval = ping_interval
        self.pong_timeout = pong_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.backoff_jitter = backoff_jitter
        self.max_login_failures = max_login_failures
        self._rng = rng or random.Random()
        self._queue_size = queue_size
        self.translator = Translator()
        self.state = LinkState.IDLE
        self.failure: BaseException | None = None
        self.events_received = 0
        self.events_dropped = 0
        self.subscriber_failures = 0
        self.reconnects = 0
        self._action_count = 0
        self._manager: _Manager | None = None
        self._protocol: _Protocol | None = None
        self._queue: asyncio.Queue[_Received | _ListAnswer] | None = None
        self._wake = asyncio.Event()
        self._resync_wanted = False
        self._reader: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<AmiLink {self.username}@{self.host}:{self.port} {self.state.value}>"

    @property
    def connected(self) -> bool:
        return self.state is LinkState.CONNECTED

    def unknown_event_types(self) -> dict[str, int]:
        return dict(self.translator.stats.unknown)

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Connect and log in; return once Asterisk accepted the login
        (defect 11). A refused connection, a timeout or a refused login
        raises (AmiDisconnected, AmiTimeout, AmiLoginFailed) and leaves
        nothing running: no retry loop behind the exception (defects 6, 10).
        """
        self._move(LinkState.CONNECTING)
        self._queue = asyncio.Queue(self._queue_size)
        manager = _Manager(loop=asyncio.get_running_loop(), events="on",
                           log=logging.getLogger("cti.pbx.panoramisk"))
        manager.register_event("*", self._on_event)
        manager.on_event = self._on_raw_event  # type: ignore[method-assign]
        self._manager = manager
        try:
            protocol = await self._open()
        except BaseException:
            if self.state is not LinkState.CLOSED:
                self._move(LinkState.CLOSED)
            raise
        if self.state is LinkState.CLOSED:  # close() was called while logging in
            protocol.close("link closed")
            raise AmiDisconnected(None, "closed during start")
        self._reader = self._own(asyncio.create_task(self._read(), name="ami-reader"))
        self._set_connected(protocol)
        self._supervisor = self._own(
            asyncio.create_task(self._supervise(protocol), name="ami-supervisor"))

    async def close(self) -> None:
        """Stop everything: the session, the reconnect loop, the reader.
        Actions still waiting fail with AmiDisconnected (defect 10)."""
        if self.state is LinkState.CLOSED:
            return
        self._move(LinkState.CLOSED)
        tasks = [t for t in (self._supervisor, self._reader) if t is not None]
        for task in tasks:
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        for task, outcome in zip(tasks, outcomes, strict=True):
            if isinstance(outcome, Exception):
                log.error("ami.task_failed", task=task.get_name(), exc_info=outcome)
        # After the tasks: the supervisor sees its cancellation, not the
        # AmiDisconnected of its own in-flight Ping or resync.
        if self._protocol is not None:
            self._protocol.close("link closed")
            self._protocol = None
        log.info("ami.closed", host=self.host, port=self.port)

    # -- actions -----------------------------------------------------------

    async def send(self, action: AmiAction, *, within: float | None = None) -> list[AmiMessage]:
        """Send one action and return its answer: the response, then the
        list items and the complete event for a list action.

        Raises AmiDisconnected at once when not connected (defect 5) or when
        the connection drops before the answer (the action is never
        re-sent, defect 1), AmiTimeout when no answer came `within` seconds
        (default `timeout_for(action)`) and AmiActionFailed on an error
        response.
        """
        protocol = self._protocol
        if self.state is not LinkState.CONNECTED or protocol is None or protocol.closed:
            reason = self.state.value
            if self.failure is not None:
                reason += f": {self.failure}"
            raise AmiDisconnected(action.name, reason)
        answer = await self._exchange(protocol, action, within or self.timeout_for(action))
        return [message.raw for message in answer]

    def timeout_for(self, action: AmiAction) -> float:
        """How long to wait for the answer: `action_timeout`, plus the ring
        time for a synchronous Originate, which Asterisk answers only once
        the call is answered or has failed (recording 07)."""
        fields = {key.lower(): value for key, value in action.fields}
        if action.name.lower() == "originate" and fields.get("async", "").lower() != "true":
            try:
                return self.action_timeout + int(fields.get("timeout", "30000")) / 1000
            except ValueError:
                return self.action_timeout
        return self.action_timeout

    async def _exchange(self, protocol: _Protocol, action: AmiAction,
                        within: float) -> list[_Message]:
        if protocol.closed:
            raise AmiDisconnected(action.name, protocol.lost_reason)
        self._action_count += 1
        pano = _Action(action, f"cti-{self._action_count}-{action.name.lower()}")
        # as_list given explicitly (defects 2-4); completion is _Action's.
        future = protocol.send(pano, as_list=action.list_complete is not None)
        # asyncio.timeout, not wait_for: on 3.11 wait_for returns the
        # future's outcome and swallows a cancellation that arrives as the
        # future completes, which would keep close() waiting.
        try:
            async with asyncio.timeout(within):
                answer: list[_Message] = await future
        except TimeoutError:
            raise AmiTimeout(action.name, within) from None
        finally:
            protocol.forget(pano)
        failure = failure_from_response(action.name, answer[0].raw)
        if failure is not None:
            raise failure
        return answer

    # -- connection --------------------------------------------------------

    async def _open(self) -> _Protocol:
        """One TCP connection, logged in; nothing stays open on failure."""
        assert self._manager is not None
        loop = asyncio.get_running_loop()
        manager = self._manager
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, protocol = await loop.create_connection(
                    lambda: _Protocol(manager, self._clock, self._wake.set),
                    self.host, self.port)
        except (OSError, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            raise AmiDisconnected(None, f"cannot connect to {self.host}:{self.port}: "
                                        f"{reason}") from None
        assert isinstance(protocol, _Protocol)
        manager.protocol = protocol
        login = AmiAction("Login", (("Username", self.username), ("Secret", self._secret),
                                    ("Events", "on")))
        try:
            await self._exchange(protocol, login, self.action_timeout)
        except AmiActionFailed as exc:
            protocol.close("login refused")
            raise AmiLoginFailed(self.username, exc.message) from None
        except BaseException:
            protocol.close("login not completed")
            raise
        return protocol

    def _set_connected(self, protocol: _Protocol, down_s: float | None = None) -> None:
        self._protocol = protocol
        self._move(LinkState.CONNECTED)
        log.info("ami.connected", host=self.host, port=self.port, user=self.username,
                 version=protocol.version, reconnects=self.reconnects, down_s=down_s)

    async def _supervise(self, protocol: _Protocol) -> None:
        """Serve a connection until it drops, then reconnect, until close()
        or until logins keep being refused."""
        loop = asyncio.get_running_loop()
        while True:
            reason = await self._serve(protocol)
            protocol.close(reason)
            self._protocol = None
            lost_at = loop.time()
            self._move(LinkState.RECONNECTING)
            log.warning("ami.disconnected", host=self.host, port=self.port, reason=reason)
            reconnected = await self._reconnect()
            if reconnected is None:
                return
            protocol = reconnected
            self.reconnects += 1
            self._set_connected(protocol, down_s=round(loop.time() - lost_at, 3))

    async def _reconnect(self) -> _Protocol | None:
        # One line per outage, not one per attempt.
        log.info("ami.reconnecting", host=self.host, port=self.port)
        attempt = 0
        login_failures = 0
        while True:
            await asyncio.sleep(self._backoff(attempt))
            attempt += 1
            try:
                return await self._open()
            except AmiLoginFailed as exc:
                login_failures += 1
                if login_failures >= self.max_login_failures:
                    self.failure = exc
                    self._move(LinkState.FAILED)
                    log.error("ami.login_failed", host=self.host, port=self.port,
                              user=self.username, attempts=login_failures, reason=exc.message)
                    return None
            except (AmiDisconnected, AmiTimeout):
                login_failures = 0

    def _backoff(self, attempt: int) -> float:
        base = min(self.backoff_max, self.backoff_initial * 2.0 ** min(attempt, 32))
        return base * (1 + self.backoff_jitter * self._rng.random())

    async def _serve(self, protocol: _Protocol) -> str:
        """Resync, then ping until the connection is lost; returns why."""
        self._resync_wanted = True
        while True:
            if protocol.closed:
                return protocol.lost_reason
            try:
                if self._resync_wanted:
                    self._resync_wanted = False
                    await self._resync(protocol)
                    continue
                try:
                    async with asyncio.timeout(self.ping_interval):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                else:
                    self._wake.clear()
                    continue
                await self._exchange(protocol, Ping().to_action(), self.pong_timeout)
            except AmiTimeout as exc:
                # A half-open connection answers nothing: no Pong, no list
                # (defect 9: panoramisk pings but never checks the Pong).
                log.warning("ami.pong_missed" if exc.action == "Ping" else "ami.resync_timeout",
                            action=exc.action, timeout=exc.timeout)
                return f"no answer to {exc.action} within {exc.timeout:g} s"
            except AmiDisconnected:
                return protocol.lost_reason
            except AmiActionFailed as exc:
                # An error answer still proves the connection is alive.
                log.warning("ami.keepalive_refused", action=exc.action, reason=exc.message)

    async def _resync(self, protocol: _Protocol) -> None:
        """Ask for channels, queue members and device states and feed the
        answers through the translator like any event; the snapshot's
        started_at is when the request was sent."""
        assert self._queue is not None
        for command in RESYNC_ACTIONS:
            action = command.to_action()
            sent_at = self._clock()
            try:
                answer = await self._exchange(protocol, action, self.action_timeout)
            except AmiActionFailed as exc:
                log.warning("ami.resync_refused", action=exc.action, reason=exc.message)
                continue
            await self._queue.put(_ListAnswer(action.name, sent_at, tuple(answer)))

    # -- events ------------------------------------------------------------

    def _on_event(self, manager: object, message: object) -> None:
        """The one '*' callback, for events panoramisk dispatches."""
        if isinstance(message, _Message):
            self._on_raw_event(message.raw, message.at)

    def _on_raw_event(self, raw: AmiMessage, at: float) -> None:
        """Runs inside data_received, so it never raises and never blocks
        (defect 8); it only queues."""
        if self._queue is None:
            return
        self.events_received += 1
        try:
            self._queue.put_nowait(_Received(at, raw))
        except asyncio.QueueFull:
            # The subscriber's model now misses events: count them and
            # resync once the reader catches up.
            self.events_dropped += 1
            if not self._resync_wanted:
                self._resync_wanted = True
                self._wake.set()
                log.warning("ami.events_dropped", queue_size=self._queue_size)

    async def _read(self) -> None:
        assert self._queue is not None
        while True:
            item = await self._queue.get()
            if isinstance(item, _ListAnswer):
                produced = self._translate_list(item)
            else:
                produced = self._translate([(item.message, item.at)])
            for event in produced:
                await self._deliver(event)

    def _translate(self, messages: Iterable[tuple[AmiMessage, float]]) -> list[ev.PbxEvent]:
        produced: list[ev.PbxEvent] = []
        for message, at in messages:
            try:
                produced += self.translator.feed(message, at)
            except Exception:
                log.exception("ami.translate_failed", ami_event=message.event)
        return produced

    def _translate_list(self, item: _ListAnswer) -> list[ev.PbxEvent]:
        # The CoreShowChannels response goes in at the time the request was
        # sent: the translator takes the snapshot's started_at from it. The
        # other responses stay out: the translator would keep a pending
        # list for them that no CoreShowChannelsComplete ever closes.
        first, *rest = item.answer
        head = [(first.raw, item.sent_at)] if item.action == "CoreShowChannels" else []
        produced = self._translate([*head, *((m.raw, m.at) for m in rest)])
        at = item.answer[-1].at
        members = tuple(e for e in produced if isinstance(e, ev.QueueMemberChanged))
        queues = tuple(m.raw.get("Queue") or "" for m in rest if m.raw.event == "QueueParams")
        if any(m.raw.event == "QueueStatusComplete" for m in rest):
            produced.append(ev.QueueMembersSnapshot(at, members, queues))
        if any(m.raw.event == "DeviceStateListComplete" for m in rest):
            devices = tuple(e for e in produced if isinstance(e, ev.DeviceStateChanged))
            produced.append(ev.DeviceStatesSnapshot(at, devices))
        return produced

    async def _deliver(self, event: ev.PbxEvent) -> None:
        """The error boundary: a failing subscriber is logged and the link
        carries on (defect 8)."""
        try:
            result = self._subscriber(event)
            if inspect.isawaitable(result):
                await result
        except Exception:
            self.subscriber_failures += 1
            log.exception("ami.subscriber_failed", pbx_event=type(event).__name__)

    # -- bookkeeping -------------------------------------------------------

    def _move(self, target: LinkState) -> None:
        if target not in _TRANSITIONS[self.state]:
            raise RuntimeError(f"AMI link cannot go from {self.state.value} to {target.value}")
        self.state = target

    def _own(self, task: asyncio.Task[None]) -> asyncio.Task[None]:
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        # A bug, not a PBX condition: say so loudly and stop pretending.
        log.error("ami.task_crashed", task=task.get_name(), exc_info=task.exception())
        if self.state in (LinkState.CONNECTED, LinkState.RECONNECTING):
            self.failure = task.exception()
            self._move(LinkState.FAILED)
            if self._protocol is not None:
                self._protocol.close("link task crashed")
