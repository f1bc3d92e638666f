"""The desk service: follows the switchboard's events for each agent (state,
offers, answers, ends), publishes them on the agent's stream in the hub,
sends the pop to the offered agent only and withdraws it when the phone
stops ringing, follows the call on hold and to the agent who takes it
over on the phone, and runs the agent's commands (ready, pause, end
wrap-up, disposition, notes, transfer to a service or an agent, escalate,
hang up). A disposition becomes a Contact in the customer's history once
the call has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Literal

import structlog

from cti.center import Center
from cti.customers.errors import UnknownCustomer
from cti.customers.models import Contact
from cti.customers.store import CustomerStore
from cti.desk.crm_pop import CrmPops, with_crm, with_crm_of
from cti.desk.hub import Hub
from cti.desk.pop import Offer, PopBuilder
from cti.desk.protocol import (
    Ack,
    AgentView,
    CallNotes,
    CallProgress,
    Command,
    Disposition,
    EndWrapUp,
    ErrorMessage,
    Escalate,
    Hangup,
    NoteView,
    Pause,
    Ping,
    PopMessage,
    PopUpdate,
    PopView,
    PopWithdrawn,
    Ready,
    Reply,
    Snapshot,
    StateMessage,
    Transfer,
)
from cti.routing import Agent, AgentState, CallRefused, IllegalTransition, UnknownService
from cti.switchboard import (
    AgentChanged,
    CallFinished,
    CallHandedOver,
    CallHeld,
    QueueRing,
    Switchboard,
    SwitchboardEvent,
    TaskOffered,
)

log = structlog.get_logger(__name__)

_OFFERED = frozenset({AgentState.RESERVED, AgentState.RINGING})


class DeskRefusal(Exception):
    """A command that cannot be done now; `code` is stable for clients."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(message)


@dataclass(slots=True)
class _LastCall:
    call_id: str
    service: str
    customer_id: str | None
    connected_at: float
    ended: bool = False
    talk_s: float = 0.0
    disposition: Disposition | None = None
    recorded: bool = False
    on_hold: bool = False
    hanging_up: bool = False
    # The agent's notes on this call for the next agent (kept with the call
    # in Redis for the pop); one at a time, a new one replaces it.
    note: NoteView | None = None


@dataclass(slots=True)
class _Desk:
    offer: Offer | None = None
    pop: PopView | None = None
    last_call: _LastCall | None = None
    state: AgentState | None = None
    # Serialises the agent's note edits (notes, transfer) across tabs.
    notes_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


# Store writes (history, dispositions) a burst of ended calls may start at
# once: at most this many run together, the rest wait their turn.
_JOBS_AT_ONCE = 32


@dataclass(slots=True)
class _Jobs:
    running: set[asyncio.Task[None]] = field(default_factory=set)
    limit: asyncio.Semaphore | None = None

    async def _limited(self, job: Awaitable[None]) -> None:
        if self.limit is None:
            self.limit = asyncio.Semaphore(_JOBS_AT_ONCE)
        async with self.limit:
            await job

    def spawn(self, job: Awaitable[None], name: str) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(self._limited(job))
        task.set_name(name)
        self.running.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("desk.job_failed", job=task.get_name(), error=repr(task.exception()))


class DeskService:
    def __init__(self, center: Center, switchboard: Switchboard, customers: CustomerStore,
                 pops: PopBuilder, hub: Hub, *, clock: Callable[[], float],
                 crm: CrmPops | None = None) -> None:
        self.center = center
        self.switchboard = switchboard
        self.customers = customers
        self.pops = pops
        self.hub = hub
        self.crm = crm
        self._clock = clock
        self._desks: dict[str, _Desk] = {}
        self._jobs = _Jobs()
        self._names = {agent.id: agent.name for agent in center.agents}
        switchboard.listeners.append(self.on_switchboard)

    def _now(self) -> float:
        return self._clock()

    def name_of(self, agent_id: str) -> str:
        return self._names.get(agent_id, agent_id)

    def _desk(self, agent_id: str) -> _Desk:
        desk = self._desks.get(agent_id)
        if desk is None:
            desk = self._desks[agent_id] = _Desk()
        return desk

    async def stop(self) -> None:
        for desk_id, desk in self._desks.items():
            self._record_if_due(desk_id, desk, final=True)
        if self._jobs.running:
            _, pending = await asyncio.wait(set(self._jobs.running), timeout=5.0)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    # -- what the desk shows ---------------------------------------------------------

    def agent_view(self, agent: Agent) -> AgentView:
        return AgentView(id=agent.id, name=agent.name, state=agent.state.value,
                         since=agent.state_since, reason=agent.pause_reason)

    def snapshot(self, agent_id: str) -> Snapshot:
        agent = self.switchboard.agents[agent_id]
        desk = self._desk(agent_id)
        last = desk.last_call
        return Snapshot(agent=self.agent_view(agent), pop=desk.pop,
                        last_call=None if last is None else last.call_id,
                        disposition_pending=last is not None and not last.recorded
                        and last.disposition is None)

    # -- switchboard events (synchronous, inside the switchboard's handler) --------------

    def on_switchboard(self, event: SwitchboardEvent) -> None:
        if isinstance(event, AgentChanged):
            self._on_agent(event.agent)
        elif isinstance(event, TaskOffered):
            self._on_offer(event)
        elif isinstance(event, CallFinished):
            self._on_finished(event)
        elif isinstance(event, QueueRing):
            self._on_queue_ring(event)
        elif isinstance(event, CallHeld):
            self._on_held(event)
        elif isinstance(event, CallHandedOver):
            self._on_handed_over(event)

    def _on_agent(self, agent: Agent) -> None:
        desk = self._desk(agent.id)
        before, desk.state = desk.state, agent.state
        self.hub.publish(agent.id, StateMessage(agent=self.agent_view(agent)))
        if before is agent.state or desk.offer is None:
            if agent.state is AgentState.LOGGED_OUT:
                self._record_if_due(agent.id, desk, final=True)
            return
        call_id = desk.offer.call_id
        if agent.state is AgentState.RINGING:
            self.hub.publish(agent.id, CallProgress(call_id=call_id, progress="ringing"))
        elif agent.state is AgentState.ON_CALL:
            self._record_if_due(agent.id, desk, final=True)
            desk.last_call = _LastCall(
                call_id=call_id, service=desk.offer.service,
                customer_id=None if desk.pop is None or desk.pop.customer is None
                else desk.pop.customer.id, connected_at=self._now())
            if desk.pop is not None:
                desk.pop = desk.pop.model_copy(update={"progress": "connected"})
            self.hub.publish(agent.id, CallProgress(call_id=call_id, progress="connected"))
        elif before in _OFFERED:
            # Released without answering: rang out, busy, or the caller left.
            gone = call_id not in self.switchboard.tasks
            desk.offer = None
            desk.pop = None
            self.hub.publish(agent.id, PopWithdrawn(
                call_id=call_id, reason="caller_gone" if gone else "not_answered"))
            log.info("desk.pop_withdrawn", agent_id=agent.id, call_id=call_id,
                     caller_gone=gone)

    def _on_offer(self, event: TaskOffered) -> None:
        agent_id = event.assignment.agent_id
        call = self.switchboard.tracker.calls.get(event.call)
        offer = Offer(call_id=event.call,
                      caller_number=None if call is None else call.caller_number,
                      caller_name=None if call is None else call.caller_name,
                      service=event.info.task.service, rule=event.assignment.rule,
                      waited_s=event.assignment.waited_seconds, vip=event.info.vip,
                      customer_id=event.info.customer)
        desk = self._desk(agent_id)
        desk.offer = offer
        desk.pop = None
        self._send_pop(agent_id, offer)

    def _send_pop(self, agent_id: str, offer: Offer) -> None:
        """The pop from memory when it holds every part (it leaves now,
        inside the routing decision; Redis is read after it, for what
        another process wrote), else built from Redis in a job."""
        pop = self.pops.build_now(offer)
        if pop is None:
            self._jobs.spawn(self._pop(agent_id, offer), f"pop-{offer.call_id}")
            return
        if self.crm is not None:
            answered = self.crm.answered_now(pop)
            if answered is None:
                # The CRM's answer is on its way: the pop waits its budget
                # for it, never for Redis.
                self._jobs.spawn(self._pop(agent_id, offer, pop), f"pop-{offer.call_id}")
                return
            pop = answered
        self._show(agent_id, offer, pop, build_ms=0.0)
        self._jobs.spawn(self._confirm(agent_id, offer), f"pop-check-{offer.call_id}")

    async def _pop(self, agent_id: str, offer: Offer, from_memory: PopView | None = None,
                   ) -> None:
        started = self._now()
        pop = from_memory if from_memory is not None else await self.pops.build(offer)
        later = None
        if self.crm is not None:
            pop, later = await self.crm.first_pop(pop)
        if not self._show(agent_id, offer, pop,
                          build_ms=round((self._now() - started) * 1000, 1)):
            return
        if later is not None and self.crm is not None:
            self.crm.follow(later, lambda result: self._update_pop(
                agent_id, offer, lambda shown: with_crm(shown, result)))
        if from_memory is not None:
            await self._confirm(agent_id, offer)

    def _show(self, agent_id: str, offer: Offer, pop: PopView, *, build_ms: float) -> bool:
        """Send the first pop of `offer`; not when the offer was withdrawn
        or replaced while the pop was built."""
        desk = self._desk(agent_id)
        if desk.offer is not offer:
            return False
        last = desk.last_call
        if last is not None and last.call_id == offer.call_id:
            pop = pop.model_copy(update={"progress": "connected"})
            last.customer_id = None if pop.customer is None else pop.customer.id
        desk.pop = pop
        self.hub.publish(agent_id, PopMessage(pop=pop))
        log.info("desk.pop_sent", agent_id=agent_id, call_id=offer.call_id,
                 identified_by=pop.identified_by, vip=pop.vip, crm=pop.crm_status,
                 build_ms=build_ms)
        return True

    async def _confirm(self, agent_id: str, offer: Offer) -> None:
        """Read the pop from Redis after it was sent from memory; when it
        differs (an IVR outcome or notes written by another node, a record
        changed meanwhile), the desk gets the new one."""
        built = await self.pops.build(offer)
        # What Redis cannot know stays as shown: the CRM's part, the progress.
        self._update_pop(agent_id, offer, lambda shown: with_crm_of(
            built.model_copy(update={"progress": shown.progress}), shown))

    def _update_pop(self, agent_id: str, offer: Offer,
                    change: Callable[[PopView], PopView]) -> bool:
        """Change the pop on screen for `offer` and send it again whole when
        that changed it. Only the pop on screen: not after it was withdrawn,
        the call ended or it was offered again (then False)."""
        desk = self._desk(agent_id)
        shown = desk.pop
        if desk.offer is not offer or shown is None or shown.call_id != offer.call_id:
            return False
        pop = change(shown)
        if not pop.same_as(shown):
            desk.pop = pop
            self.hub.publish(agent_id, PopUpdate(pop=pop))
            log.info("desk.pop_updated", agent_id=agent_id, call_id=offer.call_id,
                     crm=pop.crm_status)
        return True

    # -- calls Asterisk's own queues distribute (app_queue) --------------------------

    def _on_queue_ring(self, event: QueueRing) -> None:
        """The pop on each desk app_queue rings (one, or several with the
        ringall strategy), kept by the one who answers, withdrawn from the
        others. The agents' routing states are not touched: these calls
        are not the router's."""
        agent_id, call_id = event.agent_id, event.call
        desk = self._desk(agent_id)
        offered = desk.offer is not None and desk.offer.call_id == call_id
        if event.kind == "ringing" or (event.kind == "answered" and not offered):
            call = self.switchboard.tracker.calls.get(call_id)
            waited = 0.0 if call is None or call.wait_started_at is None \
                else max(0.0, event.at - call.wait_started_at)
            desk.offer = Offer(
                call_id=call_id, caller_number=None if call is None else call.caller_number,
                caller_name=None if call is None else call.caller_name, service=event.queue,
                rule=f"Asterisk queue {event.queue}", waited_s=waited, vip=False,
                customer_id=None)
            desk.pop = None
            self._send_pop(agent_id, desk.offer)
            self.hub.publish(agent_id, CallProgress(call_id=call_id, progress="ringing"))
            log.info("desk.queue_ringing", agent_id=agent_id, call_id=call_id,
                     queue=event.queue)
        if event.kind == "answered":
            self._record_if_due(agent_id, desk, final=True)
            desk.last_call = _LastCall(
                call_id=call_id, service=event.queue,
                customer_id=None if desk.pop is None or desk.pop.customer is None
                else desk.pop.customer.id, connected_at=event.at)
            if desk.pop is not None:
                desk.pop = desk.pop.model_copy(update={"progress": "connected"})
            self.hub.publish(agent_id, CallProgress(call_id=call_id, progress="connected"))
            for other_id, other in self._desks.items():
                if other_id != agent_id:
                    self._withdraw(other_id, other, call_id, "answered_elsewhere")
        elif event.kind == "stopped":
            self._withdraw(agent_id, desk, call_id, "not_answered")

    def _withdraw(self, agent_id: str, desk: _Desk, call_id: str,
                  reason: Literal["not_answered", "caller_gone", "answered_elsewhere"]) -> None:
        """Take back the pop of a call this desk was offered and did not
        answer (a call it answered stays, it is the agent's last call)."""
        if desk.offer is None or desk.offer.call_id != call_id:
            return
        if desk.last_call is not None and desk.last_call.call_id == call_id:
            return
        desk.offer = None
        desk.pop = None
        self.hub.publish(agent_id, PopWithdrawn(call_id=call_id, reason=reason))
        log.info("desk.pop_withdrawn", agent_id=agent_id, call_id=call_id, reason=reason)

    def _on_finished(self, event: CallFinished) -> None:
        call_id = event.event.record.call
        self.pops.forget(call_id)
        for agent_id, desk in self._desks.items():
            self._withdraw(agent_id, desk, call_id, "caller_gone")  # rang, never answered
            self._part_over(agent_id, desk, call_id,
                            talk_s=(event.event.record.talk_ms or 0) / 1000)

    def _on_held(self, event: CallHeld) -> None:
        desk = self._desks.get(event.agent_id)
        last = None if desk is None else desk.last_call
        if desk is None or last is None or last.call_id != event.call or last.ended \
                or last.on_hold == event.on_hold:
            return
        last.on_hold = event.on_hold
        progress: Literal["on_hold", "connected"] = "on_hold" if event.on_hold else "connected"
        if desk.pop is not None and desk.pop.call_id == event.call:
            desk.pop = desk.pop.model_copy(update={"progress": progress})
        self.hub.publish(event.agent_id, CallProgress(call_id=event.call, progress=progress))
        log.info("desk.hold", agent_id=event.agent_id, call_id=event.call,
                 on_hold=event.on_hold)

    def _on_handed_over(self, event: CallHandedOver) -> None:
        """A transfer done on the phone: the first agent's call is over; the
        agent now talking with the caller gets the pop (customer, history,
        the notes left on the call), already connected."""
        desk = self._desks.get(event.from_agent)
        if desk is not None:
            self._part_over(event.from_agent, desk, event.call)
        if event.to_agent is None:
            return
        call = self.switchboard.tracker.calls.get(event.call)
        waited = 0.0
        if call is not None and call.bridged_at is not None and call.wait_started_at is not None:
            waited = max(0.0, call.bridged_at - call.wait_started_at)
        offer = Offer(call_id=event.call,
                      caller_number=None if call is None else call.caller_number,
                      caller_name=None if call is None else call.caller_name,
                      service=event.info.task.service,
                      rule=f"transferred by {self.name_of(event.from_agent)}",
                      waited_s=waited, vip=event.info.vip, customer_id=event.info.customer)
        taker = self._desk(event.to_agent)
        taker.offer = offer
        taker.pop = None
        self._jobs.spawn(self._pop(event.to_agent, offer), f"pop-{event.call}")
        log.info("desk.handed_over", agent_id=event.to_agent, call_id=event.call,
                 from_agent=event.from_agent)

    def _part_over(self, agent_id: str, desk: _Desk, call_id: str, *,
                   talk_s: float | None = None) -> None:
        """The agent's part of a call is over (the call ended, or goes on
        with someone else after a transfer): `ended` on their desk, wrap-up.
        `talk_s` from the call record when it has it, else counted here."""
        last = desk.last_call
        if last is None or last.call_id != call_id or last.ended:
            return
        last.ended = True
        last.talk_s = max(0.0, self._now() - last.connected_at) if talk_s is None else talk_s
        if desk.offer is not None and desk.offer.call_id == call_id:
            desk.offer = None
        if desk.pop is not None and desk.pop.call_id == call_id:
            desk.pop = desk.pop.model_copy(update={"progress": "ended"})
        self.hub.publish(agent_id, CallProgress(call_id=call_id, progress="ended"))
        self._record_if_due(agent_id, desk, final=False)

    # -- contact history ------------------------------------------------------------

    def _record_if_due(self, agent_id: str, desk: _Desk, *, final: bool) -> None:
        job = self._contact_due(agent_id, desk, final=final)
        if job is not None:
            self._jobs.spawn(job, f"contact-{agent_id}")

    def _contact_due(self, agent_id: str, desk: _Desk, *,
                     final: bool) -> Coroutine[None, None, None] | None:
        """The write of the last call to the customer's history, when it is
        due: the call has ended and the disposition is in, or (`final`) the
        agent moves on to another call or logs out without one."""
        last = desk.last_call
        if last is None or last.recorded or not (last.ended or final):
            return None
        if last.disposition is None and not final:
            return None
        last.recorded = True
        if last.customer_id is None:
            return None
        disposition = last.disposition
        contact = Contact(
            at=last.connected_at, channel="voice", direction="inbound", service=last.service,
            agent_id=agent_id, agent_name=self.name_of(agent_id),
            duration_s=min(last.talk_s, 86_400.0), outcome="handled",
            disposition="" if disposition is None else disposition.disposition,
            notes="" if disposition is None else disposition.notes)
        return self._write_contact(last.customer_id, contact, last.call_id)

    async def _write_contact(self, customer_id: str, contact: Contact, call_id: str) -> None:
        try:
            await self.customers.add_contact(customer_id, contact)
        except UnknownCustomer:
            log.warning("desk.contact_customer_gone", customer_id=customer_id, call_id=call_id)
            return
        self.pops.contact_added(customer_id, contact)
        log.info("desk.contact_recorded", customer_id=customer_id, call_id=call_id,
                 agent_id=contact.agent_id, disposition=contact.disposition)

    # -- commands -------------------------------------------------------------------------

    async def run(self, agent_id: str, command: Command) -> Reply:
        """Run one command; an Ack, or an ErrorMessage naming why nothing changed."""
        try:
            result = await self._run(agent_id, command)
        except DeskRefusal as exc:
            return ErrorMessage(code=exc.code, message=exc.message, command_id=command.id)
        except IllegalTransition as exc:
            return ErrorMessage(code="not_allowed", message=str(exc), command_id=command.id)
        return Ack(command_id=command.id, result=result)

    async def _run(self, agent_id: str, command: Command) -> dict[str, object]:
        board = self.switchboard
        agent = board.agents.get(agent_id)
        if agent is None:
            raise DeskRefusal("unknown_agent", f"no agent {agent_id}")
        if isinstance(command, Ping):
            return {}
        if isinstance(command, Ready):
            if agent.state is AgentState.LOGGED_OUT:
                agent = board.login(agent_id)
            elif agent.state is not AgentState.AVAILABLE:
                agent = board.ready(agent_id)
            return {"state": agent.state.value}
        if isinstance(command, Pause):
            if command.reason not in self.center.pause_reasons:
                raise DeskRefusal("bad_reason", f"{command.reason!r} is not a pause reason"
                                  f" of this center: {', '.join(self.center.pause_reasons)}")
            if agent.state is AgentState.LOGGED_OUT:
                board.login(agent_id)
            agent = board.pause(agent_id, command.reason)
            return {"state": agent.state.value, "pending": agent.state is AgentState.ON_CALL}
        if isinstance(command, EndWrapUp):
            agent = board.end_wrap_up(agent_id)
            return {"state": agent.state.value}
        if isinstance(command, Disposition):
            return await self._disposition(agent_id, command)
        if isinstance(command, Transfer | Escalate):
            return await self._transfer(agent_id, command)
        if isinstance(command, Hangup):
            return await self._hang_up(agent_id, command)
        if isinstance(command, CallNotes):
            return await self._notes(agent_id, command)
        raise DeskRefusal("unknown_type", f"{command.type} is not a command")

    def _current(self, agent_id: str, call_id: str) -> _LastCall:
        """The agent's current call (answered, not over), or a refusal."""
        last = self._desk(agent_id).last_call
        agent = self.switchboard.agents[agent_id]
        if (last is None or last.call_id != call_id or last.ended
                or agent.state is not AgentState.ON_CALL):
            raise DeskRefusal("not_allowed", f"call {call_id} is not your current call")
        return last

    async def _disposition(self, agent_id: str, command: Disposition) -> dict[str, object]:
        desk = self._desk(agent_id)
        last = desk.last_call
        if last is None or last.call_id != command.call_id:
            raise DeskRefusal("unknown_call", f"call {command.call_id} is not your last call")
        if last.recorded or last.disposition is not None:
            raise DeskRefusal("already_recorded",
                              f"call {command.call_id} already has its disposition")
        last.disposition = command
        job = self._contact_due(agent_id, desk, final=False)
        if job is not None:
            await job  # the ack means it is in the history
        return {"call_id": command.call_id, "recorded": last.recorded,
                "customer_id": last.customer_id}

    async def _transfer(self, agent_id: str, command: Transfer | Escalate) -> dict[str, object]:
        desk = self._desk(agent_id)
        last = self._current(agent_id, command.call_id)
        board = self.switchboard
        to_agent = command.agent if isinstance(command, Transfer) else None
        if isinstance(command, Escalate):
            service = self.center.escalations.get(last.service)
            if service is None:
                raise DeskRefusal("no_escalation",
                                  f"service {last.service!r} has no level-2 service")
        else:
            service = command.service
        try:
            if to_agent is not None:
                board.check_transfer_to_agent(command.call_id, to_agent, by_agent=agent_id)
            elif service is not None:
                board.check_transfer(command.call_id, service, by_agent=agent_id)
        except (CallRefused, UnknownService) as exc:
            raise _refusal(exc) from None
        async with desk.notes_lock:
            # The note is with the call before the caller can be offered
            # again, so the next agent's pop has it. Without new notes the
            # agent's earlier ones stand.
            previous = last.note
            note = previous
            if command.notes or previous is None:
                note = self._note(agent_id, last, command.notes)
                await self._swap_note(command.call_id, previous, note)
            try:
                if to_agent is not None:
                    await board.transfer_to_agent(command.call_id, to_agent, by_agent=agent_id,
                                                  note=command.notes)
                elif service is not None:
                    await board.transfer_to_service(command.call_id, service,
                                                    by_agent=agent_id, note=command.notes)
            except (CallRefused, UnknownService) as exc:
                await self._swap_note(command.call_id, note, previous)
                raise _refusal(exc) from None
            last.note = note
        self._part_over(agent_id, desk, command.call_id)
        log.info("desk.transferred", agent_id=agent_id, call_id=command.call_id,
                 service=service, to_agent=to_agent, escalation=isinstance(command, Escalate))
        if to_agent is not None:
            return {"call_id": command.call_id, "agent": to_agent}
        return {"call_id": command.call_id, "service": service}

    async def _notes(self, agent_id: str, command: CallNotes) -> dict[str, object]:
        last = self._current(agent_id, command.call_id)
        async with self._desk(agent_id).notes_lock:
            note = self._note(agent_id, last, command.notes) if command.notes else None
            if note is not last.note:
                await self._swap_note(command.call_id, last.note, note)
                last.note = note
        log.info("desk.notes", agent_id=agent_id, call_id=command.call_id,
                 chars=len(command.notes))
        return {"call_id": command.call_id, "notes": note is not None}

    def _note(self, agent_id: str, last: _LastCall, text: str) -> NoteView:
        return NoteView(at=self._now(), agent_id=agent_id, agent_name=self.name_of(agent_id),
                        service=last.service, notes=text)

    async def _swap_note(self, call_id: str, old: NoteView | None, new: NoteView | None) -> None:
        """Put `new` with the call in place of `old` (added first: a pop
        built meanwhile has one of them)."""
        if new is old:
            return
        if new is not None:
            await self.pops.add_note(call_id, new)
        if old is not None:
            await self.pops.remove_note(call_id, old)

    async def _hang_up(self, agent_id: str, command: Hangup) -> dict[str, object]:
        last = self._current(agent_id, command.call_id)
        if last.hanging_up:
            raise DeskRefusal("not_allowed", f"call {command.call_id} is already being hung up")
        last.hanging_up = True
        try:
            await self.switchboard.hang_up(command.call_id, by_agent=agent_id)
        except CallRefused as exc:
            last.hanging_up = False
            raise _refusal(exc) from None
        log.info("desk.hung_up", agent_id=agent_id, call_id=command.call_id)
        return {"call_id": command.call_id}


def _refusal(exc: CallRefused | UnknownService) -> DeskRefusal:
    """A routing refusal in the desk's codes (README, "Agent desk protocol")."""
    code = {"not_your_call": "not_allowed"}.get(exc.code, exc.code)
    return DeskRefusal(code, str(exc))
