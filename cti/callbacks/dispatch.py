"""Turns due callbacks into router tasks and their calls into outcomes.

Each node claims due callbacks atomically (a lease in Redis, renewed while
it holds them), submits each to the switchboard as a CALLBACK task with its
place (`enqueued_at`), and when an agent is reserved, says which call the
switchboard places for it, in the service's callback mode: agent-first
through `cti-callback`, customer-first through `cti-callback-customer`.
Nothing is dialled without a reserved agent, so the callbacks dialling at
once never outnumber the free agents who can take them. The switchboard
follows the call; its result becomes the attempt's outcome, then a retry
with backoff or the final status. A node that dies loses its leases: another node (or itself
after a restart) claims them again. An attempt found under way in a lapsed
lease was cut off: it counts as failed and is retried, never redialled at
once.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable

import structlog

from cti.callbacks.admission import opening_of
from cti.callbacks.models import Attempt, Callback, Outcome, Status
from cti.callbacks.store import CallbackStore
from cti.center import CallbackMode, Center
from cti.config import CallbacksSettings, DialplanSettings
from cti.pbx.commands import CallerId, Originate, dial_string, normalize_number
from cti.pbx.errors import InvalidCommand
from cti.routing import Agent, Task, TaskKind
from cti.routing.errors import RoutingError
from cti.switchboard import DetachedResult, Origination, Switchboard

log = structlog.get_logger(__name__)

Clock = Callable[[], float]
_HELD_MAX = 500          # callbacks one node keeps in its router at once


class Dispatcher:
    def __init__(self, store: CallbackStore, settings: CallbacksSettings, center: Center,
                 switchboard: Switchboard, *, dialplan: DialplanSettings, region: str,
                 clock: Clock) -> None:
        self.store = store
        self.settings = settings
        self.center = center
        self.switchboard = switchboard
        self._dialplan = dialplan
        self._region = region
        self._clock = clock
        self._openings = {name: opening_of(schedule) for name, schedule in center.hours.items()}
        self.token = secrets.token_hex(8)   # this node's claims
        self.held: dict[str, Callback] = {}
        self._loop: asyncio.Task[None] | None = None
        self._renewed_at = 0.0

    @staticmethod
    def task_id(callback_id: str) -> str:
        return f"cb-{callback_id}"

    async def start(self) -> None:
        self._loop = asyncio.create_task(self._run(), name="callback-dispatch")

    async def stop(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        # Give back what still waits for an agent: due again at once.
        for callback in list(self.held.values()):
            if callback.status is Status.QUEUED and \
                    self.switchboard.withdraw(self.task_id(callback.id)):
                back = callback.model_copy(update={"status": Status.SCHEDULED})
                with contextlib.suppress(Exception):
                    await self.store.settle(back, self.token, callback.due_at)
                self.held.pop(callback.id, None)

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("callback.dispatch_failed")
            await asyncio.sleep(self.settings.poll_seconds)

    async def tick(self) -> None:
        now = self._clock()
        lease = self.settings.lease_seconds
        if self.held and now - self._renewed_at >= lease / 3:
            self._renewed_at = now
            lost = await self.store.renew(list(self.held), now + lease, self.token)
            for callback_id in lost:
                log.warning("callback.lease_lost", callback_id=callback_id)
                self.switchboard.withdraw(self.task_id(callback_id))
                self.held.pop(callback_id, None)
            for callback_id in await self.store.cancel_requested(list(self.held)):
                if self.switchboard.withdraw(self.task_id(callback_id)):
                    await self._finish(self.held[callback_id], Status.CANCELLED, None)
        room = _HELD_MAX - len(self.held)
        if room <= 0:
            return
        ids = await self.store.claim(now, lease, self.token, room)
        if not ids:
            return
        if not self.held:
            self._renewed_at = now
        for callback in await self.store.get_many(ids):
            if callback is None:
                continue
            await self._take(callback, now)

    async def _take(self, callback: Callback, now: float) -> None:
        if callback.status is Status.DIALING:
            # This attempt was under way on a node that died: cut off.
            last = callback.attempts[-1] if callback.attempts else None
            if last is not None and last.outcome is None:
                attempts = [*callback.attempts[:-1],
                            last.model_copy(update={"outcome": Outcome.FAILED,
                                                    "dial_status": "INTERRUPTED"})]
                callback = callback.model_copy(update={"attempts": attempts})
            self.held[callback.id] = callback
            await self._after_attempt(callback, Outcome.FAILED, now)
            return
        if callback.status.final:
            self.held[callback.id] = callback
            await self._finish(callback, callback.status, callback.outcome)
            return
        opens = self._open_at(callback.service, now)
        if opens > now:
            # Due while the service is closed (a retry, or a request made
            # just before closing): nobody is called at night; it waits
            # for the next opening, its place (enqueue time) kept.
            later = callback.model_copy(update={"due_at": opens, "expected_at": opens})
            self.held.pop(callback.id, None)
            if await self.store.settle(later, self.token, opens):
                log.info("callback.deferred_closed", callback_id=callback.id,
                         service=callback.service, until=round(opens))
            return
        queued = callback.model_copy(update={"status": Status.QUEUED})
        if not await self.store.write(queued, self.token):
            return
        priority = callback.priority
        if priority is not None and priority not in self.switchboard.center.policy.classes:
            # The class was renamed or removed since: called back all the same.
            log.warning("callback.priority_unknown", callback_id=callback.id, priority=priority)
            priority = None
        task = Task(id=self.task_id(callback.id), service=callback.service,
                    enqueued_at=callback.enqueued_at, kind=TaskKind.CALLBACK, priority=priority)
        self.held[callback.id] = queued
        try:
            self.switchboard.submit(task, self._on_offer, self._on_result)
        except (RoutingError, ValueError) as exc:
            log.error("callback.not_routable", callback_id=callback.id, reason=str(exc))
            await self._finish(queued, Status.FAILED, Outcome.FAILED)
            return
        log.info("callback.queued", callback_id=callback.id, service=callback.service,
                 late_s=round(now - callback.due_at, 1))

    def _open_at(self, service: str, at: float) -> float:
        """`at`, or the next time `service` opens when it is closed then
        (`at` for a service without hours, or that never opens again)."""
        opening = self._openings.get(service)
        opens = None if opening is None else opening(at)
        return at if opens is None else max(at, opens)

    # -- the switchboard's side ------------------------------------------------------

    async def _on_offer(self, agent: Agent, task: Task) -> Origination | None:
        callback_id = task.id.removeprefix("cb-")
        callback = self.held.get(callback_id)
        if callback is None:
            return None
        if await self.store.cancel_requested([callback_id]):
            await self._finish(callback, Status.CANCELLED, None)
            return None
        now = self._clock()
        # An offer whose agent did not answer dialled nobody: the next offer
        # takes its place instead of counting as an attempt on the customer.
        attempts = [a for a in callback.attempts if a.outcome is not None]
        attempt = len(attempts) + 1
        channel_id = f"cti-cb-{callback_id}-{secrets.token_hex(4)}"
        mode = self.center.callback_mode(callback.service)
        try:
            origination = self._origination(callback, agent, mode, channel_id)
        except InvalidCommand as exc:
            log.warning("callback.invalid_number", callback_id=callback_id, field=exc.field,
                        reason=exc.reason)
            await self._finish(callback, Status.FAILED, Outcome.INVALID_NUMBER)
            return None
        dialing = callback.model_copy(update={
            "status": Status.DIALING,
            "attempts": [*attempts, Attempt(at=now, agent=agent.id, mode=mode)]})
        # Written before the Originate: a node that dies from here on leaves
        # an attempt under way, which is never redialled at once.
        if not await self.store.write(dialing, self.token):
            self.held.pop(callback_id, None)
            return None
        self.held[callback_id] = dialing
        log.info("callback.dialing", callback_id=callback_id, agent_id=agent.id,
                 attempt=attempt, channel_id=channel_id, number=callback.number,
                 mode=mode.value)
        return origination

    def _origination(self, callback: Callback, agent: Agent, mode: CallbackMode,
                     channel_id: str) -> Origination:
        """The call to place, every value checked by `Originate` (raises
        InvalidCommand naming the field). Agent-first rings the agent's
        device into cti-callback, which dials the number; customer-first
        rings the number through the trunk into cti-callback-customer,
        which dials the agent's device once the customer answered."""
        service = self.center.policy.services[callback.service]
        caller = self.center.caller_ids.get(callback.service)
        caller_id = CallerId(caller) if caller else None
        customer_ring = round(self.settings.customer_ring_seconds)
        if mode is CallbackMode.AGENT_FIRST:
            return Origination(Originate(
                device=agent.interface, context=self._dialplan.callback,
                exten=callback.number, caller_id=caller_id,
                timeout_ms=int(service.ring_timeout_seconds * 1000),
                variables=(("CTI_CALLBACK_ID", callback.id),
                           ("CTI_SERVICE", callback.service),
                           ("CTI_CALLBACK_RING_TIMEOUT", str(customer_ring))),
                channel_id=channel_id))
        # The number and the device end up in Dial() arguments of the
        # dialplan: both are checked as a number and a dial string here,
        # the variable values again by Originate.
        number = normalize_number(callback.number, self._region)
        return Origination(Originate.to_number(
            number, self._region, self.settings.trunk, self._dialplan.callback_customer,
            number, caller_id=caller_id, timeout_ms=customer_ring * 1000,
            variables=(("CTI_CALLBACK_ID", callback.id),
                       ("CTI_SERVICE", callback.service),
                       ("CTI_TASK", self.task_id(callback.id)),
                       ("CTI_AGENT", agent.id),
                       ("CTI_AGENT_DEVICE", dial_string("CTI_AGENT_DEVICE", agent.interface)),
                       ("CTI_RING_TIMEOUT", str(round(service.ring_timeout_seconds)))),
            channel_id=channel_id), customer_first=True)

    async def _on_result(self, result: DetachedResult) -> None:
        callback_id = result.task_id.removeprefix("cb-")
        callback = self.held.get(callback_id)
        if callback is None:
            return
        outcome = Outcome.of_dial_status(result.dial_status) if result.dial_status \
            else Outcome.FAILED
        await self._after_attempt(callback, outcome, result.at,
                                  dial_status=result.dial_status, requeued=result.requeued)

    # -- outcomes ------------------------------------------------------------------

    async def _after_attempt(self, callback: Callback, outcome: Outcome, now: float, *,
                             dial_status: str = "", requeued: bool = False) -> None:
        attempts = list(callback.attempts)
        if attempts and attempts[-1].outcome is None:
            attempts[-1] = attempts[-1].model_copy(update={
                "outcome": outcome, "dial_status": dial_status, "ended_at": now,
                "requeued": requeued})
        callback = callback.model_copy(update={"attempts": attempts})
        log.info("callback.attempt", callback_id=callback.id, attempt=len(attempts),
                 outcome=outcome.value, dial_status=dial_status, requeued=requeued)
        if outcome is Outcome.ANSWERED:
            await self._finish(callback, Status.COMPLETED, outcome)
        elif outcome is Outcome.INVALID_NUMBER or len(attempts) >= self.settings.max_attempts:
            await self._finish(callback, Status.FAILED, outcome)
        else:
            backoff = self.settings.retry_backoff_seconds
            delay = backoff[min(len(attempts), len(backoff)) - 1] if attempts else backoff[0]
            due = self._open_at(callback.service, now + delay)  # never outside hours
            retry = callback.model_copy(update={"status": Status.RETRY, "due_at": due,
                                                "expected_at": due})
            self.held.pop(callback.id, None)
            if await self.store.settle(retry, self.token, due):
                log.info("callback.retry", callback_id=callback.id, in_s=round(due - now))

    async def _finish(self, callback: Callback, status: Status,
                      outcome: Outcome | None) -> None:
        final = callback.model_copy(update={"status": status, "outcome": outcome,
                                            "finished_at": self._clock()})
        self.held.pop(callback.id, None)
        if await self.store.settle(final, self.token, None):
            log.info("callback.final", callback_id=callback.id, status=status.value,
                     outcome=outcome.value if outcome else None,
                     attempts=len(callback.attempts))
