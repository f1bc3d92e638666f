"""The routing shell's core: events in, decisions out. `Switchboard` turns
the tracker's call changes into tasks, asks the index for a decision on
every event that can change the answer (a task arrives or comes back, an
agent becomes free, a relaxation step or a wrap-up ends: a timer set to the
index's next deadline, never a polling loop), reserves the chosen agent
atomically in Redis and moves the call with Setvar + Redirect into
`cti-connect`. It follows the offer through: ring-no-answer (`CTIRona`),
answer, hold, caller hang-up, wrap-up, and a caller who ends up with
another agent than the one it connected (a transfer done on the phone). It
runs the agents' own requests: login, pause with a reason, ready, end
wrap-up, logout.

Its state changes happen synchronously inside each handler, before any
await, so the index is always settled when the next event comes in; the
AMI and Redis work of an assignment runs as a task of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import replace
from typing import Literal

import structlog

from cti.calls.model import (
    Call,
    CallAgentChanged,
    CallEnded,
    CallStarted,
    CallState,
    CallStateChanged,
)
from cti.pbx import events as ev
from cti.pbx.commands import Redirect, Setvar
from cti.pbx.errors import PbxError
from cti.routing import (
    Agent,
    AgentState,
    Assignment,
    IllegalTransition,
    Task,
    due_wrapups,
)
from cti.switchboard.call_actions import CallActions
from cti.switchboard.detached import DetachedTasks
from cti.switchboard.events import (
    AgentChanged,
    CallFinished,
    CallHandedOver,
    CallHeld,
    QueueRing,
    SwitchboardEvent,
    TaskInfo,
    TaskOffered,
    TaskQueued,
)
from cti.switchboard.state import (
    CALL_HOLD_S,
    NO_ANSWER_STATUSES,
    RESERVE_MARGIN_S,
    device_of,
)

log = structlog.get_logger(__name__)


_QUEUE_RING_KINDS: dict[ev.QueueAgentKind, Literal["ringing", "answered", "stopped"]] = {
    ev.QueueAgentKind.CALLED: "ringing", ev.QueueAgentKind.CONNECTED: "answered",
    ev.QueueAgentKind.RING_NO_ANSWER: "stopped", ev.QueueAgentKind.DUMPED: "stopped"}


class Switchboard(DetachedTasks, CallActions):
    """The routing shell: its state and constructor are `SwitchboardState`'s,
    detached tasks `DetachedTasks`', an agent's actions on their call
    `CallActions`'."""

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
            self.tasks[task_id] = replace(info, task=changed)
        now = self._clock()
        log.info("routing.priority_changed", call_id=task_id, priority=priority_class)
        self._route(changed, now)
        self._arm(now)
        return changed

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

    def _withdraw_offer(self, agent: Agent) -> None:
        """The agent will not take the call offered to them: the caller goes
        back to waiting with their place (the task keeps its enqueue time)."""
        if agent.state not in (AgentState.RESERVED, AgentState.RINGING):
            return
        # A scan: an agent gives an offer back rarely, and an inverse map
        # would have to be kept in step wherever an offer starts or ends.
        task_id = next((task for task, holder in self.offers.items() if holder == agent.id),
                       None)
        if task_id is None:
            return
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
        elif isinstance(event, ev.DeviceStateChanged):
            self._on_device(event.device, event.engaged, event.state)
        elif isinstance(event, ev.DeviceStatesSnapshot):
            # After a reconnection: what the PBX lists now, the rest is free.
            listed = {device.device: device for device in event.devices}
            for device in self._by_device:
                known = listed.get(device)
                self._on_device(device, known is not None and known.engaged,
                                "unlisted" if known is None else known.state)

    def _on_device(self, device: str, engaged: bool, state: str) -> None:
        """An agent's phone busy with a call the router did not place (a
        consultation by a colleague, a direct or personal call) takes them
        out of routing until it is free again; the calls this server
        offered make it busy too, while the agent is not available anyway."""
        agent_id = self._by_device.get(device)
        if agent_id is None:
            return
        if not self.index.engage(agent_id, engaged):
            return
        agent = self.agents.get(agent_id)
        if agent is None or agent.state is not AgentState.AVAILABLE:
            return
        log.info("agent.phone_engaged" if engaged else "agent.phone_free", agent_id=agent_id,
                 device_state=state)
        if not engaged:
            self._after_agent(agent, self._clock())

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
        taker_id = self._by_device.get(device_of(change.agent))
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
        self._spawn(self._give_back(holder_id, call_id))
        holder = self._end_part(self.agents[holder_id], now)
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
        return reserved

    async def _claim(self, agent_id: str, task_id: str) -> None:
        """The Redis reservation of an agent who took a call over."""
        await self._take(agent_id, task_id, CALL_HOLD_S)

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
            self._emit(TaskQueued(info, call.id))
        elif call.id in self.offers:
            return  # the RONA handler requeues it
        now = self._clock()
        self._route(info.task, now)
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
        # Back in the queue with its original enqueue time: its place is kept.
        self._rang_out(info, agent_id, now)
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
        if info is not None:
            self._forget_pin(call_id, info.task)
        agent_id = self.offers.pop(call_id, None)
        now = change.at
        if agent_id is not None:
            agent = self.agents.get(agent_id)
            if agent is not None:
                self._spawn(self._give_back(agent_id, call_id))
                agent = self._end_part(agent, now)
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
        reserved = self._reserve_for(agent, info.task, now)
        # The offer first: the agent's pop is the first thing on the wire.
        self._emit(TaskOffered(assignment, info, call.id))
        self._emit(AgentChanged(reserved))
        self._spawn(self._connect(reserved, info, channel))

    async def _connect(self, agent: Agent, info: TaskInfo, channel: str) -> None:
        service = self.center.policy.services[info.task.service]
        ring = service.ring_timeout_seconds
        task_id = info.task.id
        if not await self._take(agent.id, task_id, ring + RESERVE_MARGIN_S):
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
        agent = self.agents.get(agent_id)
        if agent is not None and agent.state in (AgentState.RESERVED, AgentState.RINGING):
            # Not offered again for this task for a while (as a ring-out).
            agent = agent.release(now)
            self._put(agent)
        info = self.tasks.get(task_id)
        if requeue and info is not None:
            self._rang_out(info, agent_id, now)
        if agent is not None:
            self._after_agent(agent, now)
        self._arm(now)

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
        for done in due_wrapups(list(self.agents.values()), self.center.policy.services, now):
            self._put(done)
            self._run(self.index.assign_for_agent(done.id, now), now)
        for assignment in self.index.assign_due(now):
            self._offer(assignment, now)
        self._arm(now)

    # -- the decisions' log lines: an observer, off the pop's path ------------------

    def _log_decision(self, event: SwitchboardEvent) -> None:
        if isinstance(event, TaskQueued):
            task = event.info.task
            log.info("routing.task_queued", call_id=event.call, kind=task.kind.value,
                     service=task.service, priority=task.priority, vip=event.info.vip)
        elif isinstance(event, TaskOffered):
            assignment = event.assignment
            log.info("routing.assigned", call_id=event.call, kind=event.info.task.kind.value,
                     agent_id=assignment.agent_id,
                     rule=assignment.rule, waited_s=round(assignment.waited_seconds, 1),
                     priority=round(assignment.effective_priority, 1),
                     passed_over=[f"{a}: {why}" for a, why in assignment.passed_over])

    # -- start and stop ----------------------------------------------------------------

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
        self.tell_observers()

    def start(self) -> None:
        """Log in the agents configured to be logged in at start."""
        for agent_id in sorted(self.center.login_at_start):
            with contextlib.suppress(IllegalTransition):
                self.login(agent_id)
