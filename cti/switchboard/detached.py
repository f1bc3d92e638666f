"""Tasks with no call yet (callbacks): `DetachedTasks` routes them like
calls, and once an agent is reserved for one it asks the task's feature
which call to place (`submit`'s `OnOffer`), originates it, follows it
agent-first or customer-first to its end, and tells the feature how the
customer's leg ended (`DetachedResult`). A customer who answered while the
reserved agent did not becomes a waiting caller (`_requeue_answered`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

import structlog

from cti.calls.model import Call, CallEnded, CallState, CallStateChanged
from cti.pbx import events as ev
from cti.pbx.dial_status import originated_leg_status
from cti.pbx.errors import PbxError
from cti.routing import Agent, AgentState, Assignment, Task
from cti.switchboard.events import (
    AgentChanged,
    DetachedResult,
    OnOffer,
    OnResult,
    Origination,
    TaskInfo,
    TaskOffered,
    TaskQueued,
)
from cti.switchboard.state import (
    NO_ANSWER_STATUSES,
    ORIGINATE_ANSWER_MARGIN_S,
    RESERVE_MARGIN_S,
    SwitchboardState,
)

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class Follow:
    """A detached task's call under way: whose it is, and what is known to
    tell how the customer's leg ended: customer-first, of the leg it
    originated (`originated_leg_status`); agent-first, of the leg the
    agent's call dialled (`dialled`)."""

    task_id: str
    agent_id: str
    origination: Origination
    dial_end: str = ""         # the originated leg's DialEnd status
    reason: int | None = None  # the reason of a failed OriginateResponse
    cause: int | None = None   # the Q.850 cause of the originated leg's Hangup
    # Agent-first: the customer leg's DIALSTATUS, "" while it is dialled,
    # None as long as the agent has not answered (nobody was dialled).
    dialled: str | None = None


class DetachedTasks(SwitchboardState):
    """Tasks without a live call: a mixin of the switchboard."""

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
        reserved = self._reserve_for(agent, info.task, now)
        self._emit(AgentChanged(reserved))
        self._emit(TaskOffered(assignment, info, task_id))  # logged by `_log_decision`
        self._spawn(self._connect_detached(reserved, info))

    async def _connect_detached(self, agent: Agent, info: TaskInfo) -> None:
        task_id = info.task.id
        ring = self.center.policy.services[info.task.service].ring_timeout_seconds
        if not await self._take(agent.id, task_id, ring + RESERVE_MARGIN_S, id_field="task_id"):
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
                self._route(info.task, now)
                self._arm(now)
            return
        originate = origination.originate
        call_id = origination.call_id
        follow = Follow(task_id, agent.id, origination)
        # Followed before the Originate goes out: its first events (a
        # failure can come at once) must find it.
        self._following[call_id] = follow
        if origination.customer_first:
            # Held while the customer rings, then while the agent does.
            hold = originate.timeout_ms / 1000 + ring + RESERVE_MARGIN_S
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
        asyncio.get_running_loop().call_later(
            originate.timeout_ms / 1000 + ORIGINATE_ANSWER_MARGIN_S,
            self._originate_lost, call_id, follow)

    def _originate_lost(self, call_id: str, follow: Follow) -> None:
        """Neither the Originate's answer nor its channel ever came (they
        were lost with the AMI link): the attempt ends as a failed
        Originate, the agent is free again and the callback is retried. A
        call that came up is followed to its end as any other."""
        if self._following.get(call_id) is not follow or call_id in self.tracker.calls:
            return
        log.warning("routing.originate_lost", task_id=follow.task_id, call_id=call_id,
                    agent_id=follow.agent_id)
        self._detached_call_ended(call_id, self._clock(), failure="ORIGINATE")

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
                    follow.dialled = event.status.upper()
        elif isinstance(event, ev.ChannelHungUp):
            follow = self._following.get(event.channel.uniqueid)
            if follow is not None:
                follow.cause = event.cause
        for change in changes:
            if isinstance(change, CallStateChanged) and change.call in self._following:
                self._detached_state(change)
            if isinstance(change, CallEnded) and change.record.call in self._following:
                self._detached_call_ended(change.record.call, change.at)

    def _detached_step(self, call: Call, follow: Follow, event: ev.DialplanStep) -> None:
        kind = event.kind
        if follow.origination.customer_first:
            if kind is ev.DialplanStepKind.CALLBACK_ANSWERED:
                follow.dial_end = "ANSWER"
            elif kind is ev.DialplanStepKind.RING_NO_ANSWER:
                self._requeue_answered(call, follow, event.dial_status, event.at)
            return
        if kind is ev.DialplanStepKind.CALLBACK_RESULT:
            follow.dialled = event.dial_status
        elif kind is ev.DialplanStepKind.CALLBACK_DIALING:
            agent = self._offered_agent(follow.task_id)
            if agent is not None and agent.id == follow.agent_id \
                    and agent.state in (AgentState.RESERVED, AgentState.RINGING):
                self._put(agent.answer(event.at))
                if follow.dialled is None:
                    follow.dialled = ""
                log.info("routing.answered", task_id=follow.task_id, call_id=call.id,
                         agent_id=agent.id)
                self._spawn(self._hold(agent.id, follow.task_id))

    def _detached_state(self, change: CallStateChanged) -> None:
        follow = self._following[change.call]
        if not follow.origination.customer_first:
            if change.state is CallState.TALKING:
                follow.dialled = "ANSWER"
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

    def _release_offer(self, follow: Follow) -> Agent | None:
        """Drop the offer of a followed task if it is still the agent's;
        their agent then, None if the offer had been withdrawn."""
        if self.offers.get(follow.task_id) != follow.agent_id:
            return None
        del self.offers[follow.task_id]
        self._spawn(self._give_back(follow.agent_id, follow.task_id))
        return self.agents.get(follow.agent_id)

    def _detached_call_ended(self, call_id: str, now: float, *,
                             failure: str | None = None) -> None:
        """The followed call is over (or was never placed: `failure`)."""
        follow = self._following.pop(call_id)
        task_id = follow.task_id
        customer_first = follow.origination.customer_first
        status: str | None
        if failure is not None:
            status = failure
        elif customer_first:
            status = originated_leg_status(follow.dial_end, follow.reason, follow.cause)
        else:
            status = follow.dialled  # None: the agent never answered, nobody was dialled
        agent = self._release_offer(follow)
        if agent is not None and agent.state is AgentState.ON_CALL:
            agent = self._end_part(agent, now)
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
            self._rang_out(info, follow.agent_id, now)
        else:
            handlers = self._detached.get(task_id)
            self._forget_detached(task_id)
            if handlers is not None:
                result = DetachedResult(task_id, follow.agent_id, call_id, status or "", now)
                self._spawn(handlers[1](result))
        if agent is not None:
            self._after_agent(agent, now)
        self._arm(now)

    def _requeue_answered(self, call: Call, follow: Follow, status: str, now: float) -> None:
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
            moved = replace(info, task=task)
            self.tasks[call.id] = moved
            self._emit(TaskQueued(moved, call.id))
            log.info("routing.callback_requeued", task_id=task_id, call_id=call.id,
                     service=task.service)
            if call.state is CallState.WAITING:
                self._route(task, now)
            # else: queued when the customer reaches cti-wait (`_on_waiting`)
        if handlers is not None:
            self._spawn(handlers[1](DetachedResult(task_id, follow.agent_id, call.id, "ANSWER",
                                                   now, requeued=True)))
        if agent is not None:
            self._after_agent(agent, now)
        self._arm(now)
