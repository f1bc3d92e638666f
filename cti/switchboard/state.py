"""The state every part of the switchboard shares and the moves they all
make on it: the live agents, the tasks and who is offered each, the
detached tasks followed and the pins; reserving an agent for a task,
letting a task wait again, ending an agent's part of a call, publishing a
change, holding a background job, the agent's Redis reservation. The
routing moves every part calls back into (`_run`, `_after_agent`, `_arm`,
`_undo_offer`) are the core's (`core.Switchboard`)."""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import structlog

from cti.calls.model import Call
from cti.calls.tracker import DialplanContexts, Tracker
from cti.center import Center
from cti.pbx.actions import AmiAction
from cti.routing import Agent, AgentState, Assignment, RoutingIndex, Task
from cti.store.reservations import Reservations
from cti.switchboard.events import (
    AgentChanged,
    Listener,
    OnOffer,
    OnResult,
    SwitchboardEvent,
    TaskInfo,
)

if TYPE_CHECKING:
    from cti.switchboard.detached import Follow

log = structlog.get_logger(__name__)

Send = Callable[[AmiAction], Awaitable[object]]
Clock = Callable[[], float]
VipLookup = Callable[[str], Awaitable[tuple[str | None, bool]]]

# Dial statuses after which the agent is paused: the phone rang out. BUSY,
# CHANUNAVAIL, CONGESTION release the agent without a pause.
NO_ANSWER_STATUSES = frozenset({"NOANSWER", "CANCEL", ""})
# A reservation outlives the offer by this margin, and an answered call is
# held this long (extended on each answered call).
RESERVE_MARGIN_S = 10.0
# Asterisk answers an Async Originate when it ends (an OriginateResponse)
# and shows its channel at once. A callback call of which neither came this
# long after the Originate's own timeout was lost (the AMI link dropped
# meanwhile): its agent is not held for it any longer.
ORIGINATE_ANSWER_MARGIN_S = 5.0
CALL_HOLD_S = 4 * 3600.0


class SwitchboardState(ABC):
    """The switchboard's state, built once by its constructor; the parts
    (`DetachedTasks`, `CallActions`, the core) are mixins over it."""

    def __init__(self, center: Center, tracker: Tracker, send: Send,
                 reservations: Reservations, *, clock: Clock,
                 contexts: DialplanContexts | None = None,
                 vip_lookup: VipLookup | None = None) -> None:
        self.center = center
        self.tracker = tracker
        self.index = RoutingIndex(center.policy)
        self.contexts = contexts or tracker.contexts
        self._send = send
        self._reservations = reservations
        self._clock = clock
        self._vip_lookup = vip_lookup
        self.agents: dict[str, Agent] = {}
        self.tasks: dict[str, TaskInfo] = {}      # by task id = call id, while the call lives
        self.offers: dict[str, str] = {}          # task id -> agent offered / talking
        self._detached: dict[str, tuple[OnOffer, OnResult]] = {}  # task id -> feature
        self._following: dict[str, Follow] = {}   # originated call id -> its detached task
        self._pending_pause: dict[str, str] = {}
        # agent id -> tasks pinned to them (transfers by name), released
        # when that agent stops taking calls
        self._pins: dict[str, set[str]] = {}
        self._by_device = {device_of(agent.interface): agent.id for agent in center.agents}
        # call id -> the caller's directory lookup, started when the call
        # came in so that it is done by the time the caller waits
        self._lookups: dict[str, asyncio.Task[tuple[str | None, bool]]] = {}
        self._jobs: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._accepting = True
        # Told of each event inside the decision that made it, in order:
        # what must be on the wire at once (the desk's pop). Keep them quick.
        self.listeners: list[Listener] = []
        # Told of each event right after the decision, in order, once the
        # listeners' messages are out: the wallboard, KPIs and counters.
        self.observers: list[Listener] = [self._log_decision]
        self._observed: list[SwitchboardEvent] = []
        self.decisions = 0
        for agent in center.agents:
            self._put(agent)
        self._by_interface = {agent.interface: agent.id for agent in center.agents}

    # -- the core's routing moves, used by every part ---------------------------

    @abstractmethod
    def _run(self, assignment: Assignment | None, now: float) -> None:
        """Apply a decision of the index, if any."""

    @abstractmethod
    def _after_agent(self, agent: Agent, now: float) -> None:
        """Route for an agent whose state changed."""

    @abstractmethod
    def _arm(self, now: float) -> None:
        """Wake at the index's next deadline."""

    @abstractmethod
    def _log_decision(self, event: SwitchboardEvent) -> None:
        """The log lines of the routing decisions (the first observer)."""

    @abstractmethod
    def _undo_offer(self, agent_id: str, task_id: str, *, requeue: bool) -> None:
        """Take back an offer whose connection failed."""

    # -- bookkeeping -----------------------------------------------------------------

    def _reserve_for(self, agent: Agent, task: Task, now: float) -> Agent:
        """Apply a decision at once: the task leaves the index and the agent
        is reserved for it. The caller publishes the change, in the order
        its listeners need it."""
        self.decisions += 1
        self.index.remove_task(task.id)
        reserved = agent.reserve(now, task.service)
        self.agents[reserved.id] = reserved
        self.index.put_agent(reserved)
        self.offers[task.id] = reserved.id
        return reserved

    def _route(self, task: Task, now: float) -> None:
        """Offer the task at once if an agent is free for it, else let it
        wait in the index (again: it keeps its enqueue time)."""
        if self.index.task(task.id) is None:
            assignment = self.index.assign_arriving(task, now)
            if assignment is None:
                self.index.put_task(task)
            else:
                self._run(assignment, now)
            return
        self.index.put_task(task)
        self._run(self.index.assign_for_task(task.id, now), now)

    def _rang_out(self, info: TaskInfo, agent_id: str, now: float) -> None:
        """The task waits again with its place after `agent_id` did not take
        it (a ring-out, or an offer that could not be made): not offered to
        them again for a while."""
        task = info.task.with_no_answer(agent_id, now)
        self.tasks[task.id] = replace(info, task=task)
        self._route(task, now)

    def _agent(self, agent_id: str) -> Agent:
        agent = self.agents.get(agent_id)
        if agent is None:
            raise KeyError(f"no agent {agent_id!r}")
        return agent

    def _put(self, agent: Agent) -> None:
        self.agents[agent.id] = agent
        self.index.put_agent(agent)
        self._emit(AgentChanged(agent))

    def _offered_agent(self, call_id: str) -> Agent | None:
        agent_id = self.offers.get(call_id)
        return None if agent_id is None else self.agents.get(agent_id)

    def _customer_channel(self, call: Call) -> str | None:
        uniqueid = call.customer
        channel = self.tracker.channels.get(uniqueid) if uniqueid else None
        return None if channel is None else channel.name

    def _emit(self, event: SwitchboardEvent) -> None:
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                log.exception("switchboard.listener_failed",
                              switchboard_event=type(event).__name__)
        if not self.observers:
            return
        if not self._observed:
            try:
                asyncio.get_running_loop().call_soon(self.tell_observers)
            except RuntimeError:  # no loop (a synchronous caller): at once
                self._observed.append(event)
                self.tell_observers()
                return
        self._observed.append(event)

    def tell_observers(self) -> None:
        """Hand the events of the decisions made so far to the observers,
        in order (scheduled by `_emit`; also run when draining)."""
        events, self._observed = self._observed, []
        for event in events:
            for observer in self.observers:
                try:
                    observer(event)
                except Exception:
                    log.exception("switchboard.observer_failed",
                                  switchboard_event=type(event).__name__)

    def _spawn(self, job: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(job)
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)

    def _end_part(self, agent: Agent, now: float) -> Agent:
        """The agent's part of a call is over: a call still offered to them
        is taken back (the caller hung up or went to someone else while it
        rang); after talking, wrap-up (or the pause they asked for during
        the call)."""
        if agent.state in (AgentState.RESERVED, AgentState.RINGING):
            agent = agent.release(now)
            self._put(agent)
        elif agent.state is AgentState.ON_CALL:
            agent = agent.end_call(now)
            pending = self._pending_pause.pop(agent.id, None)
            if pending is not None:
                agent = agent.pause(now, pending)
            self._put(agent)
        return agent

    async def _take(self, agent_id: str, task_id: str, ttl: float, *,
                    id_field: str = "call_id") -> bool:
        """Reserve the agent for the task in Redis for `ttl` seconds. False,
        logged with the task's id as `id_field`, when Redis failed or another
        node holds the agent."""
        ids = {id_field: task_id, "agent_id": agent_id}
        try:
            taken = await self._reservations.take(agent_id, task_id, ttl)
        except Exception:
            log.exception("routing.reservation_failed", **ids)
            return False
        if taken is not None:
            log.warning("routing.agent_held_elsewhere", **ids, holder=taken.holder)
            return False
        return True

    async def _give_back(self, agent_id: str, task_id: str) -> None:
        try:
            await self._reservations.give_back(agent_id, task_id)
        except Exception:
            log.exception("routing.give_back_failed", call_id=task_id, agent_id=agent_id)

    async def _hold(self, agent_id: str, task_id: str) -> None:
        with contextlib.suppress(Exception):
            await self._reservations.extend(agent_id, task_id, CALL_HOLD_S)


def device_of(interface: str) -> str:
    """An agent's device as the tracker names the party on a call
    (`interface_of` a channel): `Local/1001@ctx/n` dials `Local/1001@ctx`."""
    if interface.startswith("Local/"):
        head, _, options = interface.rpartition("/")
        if head != "Local" and options and set(options) <= set("nbmj"):
            return head
    return interface
