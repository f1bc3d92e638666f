"""Accepting, showing and cancelling callbacks: admission against the live
queue and staffing, duplicates, rate limits, then durable storage. The
dispatcher (cti/callbacks/dispatch.py) takes them from there."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime

import structlog

from cti.callbacks.admission import (
    Opening,
    Slot,
    Staffing,
    can_promise,
    expected_wait,
    opening_of,
    slots,
)
from cti.callbacks.errors import (
    AlreadyFinal,
    CannotPromise,
    InvalidRequest,
    NotFound,
    RateLimited,
)
from cti.callbacks.models import ID_PATTERN, Callback, CallbackRequest, Status, iso
from cti.callbacks.store import CallbackStore
from cti.center import Center
from cti.config import CallbacksSettings
from cti.routing import AgentState
from cti.switchboard import CallFinished, Switchboard, SwitchboardEvent

log = structlog.get_logger(__name__)

Clock = Callable[[], float]
_EWMA = 0.2  # weight of the latest call in the running handle time


class CallbackService:
    def __init__(self, store: CallbackStore, settings: CallbacksSettings, center: Center,
                 switchboard: Switchboard, *, clock: Clock) -> None:
        self.store = store
        self.settings = settings
        self.center = center
        self.switchboard = switchboard
        self._clock = clock
        self._handle: dict[str, float] = {}
        self._openings: dict[str, Opening] = {
            name: opening_of(schedule) for name, schedule in center.hours.items()}
        switchboard.observers.append(self._on_switchboard)

    def now(self) -> float:
        return self._clock()

    # -- admission -------------------------------------------------------------

    def service_of(self, topic: str | None) -> str:
        if topic is None:
            return self.center.default_service
        if topic not in self.center.policy.services:
            raise InvalidRequest([{"field": "topic", "reason": "not a topic of this center"}])
        return topic

    def handle_seconds(self, service: str) -> float:
        wrap = self.center.policy.services[service].wrap_up_seconds
        return self._handle.get(service, self.settings.handle_seconds) + wrap

    def staffing(self, service: str) -> Staffing:
        required = self.center.policy.services[service].skills
        qualified = [a for a in self.switchboard.agents.values()
                     if all(a.skills.get(skill, 0) >= level
                            for skill, level in required.items())]
        waiting = sum(1 for task in self.switchboard.index.waiting() if task.service == service)
        return Staffing(
            waiting=waiting,
            staffed=sum(1 for a in qualified if a.state is not AgentState.LOGGED_OUT),
            available=sum(1 for a in qualified if a.state is AgentState.AVAILABLE),
            rostered=len(qualified), handle_seconds=self.handle_seconds(service))

    def asap_wait(self, service: str) -> float | None:
        """The expected wait of an ASAP callback placed now, or None when
        the center cannot promise one (overloaded, nobody with the skills,
        or outside the service's business hours)."""
        return can_promise(self.staffing(service), self.settings.promise_seconds,
                           at=self._clock(), opening=self._openings.get(service))

    async def slots(self, topic: str | None) -> list[Slot]:
        service = self.service_of(topic)
        now = self._clock()
        size = self.settings.slot_minutes * 60.0
        count = self.settings.slots_offered
        staffing = self.staffing(service)
        opening = self._openings.get(service)
        # How far the search can reach (it looks at `count * 4` open slots
        # at most, every one full): what is booked up to there. Business
        # hours put that past nights and weekends.
        reach = slots(now, staffing, {}, slot_seconds=size, count=count * 4, opening=opening)
        if not reach:
            return []
        booked: dict[float, int] = {}
        for due in await self.store.booked(now, reach[-1].end):
            start = due - due % size
            booked[start] = booked.get(start, 0) + 1
        return slots(now, staffing, booked, slot_seconds=size, count=count, opening=opening)

    # -- requests --------------------------------------------------------------

    async def accept(self, request: CallbackRequest, *, enqueued_at: float | None = None,
                     priority: str | None = None) -> tuple[Callback, bool]:
        """Store a callback; a number with one pending gets that one back
        (created False). `enqueued_at` and `priority`: the original enqueue
        time and the priority class of a waiting caller who chose to be
        called back (they keep their place, a VIP their head start)."""
        service = self.service_of(request.topic)
        count = await self.store.count("number", request.number, 3600)
        if count > self.settings.per_number_per_hour:
            raise RateLimited("too many requests for this number; try again later",
                              retry_after=3600)
        now = self._clock()
        staffing = self.staffing(service)
        if request.when == "asap":
            # A waiting caller who keeps their place is taken whatever the
            # promise: their place in the line was already given.
            wait = self.asap_wait(service)
            if wait is None and enqueued_at is None:
                offered = await self.slots(request.topic)
                raise CannotPromise(
                    "we cannot call back within the promised time; choose a slot",
                    slots=[slot_view(s) for s in offered])
            due, expected, asap = now, now + (wait or 0.0), True
        else:
            start = request.when.timestamp() if isinstance(request.when, datetime) else now
            offered = await self.slots(request.topic)
            if not any(abs(s.start - start) < 1.0 for s in offered):
                raise InvalidRequest([{"field": "when",
                                       "reason": "not one of the slots offered now"}])
            due, expected, asap = start, start, False
        callback = Callback(
            id=secrets.token_urlsafe(16), number=request.number, name=request.name,
            topic=request.topic, service=service, language=request.language,
            page=request.page, requested_at=now, due_at=due, expected_at=expected,
            enqueued_at=enqueued_at if enqueued_at is not None else due,
            priority=priority if enqueued_at is not None else None, asap=asap)
        accepted = await self.store.accept(callback)
        if accepted.created:
            log.info("callback.accepted", callback_id=callback.id, service=service,
                     asap=asap, due_in_s=round(due - now, 1),
                     expected_in_s=round(expected - now, 1),
                     waiting=staffing.waiting, staffed=staffing.staffed)
        else:
            log.info("callback.duplicate", callback_id=accepted.callback.id, service=service)
        return accepted.callback, accepted.created

    async def get(self, callback_id: str) -> Callback:
        callback = await self.store.get(callback_id) if ID_PATTERN.fullmatch(callback_id) \
            else None
        if callback is None:
            raise NotFound("no such callback")
        return callback

    async def cancel(self, callback_id: str) -> Callback:
        callback = await self.get(callback_id)
        if callback.status.final:
            raise AlreadyFinal(f"the callback is already {callback.status.value}")
        cancelled = callback.model_copy(update={"status": Status.CANCELLED,
                                                "finished_at": self._clock()})
        done = await self.store.cancel(cancelled)
        log.info("callback.cancel", callback_id=callback_id,
                 how={1: "removed", 2: "requested"}.get(done, "unknown"))
        return cancelled if done else callback

    # -- handle time -------------------------------------------------------------

    def _on_switchboard(self, event: SwitchboardEvent) -> None:
        if not isinstance(event, CallFinished) or event.info is None:
            return
        talk = event.event.record.talk_ms
        if talk is None:
            return
        service = event.info.task.service
        seconds = talk / 1000.0
        old = self._handle.get(service)
        self._handle[service] = seconds if old is None else old + _EWMA * (seconds - old)


def slot_view(slot: Slot) -> dict[str, object]:
    return {"start": iso(slot.start), "end": iso(slot.end), "free": slot.free}


__all__ = ["CallbackService", "expected_wait", "slot_view"]
