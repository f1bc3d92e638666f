"""The routing shell: the IO around the pure router.

It owns the live agents and waiting tasks (in a `RoutingIndex`), turns the
tracker's call changes into tasks, asks the index for a decision on every
event that can change the answer (a task arrives or comes back, an agent
becomes free, a relaxation step or a wrap-up ends: a timer set to the
index's next deadline, never a polling loop), reserves the chosen agent
atomically in Redis and moves the call with Setvar + Redirect into
`cti-connect`. It follows the offer through: ring-no-answer (`CTIRona`),
answer, caller hang-up, wrap-up; and it runs the agents' own requests
(login, pause with a reason, ready, end wrap-up, logout) and their actions
on a call: transfer to a service or to a named agent, hang up. It follows
the call when the caller ends up with another agent than the one it
connected (a transfer done on the phone) and when the agent puts the caller
on hold. Work with no call yet (a callback) is a detached task: once an
agent is reserved for it, the switchboard originates the call its feature
asks for and follows it, agent-first or customer-first (`submit`).

Its state changes happen synchronously inside each handler, before any
await, so the index is always settled when the next event comes in; the
AMI and Redis work of an assignment runs as a task of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Literal

import structlog

from cti.calls.dial_status import originated_leg_status
from cti.calls.model import (
    Call,
    CallAgentChanged,
    CallEnded,
    CallStarted,
    CallState,
    CallStateChanged,
)
from cti.calls.tracker import DialplanContexts, Tracker
from cti.center import Center
from cti.pbx import events as ev
from cti.pbx.actions import AmiAction
from cti.pbx.commands import Hangup, Originate, Redirect, Setvar
from cti.pbx.errors import PbxError
from cti.routing import (
    Agent,
    AgentNotAvailable,
    AgentState,
    Assignment,
    HangupFailed,
    IllegalTransition,
    NotAgentsCall,
    Pin,
    RoutingIndex,
    Task,
    TransferFailed,
    TransferToSelf,
    UnknownAgent,
    UnknownCall,
    UnknownService,
)
from cti.store.reservations import Reservations

log = structlog.get_logger(__name__)

Send = Callable[[AmiAction], Awaitable[object]]
Clock = Callable[[], float]
VipLookup = Callable[[str], Awaitable[tuple[str | None, bool]]]

# Dial statuses after which the agent is paused: the phone rang out. BUSY,
# CHANUNAVAIL, CONGESTION release the agent without a pause.
NO_ANSWER_STATUSES = frozenset({"NOANSWER", "CANCEL", ""})
# A reservation outlives the offer by this margin, and an answered call is
# held this long (extended on each answered call).
_RESERVE_MARGIN_S = 10.0
_CALL_HOLD_S = 4 * 3600.0
# Q.850 normal clearing: what an agent's hang-up tells the caller's side
# (recording 06 ends its calls with Hangup Cause 16).
_NORMAL_CLEARING = 16


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """What the shell knows of a task besides the router's view."""

    task: Task
    vip: bool
    customer: str | None


@dataclass(frozen=True, slots=True)
class AgentChanged:
    agent: Agent


@dataclass(frozen=True, slots=True)
class TaskQueued:
    info: TaskInfo
    call: str


@dataclass(frozen=True, slots=True)
class TaskOffered:
    assignment: Assignment
    info: TaskInfo
    call: str


@dataclass(frozen=True, slots=True)
class CallFinished:
    """A routed call ended: its record and how it was classified."""

    event: CallEnded
    info: TaskInfo | None


@dataclass(frozen=True, slots=True)
class DetachedResult:
    """How the call of a task submitted without a call ended (a callback):
    `dial_status` is the customer leg's DIALSTATUS (ANSWER, BUSY, NOANSWER,
    CONGESTION, CHANUNAVAIL...; UNALLOCATED for a number the network does
    not know; ORIGINATE when the Originate was refused), "" when nothing
    says (the agent hung up before it ended). `requeued`: customer-first,
    the customer answered but the reserved agent did not, and the call
    now waits for another agent (the call id is its task id)."""

    task_id: str
    agent_id: str
    call_id: str
    dial_status: str
    at: float
    requeued: bool = False


@dataclass(frozen=True, slots=True)
class Origination:
    """The call a detached task's feature wants placed once an agent is
    reserved: the Originate (its ChannelId is the call id: the channel is
    the first of its call, so it is the Linkedid) and whether it rings the
    customer first (`cti-callback-customer`) or the agent (`cti-callback`)."""

    originate: Originate
    customer_first: bool = False

    def __post_init__(self) -> None:
        if self.originate.channel_id is None:
            raise ValueError("a detached task's Originate needs a ChannelId")

    @property
    def call_id(self) -> str:
        assert self.originate.channel_id is not None
        return self.originate.channel_id


@dataclass(slots=True)
class _Follow:
    """A detached task's call under way: whose it is, and what is known of
    the leg it originated (the customer's, customer-first) to tell how it
    ended (`originated_leg_status`)."""

    task_id: str
    agent_id: str
    origination: Origination
    dial_end: str = ""         # the originated leg's DialEnd status
    reason: int | None = None  # the reason of a failed OriginateResponse
    cause: int | None = None   # the Q.850 cause of the originated leg's Hangup


# The feature behind a detached task: `OnOffer` says which call to place
# for the reserved agent (the switchboard originates it), or None to
# withdraw the task; `OnResult` hears the outcome.
OnOffer = Callable[[Agent, Task], Awaitable[Origination | None]]
OnResult = Callable[[DetachedResult], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class QueueRing:
    """Asterisk's own queue (app_queue, any strategy: ringall rings several
    agents at once) rang an agent for a call, the agent answered it, or
    their phone stopped ringing. The switchboard does not route these
    calls; the desk follows them."""

    call: str
    agent_id: str
    queue: str
    kind: Literal["ringing", "answered", "stopped"]
    at: float


_QUEUE_RING_KINDS: dict[str, Literal["ringing", "answered", "stopped"]] = {
    "called": "ringing", "connected": "answered", "ring_no_answer": "stopped",
    "dumped": "stopped"}


@dataclass(frozen=True, slots=True)
class CallHeld:
    """The agent talking with a routed caller put them on hold (`on_hold`)
    or took them back: the tracker's ON_HOLD state (Hold / Unhold, music on
    hold for the bridged caller)."""

    call: str
    agent_id: str
    on_hold: bool
    at: float


@dataclass(frozen=True, slots=True)
class CallHandedOver:
    """A routed caller now talks with another agent of the center than the
    one the switchboard connected: a transfer done on the phone (attended,
    Atxfer as in recording 06, or blind). `from_agent`'s part of the call
    is over (wrap-up); `to_agent` holds the call now, or None when that
    colleague cannot hold it here (logged out, or on another call)."""

    call: str
    info: TaskInfo
    from_agent: str
    to_agent: str | None
    at: float


SwitchboardEvent = (AgentChanged | TaskQueued | TaskOffered | CallFinished | CallHeld
                    | CallHandedOver | QueueRing)
Listener = Callable[[SwitchboardEvent], None]


class Switchboard:
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
        self._agent_task: dict[str, str] = {}     # agent id -> task id
        self._detached: dict[str, tuple[OnOffer, OnResult]] = {}  # task id -> feature
        self._following: dict[str, _Follow] = {}  # originated call id -> its detached task
        self._dialled: dict[str, str] = {}        # agent-first call id -> customer dial status
        self._pending_pause: dict[str, str] = {}
        # agent id -> tasks pinned to them (transfers by name), released
        # when that agent stops taking calls
        self._pins: dict[str, set[str]] = {}
        self._by_device = {_device(agent.interface): agent.id for agent in center.agents}
        # call id -> the caller's directory lookup, started when the call
        # came in so that it is done by the time the caller waits
        self._lookups: dict[str, asyncio.Task[tuple[str | None, bool]]] = {}
        self._jobs: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._accepting = True
        self.listeners: list[Listener] = []
        self.decisions = 0
        for agent in center.agents:
            self._put(agent)
        self._by_interface = {agent.interface: agent.id for agent in center.agents}

    # -- agents' requests -------------------------------------------------------

    def login(self, agent_id: str) -> Agent:
        return self._agent_move(agent_id, lambda a, now: a.login(now))

    def ready(self, agent_id: str) -> Agent:
        self._pending_pause.pop(agent_id, None)
        return self._agent_move(agent_id, lambda a, now: a.ready(now))

    def end_wrap_up(self, agent_id: str) -> Agent:
        return self._agent_move(agent_id, lambda a, now: a.end_wrap_up(now))

    def pause(self, agent_id: str, reason: str) -> Agent:
        """Pause now; an agent on a call is paused when the call ends. An
        agent being offered a call gives it back: the caller waits again.
        An agent for whom a callback call is already placed is paused when
        it ends: that call cannot be taken back without hanging up on the
        customer (customer-first) or on the agent's ringing phone."""
        agent = self._agent(agent_id)
        if agent.state is AgentState.ON_CALL or self._placed_for(agent_id):
            self._pending_pause[agent_id] = reason
            log.info("agent.pause_pending", agent_id=agent_id, reason=reason)
            return agent
        self._withdraw_offer(agent)
        return self._agent_move(agent_id, lambda a, now: a.pause(now, reason))

    def logout(self, agent_id: str) -> Agent:
        agent = self._agent(agent_id)
        self._withdraw_offer(agent)
        return self._agent_move(agent_id, lambda a, now: a.logout(now))

    def set_skills(self, agent_id: str, skills: dict[str, int]) -> Agent:
        """Change an agent's skills live; the router uses them at once."""
        agent = self._agent(agent_id)
        changed = Agent(id=agent.id, name=agent.name, interface=agent.interface,
                        skills=skills, state=agent.state, state_since=agent.state_since,
                        pause_reason=agent.pause_reason, calls_handled=agent.calls_handled,
                        last_call_end=agent.last_call_end, task_service=agent.task_service)
        self._put(changed)
        self._after_agent(changed, self._clock())
        return changed

    def raise_priority(self, task_id: str, priority_class: str) -> Task:
        """Move a waiting task to another priority class (a supervisor's
        decision); it keeps its enqueue time, and is routed at once if an
        agent is free for it."""
        task = self.index.task(task_id)
        if task is None:
            raise KeyError(f"no waiting task {task_id!r}")
        if priority_class not in self.center.policy.classes:
            raise ValueError(f"no priority class {priority_class!r}")
        changed = replace(task, priority=priority_class)
        info = self.tasks.get(task_id)
        if info is not None:
            self.tasks[task_id] = TaskInfo(changed, info.vip, info.customer)
        now = self._clock()
        self.index.put_task(changed)
        log.info("routing.priority_changed", call_id=task_id, priority=priority_class)
        self._run(self.index.assign_for_task(task_id, now), now)
        self._arm(now)
        return changed

    # -- transfers, escalations, hang-up --------------------------------------------

    def _check_holder(self, call_id: str, by_agent: str) -> Call:
        """The live routed call `by_agent` is talking with, or UnknownCall /
        NotAgentsCall."""
        call = self.tracker.calls.get(call_id)
        if call_id not in self.tasks or call_id in self._detached or call is None:
            raise UnknownCall(call_id)
        holder = self.offers.get(call_id)
        agent = self.agents.get(by_agent)
        if holder != by_agent or agent is None or agent.state is not AgentState.ON_CALL:
            raise NotAgentsCall(call_id, by_agent, holder)
        return call

    def check_transfer(self, call_id: str, service: str, *, by_agent: str) -> None:
        """Raise why `by_agent` cannot send this call to `service` now:
        UnknownCall, NotAgentsCall (not talking with them), UnknownService."""
        self._check_holder(call_id, by_agent)
        if service not in self.center.policy.services:
            raise UnknownService(service)

    def check_transfer_to_agent(self, call_id: str, agent_id: str, *, by_agent: str) -> None:
        """Raise why `by_agent` cannot send this call to agent `agent_id`
        now: as `check_transfer`, or UnknownAgent, TransferToSelf,
        AgentNotAvailable (logged out or paused). A busy agent is fine: the
        caller waits for them (`transfer_to_agent`)."""
        self._check_holder(call_id, by_agent)
        if agent_id == by_agent:
            raise TransferToSelf(by_agent)
        target = self.agents.get(agent_id)
        if target is None:
            raise UnknownAgent(agent_id)
        if target.state in (AgentState.LOGGED_OUT, AgentState.PAUSED):
            raise AgentNotAvailable(agent_id, target.state, target.pause_reason)

    async def transfer_to_service(self, call_id: str, service: str, *, by_agent: str,
                                  note: str | None = None) -> None:
        """Send a caller talking with `by_agent` to another service (an
        escalation is a transfer to the service's `escalation`). The caller
        is redirected to the waiting context, which hangs up the agent's
        leg; the agent's call ends as usual (wrap-up for their service) but
        the call lives on; the task waits again for the new service with its
        original enqueue time and VIP class. Raises as `check_transfer`, or
        TransferFailed when the PBX would not move the caller (nothing
        changed then). `note` is logged; the desk keeps notes for the pop."""
        self.check_transfer(call_id, service, by_agent=by_agent)
        before = self.tasks[call_id]
        task = await self._send_back(call_id, by_agent,
                                     lambda task, now: replace(task, service=service))
        if task is not None:
            log.info("routing.transferred", call_id=call_id, agent_id=by_agent,
                     service_from=before.task.service, service=service, vip=before.vip,
                     with_note=bool(note))

    async def transfer_to_agent(self, call_id: str, agent_id: str, *, by_agent: str,
                                note: str | None = None) -> None:
        """Send a caller talking with `by_agent` to agent `agent_id` (a
        blind transfer by name): as `transfer_to_service`, but the task,
        in its own service with its place and VIP class, is pinned to that
        agent for `transfer_wait_seconds`. It rings them as soon as they are
        free; if they let it ring out, stop taking calls or stay busy past
        the wait, the caller is back in their service's queue. Raises as
        `check_transfer_to_agent`, or TransferFailed."""
        self.check_transfer_to_agent(call_id, agent_id, by_agent=by_agent)
        wait = self.center.transfer_wait_seconds

        def pinned(task: Task, now: float) -> Task:
            return replace(task, pin=Pin(agent_id, by_agent, now, now + wait))

        task = await self._send_back(call_id, by_agent, pinned)
        if task is not None:
            self._pins.setdefault(agent_id, set()).add(call_id)
            log.info("routing.transferred", call_id=call_id, agent_id=by_agent,
                     to_agent=agent_id, service=task.service, vip=task.priority == "vip",
                     wait_s=wait, with_note=bool(note))

    async def _send_back(self, call_id: str, by_agent: str,
                         retask: Callable[[Task, float], Task]) -> Task | None:
        """Redirect the caller talking with `by_agent` to the waiting
        context and let their task (as `retask` makes it) wait again; the
        agent's part of the call ends. None when the call ended or moved
        while the Redirect was on its way."""
        call = self._check_holder(call_id, by_agent)
        channel = self._customer_channel(call)
        if channel is None:
            raise UnknownCall(call_id)
        # The PBX first: if the Redirect fails the caller is still with the
        # agent, and nothing here must have changed.
        try:
            await self._send(Redirect(channel, self.contexts.wait, "s").to_action())
        except PbxError as exc:
            log.warning("routing.transfer_failed", call_id=call_id, agent_id=by_agent,
                        reason=str(exc))
            raise TransferFailed(call_id, str(exc)) from exc
        info = self.tasks.get(call_id)
        if info is None or self.offers.get(call_id) != by_agent:
            return None
        now = self._clock()
        # The offer is cleared before the task waits again: from here the
        # caller's WAITING change requeues it (`_on_waiting`).
        del self.offers[call_id]
        self._agent_task.pop(by_agent, None)
        self._spawn(self._give_back(by_agent, call_id))
        agent = self._end_part(self.agents[by_agent], now)
        task = info.task
        sticky = None if task.preferred_agent == by_agent else task.preferred_agent
        # A pin that brought the caller to this agent is spent.
        task = retask(replace(task, preferred_agent=sticky, pin=None), now)
        self.tasks[call_id] = TaskInfo(task, info.vip, info.customer)
        if call.state is CallState.WAITING:
            # The caller reached cti-wait during the Redirect: that WAITING
            # change was ignored while the offer stood; requeue now.
            self.index.put_task(task)
            self._run(self.index.assign_for_task(call_id, now), now)
        self._after_agent(agent, now)
        return task

    def _end_part(self, agent: Agent, now: float) -> Agent:
        """The agent's part of a call is over while the call lives on:
        wrap-up (or the pause they asked for during the call)."""
        if agent.state is AgentState.ON_CALL:
            agent = agent.end_call(now)
            pending = self._pending_pause.pop(agent.id, None)
            if pending is not None:
                agent = agent.pause(now, pending)
            self._put(agent)
        return agent

    async def hang_up(self, call_id: str, *, by_agent: str) -> None:
        """Hang up the caller talking with `by_agent` (AMI Hangup of the
        caller's channel, normal clearing). The call then ends as any call:
        the agent wraps up, the record says the caller did not hang up.
        Raises UnknownCall, NotAgentsCall, or HangupFailed when the PBX
        refused (nothing changed)."""
        call = self._check_holder(call_id, by_agent)
        channel = self._customer_channel(call)
        if channel is None:
            raise UnknownCall(call_id)
        try:
            await self._send(Hangup(channel, cause=_NORMAL_CLEARING).to_action())
        except PbxError as exc:
            log.warning("routing.hangup_failed", call_id=call_id, agent_id=by_agent,
                        reason=str(exc))
            raise HangupFailed(call_id, str(exc)) from exc
        log.info("routing.hung_up", call_id=call_id, agent_id=by_agent)

    def _agent(self, agent_id: str) -> Agent:
        agent = self.agents.get(agent_id)
        if agent is None:
            raise KeyError(f"no agent {agent_id!r}")
        return agent

    def _agent_move(self, agent_id: str, move: Callable[[Agent, float], Agent]) -> Agent:
        now = self._clock()
        agent = move(self._agent(agent_id), now)
        self._put(agent)
        log.info("agent.state", agent_id=agent_id, state=agent.state.value,
                 reason=agent.pause_reason)
        self._after_agent(agent, now)
        return agent

    def _after_agent(self, agent: Agent, now: float) -> None:
        if agent.state is AgentState.AVAILABLE:
            self._run(self.index.assign_for_agent(agent.id, now), now)
        elif agent.state in (AgentState.PAUSED, AgentState.LOGGED_OUT) and agent.id in self._pins:
            self._unpin(agent, now)
        self._arm(now)

    def _unpin(self, agent: Agent, now: float) -> None:
        """The agent callers were transferred to stopped taking calls: those
        callers go back to their service's queue at once, with their place."""
        for task_id in sorted(self._pins.pop(agent.id, ())):
            info = self.tasks.get(task_id)
            if info is None or info.task.pin is None or info.task.pin.agent != agent.id:
                continue
            task = replace(info.task, pin=None)
            self.tasks[task_id] = TaskInfo(task, info.vip, info.customer)
            log.info("routing.pin_released", call_id=task_id, agent_id=agent.id,
                     state=agent.state.value, reason=agent.pause_reason)
            if self.index.task(task_id) is not None:
                self.index.put_task(task)
                self._run(self.index.assign_for_task(task_id, now), now)

    def _withdraw_offer(self, agent: Agent) -> None:
        """The agent will not take the call offered to them: the caller goes
        back to waiting with their place (the task keeps its enqueue time)."""
        if agent.state not in (AgentState.RESERVED, AgentState.RINGING):
            return
        task_id = self._agent_task.pop(agent.id, None)
        if task_id is None:
            return
        if self.offers.get(task_id) == agent.id:
            del self.offers[task_id]
        self._spawn(self._give_back(agent.id, task_id))
        info = self.tasks.get(task_id)
        call = self.tracker.calls.get(task_id)
        if info is None or call is None:
            return
        # Requeued when the caller is back in cti-wait (the tracker's
        # WAITING change), with the original enqueue time.
        channel = self._customer_channel(call)
        if channel is not None:
            self._spawn(self._redirect_back(channel, call.id))

    async def _redirect_back(self, channel: str, call: str) -> None:
        try:
            await self._send(Redirect(channel, self.contexts.wait, "s").to_action())
        except PbxError as exc:
            log.warning("routing.redirect_back_failed", call_id=call, reason=str(exc))

    # -- events from the PBX ------------------------------------------------------

    async def on_event(self, event: ev.PbxEvent, changes: list[object]) -> None:
        """One typed PBX event and the tracker's changes for it."""
        if self._following:
            self._follow_detached(event, changes)
        for change in changes:
            if isinstance(change, CallStarted | CallStateChanged):
                self._look_up_early(change.call)
            if isinstance(change, CallStateChanged):
                await self._on_call_state(change)
            elif isinstance(change, CallAgentChanged):
                self._on_agent_changed(change)
            elif isinstance(change, CallEnded):
                self._on_call_ended(change)
        if isinstance(event, ev.DialplanStep) \
                and event.kind is ev.DialplanStepKind.RING_NO_ANSWER:
            self._on_rona(event)
        elif isinstance(event, ev.QueueAgentEvent):
            self._on_queue_ring(event)
        elif isinstance(event, ev.CallerIdChanged):
            # An originated or forwarded call learns its caller after it
            # started (Asterisk's NewCallerid): look them up now.
            call = self.tracker.call_of(event.channel.uniqueid)
            if call is not None:
                self._look_up_early(call.id)

    async def _on_call_state(self, change: CallStateChanged) -> None:
        call = self.tracker.calls.get(change.call)
        if call is None:
            return
        if change.state is CallState.WAITING:
            await self._on_waiting(call, change.at)
        elif change.state is CallState.IN_IVR:
            # A waiting caller in a menu run from the waiting context (the
            # callback offer): nobody is offered them until they are back
            # in waiting, where the task is queued again with its place.
            self.step_out(call.id)
        elif change.state is CallState.CONNECTING:
            agent = self._offered_agent(call.id)
            if agent is not None and agent.state is AgentState.RESERVED:
                self._put(agent.ring(change.at))
        elif change.state is CallState.TALKING:
            if change.previous is CallState.ON_HOLD:
                self._on_hold(call.id, False, change.at)
            self._on_answered(call, change.at)
        elif change.state is CallState.ON_HOLD:
            self._on_hold(call.id, True, change.at)

    def _on_hold(self, call_id: str, on_hold: bool, at: float) -> None:
        agent = self._offered_agent(call_id)
        if agent is None or agent.state is not AgentState.ON_CALL:
            return
        log.info("routing.hold", call_id=call_id, agent_id=agent.id, on_hold=on_hold)
        self._emit(CallHeld(call_id, agent.id, on_hold, at))

    def _on_agent_changed(self, change: CallAgentChanged) -> None:
        """The caller is bridged with another party than before. When that
        is another agent's phone than the one the switchboard offered the
        call to, the call was transferred on the phone: the offered agent's
        part ends, and the agent now on the call holds it."""
        call_id = change.call
        holder_id = self.offers.get(call_id)
        info = self.tasks.get(call_id)
        if holder_id is None or info is None or call_id in self._detached:
            return
        taker_id = self._by_device.get(_device(change.agent))
        if taker_id == holder_id:
            return  # the offered agent answering (after a transfer by the server)
        if taker_id is None:
            # Not a colleague's phone: an outside number, or the same phone
            # under another channel name (a Local channel optimised away
            # leaves its PJSIP channel in the bridge). Only a colleague taking
            # the caller ends the agent's part; otherwise the end of the call.
            log.info("routing.party_not_an_agent", call_id=call_id, agent_id=holder_id,
                     party=change.agent)
            return
        now = change.at
        del self.offers[call_id]
        self._agent_task.pop(holder_id, None)
        self._spawn(self._give_back(holder_id, call_id))
        holder = self.agents[holder_id]
        if holder.state in (AgentState.RESERVED, AgentState.RINGING):
            holder = holder.release(now)  # someone else took the caller
            self._put(holder)
        else:
            holder = self._end_part(holder, now)
        taker = self._take_over(taker_id, info, call_id, now)
        log.info("routing.handed_over", call_id=call_id, from_agent=holder_id,
                 agent_id=None if taker is None else taker.id, party=change.agent)
        self._emit(CallHandedOver(call_id, info, holder_id,
                                  None if taker is None else taker.id, now))
        if taker is not None:
            self._put(taker.answer(now))
            self._spawn(self._claim(taker.id, call_id))
        self._after_agent(holder, now)

    def _take_over(self, agent_id: str, info: TaskInfo, call_id: str,
                   now: float) -> Agent | None:
        """Reserve the agent who took a caller over on their phone, whatever
        the server thought they were doing; None when they cannot hold it
        here (logged out, or on another call)."""
        agent = self.agents[agent_id]
        if agent.state in (AgentState.LOGGED_OUT, AgentState.ON_CALL):
            log.warning("routing.handover_not_followed", call_id=call_id, agent_id=agent_id,
                        state=agent.state.value)
            return None
        if agent.state in (AgentState.RESERVED, AgentState.RINGING):
            self._withdraw_offer(agent)  # that other caller waits again, with their place
            agent = agent.release(now)
        elif agent.state is AgentState.WRAP_UP:
            agent = agent.end_wrap_up(now)
        elif agent.state is AgentState.PAUSED and agent.pause_reason is not None:
            # Paused again once this call is over.
            self._pending_pause[agent_id] = agent.pause_reason
            agent = agent.ready(now)
        reserved = agent.reserve(now, info.task.service)
        self._put(reserved)
        self.offers[call_id] = agent_id
        self._agent_task[agent_id] = call_id
        return reserved

    async def _claim(self, agent_id: str, task_id: str) -> None:
        """The Redis reservation of an agent who took a call over."""
        try:
            taken = await self._reservations.take(agent_id, task_id, _CALL_HOLD_S)
        except Exception:
            log.exception("routing.reservation_failed", call_id=task_id, agent_id=agent_id)
            return
        if taken is not None:
            log.warning("routing.agent_held_elsewhere", call_id=task_id, agent_id=agent_id,
                        holder=taken.holder)

    def _on_queue_ring(self, event: ev.QueueAgentEvent) -> None:
        kind = _QUEUE_RING_KINDS.get(event.kind)
        call = None if event.caller is None else self.tracker.call_of(event.caller)
        agent_id = self._by_interface.get(event.interface)
        if kind is None or call is None or agent_id is None:
            return
        self._emit(QueueRing(call.id, agent_id, event.queue, kind, event.at))

    async def _on_waiting(self, call: Call, at: float) -> None:
        if call.queue is not None:
            return  # in Asterisk's own queue: app_queue distributes it
        info = self.tasks.get(call.id)
        if info is None:
            if not self._accepting:
                return
            info = await self._new_task(call, at)
            if call.id not in self.tracker.calls:  # hung up during the lookup
                return
            self.tasks[call.id] = info
            log.info("routing.task_queued", call_id=call.id, service=info.task.service,
                     priority=info.task.priority, vip=info.vip)
            self._emit(TaskQueued(info, call.id))
        elif call.id in self.offers:
            return  # the RONA handler requeues it
        now = self._clock()
        self.index.put_task(info.task)
        self._run(self.index.assign_for_task(info.task.id, now), now)
        self._arm(now)

    def _look_up_early(self, call_id: str) -> None:
        """Start the caller's directory lookup as soon as the number is
        known (the IVR runs meanwhile), not when the caller starts waiting:
        the task is queued, and the pop built, without waiting on Redis."""
        if self._vip_lookup is None or call_id in self._lookups or call_id in self.tasks \
                or not self._accepting:
            return
        call = self.tracker.calls.get(call_id)
        if call is None or not call.caller_number or call.state not in (
                CallState.RINGING, CallState.IN_IVR):
            return
        self._lookups[call_id] = asyncio.ensure_future(self._vip_lookup(call.caller_number))

    async def _new_task(self, call: Call, at: float) -> TaskInfo:
        number = call.caller_number or ""
        customer, vip = (None, False)
        early = self._lookups.pop(call.id, None)
        if self._vip_lookup is not None and number:
            try:
                customer, vip = await (early if early is not None
                                       else self._vip_lookup(number))
            except Exception:  # a directory outage must not lose the call
                log.exception("routing.customer_lookup_failed", call_id=call.id)
        requested = call.service or call.variables.get("CTI_SERVICE")
        vip = (vip or call.variables.get("CTI_PRIORITY", "").lower() == "vip"
               or (call.did or "") in self.center.vip_numbers)
        service = self.center.service_for(requested, call.did)
        task = Task(id=call.id, service=service,
                    enqueued_at=call.wait_started_at or at,
                    priority="vip" if vip else None, customer=customer)
        return TaskInfo(task, vip, customer)

    def _on_answered(self, call: Call, at: float) -> None:
        agent = self._offered_agent(call.id)
        if agent is None or agent.state not in (AgentState.RESERVED, AgentState.RINGING):
            return
        self._put(agent.answer(at))
        log.info("routing.answered", call_id=call.id, agent_id=agent.id)
        self._spawn(self._hold(agent.id, call.id))

    async def _hold(self, agent_id: str, task_id: str) -> None:
        with contextlib.suppress(Exception):
            await self._reservations.extend(agent_id, task_id, _CALL_HOLD_S)

    def _on_rona(self, event: ev.DialplanStep) -> None:
        if event.channel is None:
            return
        call = self.tracker.call_of(event.channel.uniqueid)
        if call is None:
            return
        agent_id = self.offers.pop(call.id, None)
        info = self.tasks.get(call.id)
        if agent_id is None or info is None:
            return
        self._agent_task.pop(agent_id, None)
        status = event.dial_status
        now = event.at
        agent = self.agents.get(agent_id)
        if agent is not None and agent.state in (AgentState.RESERVED, AgentState.RINGING):
            agent = agent.release(now)
            if status in NO_ANSWER_STATUSES:
                agent = agent.pause(now, self.center.no_answer_pause_reason)
            self._put(agent)
            log.info("routing.ring_no_answer", call_id=call.id, agent_id=agent_id,
                     dial_status=status or "unknown", paused=agent.state is AgentState.PAUSED)
        self._spawn(self._give_back(agent_id, call.id))
        info = TaskInfo(info.task.with_no_answer(agent_id, now), info.vip, info.customer)
        self.tasks[call.id] = info
        # Back in the queue with its original enqueue time: its place is kept.
        self.index.put_task(info.task)
        self._run(self.index.assign_for_task(info.task.id, now), now)
        if agent is not None:
            self._after_agent(agent, now)
        self._arm(now)

    def _on_call_ended(self, change: CallEnded) -> None:
        call_id = change.record.call
        early = self._lookups.pop(call_id, None)
        if early is not None:
            early.cancel()
            if early.done() and not early.cancelled():
                early.exception()  # retrieved: the caller is gone, nobody needs it
        info = self.tasks.pop(call_id, None)
        self.index.remove_task(call_id)
        if info is not None and info.task.pin is not None:
            pinned = self._pins.get(info.task.pin.agent)
            if pinned is not None:
                pinned.discard(call_id)
                if not pinned:
                    del self._pins[info.task.pin.agent]
        agent_id = self.offers.pop(call_id, None)
        now = change.at
        if agent_id is not None:
            self._agent_task.pop(agent_id, None)
            agent = self.agents.get(agent_id)
            if agent is not None:
                self._spawn(self._give_back(agent_id, call_id))
                if agent.state is AgentState.ON_CALL:
                    agent = agent.end_call(now)
                    pending = self._pending_pause.pop(agent_id, None)
                    if pending is not None:
                        agent = agent.pause(now, pending)
                elif agent.state in (AgentState.RESERVED, AgentState.RINGING):
                    agent = agent.release(now)  # the caller hung up while it rang
                self._put(agent)
                self._after_agent(agent, now)
        self._emit(CallFinished(change, info))

    # -- decisions ----------------------------------------------------------------

    def _run(self, assignment: Assignment | None, now: float) -> None:
        if assignment is not None:
            self._offer(assignment, now)

    def _offer(self, assignment: Assignment, now: float) -> None:
        """Apply a decision to the index at once, then do its IO."""
        if assignment.task_id in self._detached:
            self._offer_detached(assignment, now)
            return
        info = self.tasks.get(assignment.task_id)
        agent = self.agents.get(assignment.agent_id)
        call = self.tracker.calls.get(assignment.task_id)
        if info is None or agent is None or call is None:
            self.index.remove_task(assignment.task_id)
            return
        channel = self._customer_channel(call)
        if channel is None:
            self.index.remove_task(assignment.task_id)
            return
        self.decisions += 1
        self.index.remove_task(info.task.id)
        reserved = agent.reserve(now, info.task.service)
        self.agents[agent.id] = reserved
        self.index.put_agent(reserved)
        self.offers[call.id] = agent.id
        self._agent_task[agent.id] = call.id
        # The offer first: the agent's pop is the first thing on the wire.
        self._emit(TaskOffered(assignment, info, call.id))
        self._emit(AgentChanged(reserved))
        log.info("routing.assigned", call_id=call.id, agent_id=agent.id, rule=assignment.rule,
                 waited_s=round(assignment.waited_seconds, 1),
                 priority=round(assignment.effective_priority, 1),
                 passed_over=[f"{a}: {why}" for a, why in assignment.passed_over])
        self._spawn(self._connect(reserved, info, channel))

    async def _connect(self, agent: Agent, info: TaskInfo, channel: str) -> None:
        service = self.center.policy.services[info.task.service]
        ring = service.ring_timeout_seconds
        task_id = info.task.id
        try:
            taken = await self._reservations.take(agent.id, task_id, ring + _RESERVE_MARGIN_S)
        except Exception:
            log.exception("routing.reservation_failed", call_id=task_id, agent_id=agent.id)
            self._undo_offer(agent.id, task_id, requeue=True)
            return
        if taken is not None:
            log.warning("routing.agent_held_elsewhere", call_id=task_id, agent_id=agent.id,
                        holder=taken.holder)
            self._undo_offer(agent.id, task_id, requeue=True)
            return
        variables = (("CTI_AGENT", agent.id), ("CTI_AGENT_DEVICE", agent.interface),
                     ("CTI_RING_TIMEOUT", str(round(ring))), ("CTI_TASK", task_id),
                     ("CTI_SERVICE", info.task.service))
        try:
            actions = [Setvar(channel, name, value).to_action() for name, value in variables]
            actions.append(Redirect(channel, self.contexts.connect, agent.id).to_action())
            # One AMI session runs its actions in order: send the variables
            # together, then the Redirect that reads them.
            await asyncio.gather(*(self._send(action) for action in actions[:-1]))
            await self._send(actions[-1])
        except (PbxError, ValueError) as exc:
            log.warning("routing.connect_failed", call_id=task_id, agent_id=agent.id,
                        reason=str(exc))
            await self._give_back(agent.id, task_id)
            self._undo_offer(agent.id, task_id, requeue=task_id in self.tracker.calls)

    def _undo_offer(self, agent_id: str, task_id: str, *, requeue: bool) -> None:
        now = self._clock()
        if self.offers.get(task_id) == agent_id:
            del self.offers[task_id]
            self._agent_task.pop(agent_id, None)
        agent = self.agents.get(agent_id)
        if agent is not None and agent.state in (AgentState.RESERVED, AgentState.RINGING):
            # Not offered again for this task for a while (as a ring-out).
            agent = agent.release(now)
            self._put(agent)
        info = self.tasks.get(task_id)
        if requeue and info is not None:
            info = TaskInfo(info.task.with_no_answer(agent_id, now), info.vip, info.customer)
            self.tasks[task_id] = info
            self.index.put_task(info.task)
            self._run(self.index.assign_for_task(task_id, now), now)
        if agent is not None:
            self._after_agent(agent, now)
        self._arm(now)

    async def _give_back(self, agent_id: str, task_id: str) -> None:
        try:
            await self._reservations.give_back(agent_id, task_id)
        except Exception:
            log.exception("routing.give_back_failed", call_id=task_id, agent_id=agent_id)

    # -- waiting callers who leave the line ------------------------------------------

    def step_out(self, call_id: str) -> TaskInfo | None:
        """Take a waiting caller's task out of the router for a while (they
        are in a menu). Back in the waiting context `_on_waiting` queues it
        again, with its enqueue time. The task, or None when the call has
        none or an agent is being offered it."""
        info = self.tasks.get(call_id)
        if info is None or call_id in self.offers or call_id in self._detached:
            return None
        self.index.remove_task(call_id)
        return info

    def withdraw_call(self, call_id: str) -> TaskInfo | None:
        """Take a waiting caller's task out of routing for good: they chose
        to be called back, and the callback carries the task's enqueue time.
        The end of their call then counts as no routed call. The task, or
        None as `step_out`."""
        info = self.step_out(call_id)
        if info is None:
            return None
        del self.tasks[call_id]
        log.info("routing.task_withdrawn", call_id=call_id, service=info.task.service,
                 waited_s=round(self._clock() - info.task.enqueued_at, 1))
        return info

    # -- tasks without a live call (callbacks) ------------------------------------

    def submit(self, task: Task, on_offer: OnOffer, on_result: OnResult) -> None:
        """Route a task no call is attached to yet. The chosen agent is
        reserved (in Redis too), then `on_offer` says which call to place
        and the switchboard originates it, so that a callback dials only
        while an agent is reserved for it. It follows the call: agent-first,
        the agent is on the call once they answered (CTICallbackDialing),
        released and paused as a ring-out if they did not (the task waits
        again with its place); customer-first, the agent is released at
        once, without wrap-up, if the customer does not answer, and a
        customer who answered while the agent did not waits for the next
        agent as a caller (`_requeue_answered`). `on_result` hears the
        customer leg's outcome."""
        now = self._clock()
        self.index.put_task(task)  # first: an unknown service or class raises here
        self._detached[task.id] = (on_offer, on_result)
        self.tasks[task.id] = TaskInfo(task, False, task.customer)
        log.info("routing.task_queued", task_id=task.id, kind=task.kind.value,
                 service=task.service, priority=task.priority, vip=False)
        self._run(self.index.assign_for_task(task.id, now), now)
        self._arm(now)

    def withdraw(self, task_id: str) -> bool:
        """Take back a detached task still waiting; False once offered."""
        if task_id not in self._detached or task_id in self.offers:
            return False
        self.index.remove_task(task_id)
        self._forget_detached(task_id)
        return True

    def _forget_detached(self, task_id: str) -> None:
        self._detached.pop(task_id, None)
        self.tasks.pop(task_id, None)

    def _offer_detached(self, assignment: Assignment, now: float) -> None:
        task_id = assignment.task_id
        info = self.tasks.get(task_id)
        agent = self.agents.get(assignment.agent_id)
        if info is None or agent is None:
            self.index.remove_task(task_id)
            return
        self.decisions += 1
        self.index.remove_task(task_id)
        reserved = agent.reserve(now, info.task.service)
        self._put(reserved)
        self.offers[task_id] = agent.id
        self._agent_task[agent.id] = task_id
        log.info("routing.assigned", task_id=task_id, kind=info.task.kind.value,
                 agent_id=agent.id, rule=assignment.rule,
                 waited_s=round(assignment.waited_seconds, 1),
                 priority=round(assignment.effective_priority, 1))
        self._emit(TaskOffered(assignment, info, task_id))
        self._spawn(self._connect_detached(reserved, info))

    async def _connect_detached(self, agent: Agent, info: TaskInfo) -> None:
        task_id = info.task.id
        ring = self.center.policy.services[info.task.service].ring_timeout_seconds
        try:
            taken = await self._reservations.take(agent.id, task_id, ring + _RESERVE_MARGIN_S)
        except Exception:
            log.exception("routing.reservation_failed", task_id=task_id, agent_id=agent.id)
            self._undo_offer(agent.id, task_id, requeue=True)
            return
        if taken is not None:
            log.warning("routing.agent_held_elsewhere", task_id=task_id, agent_id=agent.id,
                        holder=taken.holder)
            self._undo_offer(agent.id, task_id, requeue=True)
            return
        on_offer, _ = self._detached[task_id]
        origination: Origination | None = None
        try:
            origination = await on_offer(agent, info.task)
        except Exception:
            log.exception("routing.offer_failed", task_id=task_id, agent_id=agent.id)
        if origination is None:
            await self._give_back(agent.id, task_id)
            self._undo_offer(agent.id, task_id, requeue=False)
            self._forget_detached(task_id)
            return
        if self.offers.get(task_id) != agent.id:
            # The agent paused or logged out while the call was prepared:
            # nothing was dialled; the task waits again with its place.
            if task_id in self._detached and task_id not in self.offers:
                now = self._clock()
                self.index.put_task(info.task)
                self._run(self.index.assign_for_task(task_id, now), now)
                self._arm(now)
            return
        originate = origination.originate
        call_id = origination.call_id
        follow = _Follow(task_id, agent.id, origination)
        # Followed before the Originate goes out: its first events (a
        # failure can come at once) must find it.
        self._following[call_id] = follow
        if origination.customer_first:
            # Held while the customer rings, then while the agent does.
            hold = originate.timeout_ms / 1000 + ring + _RESERVE_MARGIN_S
            try:
                await self._reservations.extend(agent.id, task_id, hold)
            except Exception:
                log.exception("routing.reservation_failed", task_id=task_id, agent_id=agent.id)
        try:
            await self._send(originate.to_action())
        except PbxError as exc:
            log.warning("routing.originate_failed", task_id=task_id, call_id=call_id,
                        agent_id=agent.id, reason=str(exc))
            if self._following.get(call_id) is follow:
                self._detached_call_ended(call_id, self._clock(), failure="ORIGINATE")
            return
        log.info("routing.originated", task_id=task_id, call_id=call_id, agent_id=agent.id,
                 first="customer" if origination.customer_first else "agent")

    def _follow_detached(self, event: ev.PbxEvent, changes: list[object]) -> None:
        if isinstance(event, ev.OriginateResult):
            if not event.success:
                self._originate_failed(event)
        elif isinstance(event, ev.DialplanStep) and event.channel is not None:
            call = self.tracker.call_of(event.channel.uniqueid)
            follow = None if call is None else self._following.get(call.id)
            if call is not None and follow is not None:
                self._detached_step(call, follow, event)
        elif isinstance(event, ev.DialEnded):
            if event.caller is None:
                # The originated leg's own Dial (no caller): ANSWER, or
                # BUSY / CONGESTION before it comes up (recording 07).
                follow = self._following.get(event.dest.uniqueid)
                if follow is not None and event.status:
                    follow.dial_end = event.status.upper()
            else:
                # Agent-first: the customer leg's Dial from cti-callback, its
                # status even when the call ends before CTICallbackResult.
                call = self.tracker.call_of(event.caller.uniqueid)
                follow = None if call is None else self._following.get(call.id)
                if call is not None and follow is not None \
                        and not follow.origination.customer_first and event.status:
                    self._dialled[call.id] = event.status.upper()
        elif isinstance(event, ev.ChannelHungUp):
            follow = self._following.get(event.channel.uniqueid)
            if follow is not None:
                follow.cause = event.cause
        for change in changes:
            if isinstance(change, CallStateChanged) and change.call in self._following:
                self._detached_state(change)
            if isinstance(change, CallEnded) and change.record.call in self._following:
                self._detached_call_ended(change.record.call, change.at)

    def _detached_step(self, call: Call, follow: _Follow, event: ev.DialplanStep) -> None:
        kind = event.kind
        if follow.origination.customer_first:
            if kind is ev.DialplanStepKind.CALLBACK_ANSWERED:
                follow.dial_end = "ANSWER"
            elif kind is ev.DialplanStepKind.RING_NO_ANSWER:
                self._requeue_answered(call, follow, event.dial_status, event.at)
            return
        if kind is ev.DialplanStepKind.CALLBACK_RESULT:
            self._dialled[call.id] = event.dial_status
        elif kind is ev.DialplanStepKind.CALLBACK_DIALING:
            agent = self._offered_agent(follow.task_id)
            if agent is not None and agent.id == follow.agent_id \
                    and agent.state in (AgentState.RESERVED, AgentState.RINGING):
                self._put(agent.answer(event.at))
                self._dialled.setdefault(call.id, "")
                log.info("routing.answered", task_id=follow.task_id, call_id=call.id,
                         agent_id=agent.id)
                self._spawn(self._hold(agent.id, follow.task_id))

    def _detached_state(self, change: CallStateChanged) -> None:
        follow = self._following[change.call]
        if change.state is CallState.TALKING and not follow.origination.customer_first:
            self._dialled[change.call] = "ANSWER"
        if not follow.origination.customer_first:
            return
        agent = self._offered_agent(follow.task_id)
        if agent is None or agent.id != follow.agent_id:
            return
        if change.state is CallState.CONNECTING and agent.state is AgentState.RESERVED:
            # The customer answered and cti-callback-customer dials the agent.
            self._put(agent.ring(change.at))
        elif change.state is CallState.TALKING and agent.state in (AgentState.RESERVED,
                                                                   AgentState.RINGING):
            follow.dial_end = "ANSWER"
            self._put(agent.answer(change.at))
            log.info("routing.answered", task_id=follow.task_id, call_id=change.call,
                     agent_id=agent.id)
            self._spawn(self._hold(agent.id, follow.task_id))

    def _originate_failed(self, event: ev.OriginateResult) -> None:
        """A failed Originate names the dial string, not a channel (finding
        2). Its reason is kept for the outcome; a call of which no channel
        was ever seen (a trunk or device that refused at once) ends here."""
        call_id = next((c for c, f in self._following.items()
                        if f.origination.originate.device == event.channel), None)
        if call_id is None:
            return
        self._following[call_id].reason = event.reason
        if call_id not in self.tracker.calls:
            self._detached_call_ended(call_id, event.at)

    def _placed_for(self, agent_id: str) -> bool:
        """Whether a followed callback call is under way for this agent."""
        return any(f.agent_id == agent_id and self.offers.get(f.task_id) == agent_id
                   for f in self._following.values())

    def _release(self, agent: Agent, now: float, *, rang_out: bool) -> Agent:
        """A reserved or ringing agent whose callback call ended without
        them: free, or paused with the reason they asked for meanwhile, or
        for not answering (`rang_out`)."""
        agent = agent.release(now)
        reason = self._pending_pause.pop(agent.id, None)
        if reason is None and rang_out:
            reason = self.center.no_answer_pause_reason
        return agent if reason is None else agent.pause(now, reason)

    def _release_offer(self, follow: _Follow) -> Agent | None:
        """Drop the offer of a followed task if it is still the agent's;
        their agent then, None if the offer had been withdrawn."""
        if self.offers.get(follow.task_id) != follow.agent_id:
            return None
        del self.offers[follow.task_id]
        self._agent_task.pop(follow.agent_id, None)
        self._spawn(self._give_back(follow.agent_id, follow.task_id))
        return self.agents.get(follow.agent_id)

    def _detached_call_ended(self, call_id: str, now: float, *,
                             failure: str | None = None) -> None:
        """The followed call is over (or was never placed: `failure`)."""
        follow = self._following.pop(call_id)
        task_id = follow.task_id
        customer_first = follow.origination.customer_first
        dialled = self._dialled.pop(call_id, None)
        status: str | None
        if failure is not None:
            status = failure
        elif customer_first:
            status = originated_leg_status(follow.dial_end, follow.reason, follow.cause)
        else:
            status = dialled  # None: the agent never answered, nobody was dialled
        agent = self._release_offer(follow)
        if agent is not None and agent.state is AgentState.ON_CALL:
            agent = agent.end_call(now)
            pending = self._pending_pause.pop(agent.id, None)
            if pending is not None:
                agent = agent.pause(now, pending)
            self._put(agent)
        elif agent is not None and agent.state in (AgentState.RESERVED, AgentState.RINGING):
            # Customer-first, or an Originate that never went out: the agent
            # is free again at once, no wrap-up. Agent-first, their phone
            # rang out: paused, as after any ring-out.
            agent = self._release(agent, now, rang_out=status is None)
            if status is None:
                log.info("routing.ring_no_answer", task_id=task_id, agent_id=agent.id,
                         dial_status="NOANSWER", paused=True)
            self._put(agent)
        info = self.tasks.get(task_id)
        if status is None and info is not None:
            # The agent never answered: nobody dialled the customer. The task
            # waits again with its place, as a call after a ring-out does.
            info = TaskInfo(info.task.with_no_answer(follow.agent_id, now), info.vip,
                            info.customer)
            self.tasks[task_id] = info
            self.index.put_task(info.task)
            self._run(self.index.assign_for_task(task_id, now), now)
        else:
            handlers = self._detached.get(task_id)
            self._forget_detached(task_id)
            if handlers is not None:
                result = DetachedResult(task_id, follow.agent_id, call_id, status or "", now)
                self._spawn(handlers[1](result))
        if agent is not None:
            self._after_agent(agent, now)
        self._arm(now)

    def _requeue_answered(self, call: Call, follow: _Follow, status: str, now: float) -> None:
        """Customer-first: the customer answered, the reserved agent did not
        (cti-callback-customer's CTIRona). The customer is never dropped:
        they go to cti-wait and the task, now this call's, waits for the
        next agent with the callback's place, as a caller after a ring-out.
        The agent is released and paused like after any ring-out; the
        callback reached its customer, so its attempt is answered."""
        del self._following[call.id]
        task_id = follow.task_id
        agent = self._release_offer(follow)
        if agent is not None and agent.state in (AgentState.RESERVED, AgentState.RINGING):
            agent = self._release(agent, now, rang_out=status in NO_ANSWER_STATUSES)
            self._put(agent)
            log.info("routing.ring_no_answer", task_id=task_id, call_id=call.id,
                     agent_id=agent.id, dial_status=status or "unknown",
                     paused=agent.state is AgentState.PAUSED)
        info = self.tasks.get(task_id)
        handlers = self._detached.get(task_id)
        self._forget_detached(task_id)
        if info is not None:
            task = replace(info.task, id=call.id).with_no_answer(follow.agent_id, now)
            moved = TaskInfo(task, info.vip, info.customer)
            self.tasks[call.id] = moved
            self._emit(TaskQueued(moved, call.id))
            log.info("routing.callback_requeued", task_id=task_id, call_id=call.id,
                     service=task.service)
            if call.state is CallState.WAITING:
                self.index.put_task(task)
                self._run(self.index.assign_for_task(call.id, now), now)
            # else: queued when the customer reaches cti-wait (`_on_waiting`)
        if handlers is not None:
            self._spawn(handlers[1](DetachedResult(task_id, follow.agent_id, call.id, "ANSWER",
                                                   now, requeued=True)))
        if agent is not None:
            self._after_agent(agent, now)
        self._arm(now)

    # -- timer --------------------------------------------------------------------

    def _arm(self, now: float) -> None:
        """Wake at the index's next deadline (relaxation, wrap-up end, ...)."""
        wake = self.index.next_wakeup(now)
        if wake is None or not self._accepting:
            return
        if self._timer is not None and self._timer_at is not None and self._timer_at <= wake:
            return  # an earlier wake-up is set; it re-arms for the rest
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = wake
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(max(0.0, wake - now), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        now = self._clock()
        for agent in list(self.agents.values()):
            if agent.state is AgentState.WRAP_UP and agent.task_service is not None:
                service = self.center.policy.services.get(agent.task_service)
                end = None if service is None else agent.state_since + service.wrap_up_seconds
                if end is not None and end <= now:
                    done = agent.end_wrap_up(end)
                    self._put(done)
                    self._run(self.index.assign_for_agent(done.id, now), now)
        for assignment in self.index.assign_due(now):
            self._offer(assignment, now)
        self._arm(now)

    # -- bookkeeping -----------------------------------------------------------------

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
                log.exception("switchboard.listener_failed", event=type(event).__name__)

    def _spawn(self, job: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(job)
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)

    async def drain(self) -> None:
        """Stop taking new calls and let the assignments in flight finish."""
        self._accepting = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        lookups = list(self._lookups.values())
        self._lookups.clear()
        for lookup in lookups:
            lookup.cancel()
        if self._jobs or lookups:
            await asyncio.gather(*self._jobs, *lookups, return_exceptions=True)

    def start(self) -> None:
        """Log in the agents configured to be logged in at start."""
        for agent_id in sorted(self.center.login_at_start):
            with contextlib.suppress(IllegalTransition):
                self.login(agent_id)


def _device(interface: str) -> str:
    """An agent's device as the tracker names the party on a call
    (`interface_of` a channel): `Local/1001@ctx/n` dials `Local/1001@ctx`."""
    if interface.startswith("Local/"):
        head, _, options = interface.rpartition("/")
        if head != "Local" and options and set(options) <= set("nbmj"):
            return head
    return interface
