"""Callbacks asked for on the phone: the offer a waiting caller reaches by
pressing 1 in [cti-wait] (FastAGI script `callback-offer`, dialplans/cti.conf)
and the `callback` step of an IVR flow. A caller who already waits keeps
their place: the callback carries their task's original enqueue time, and
the task leaves the router once the callback is stored.

The offer never drops a caller: whatever fails (no number, the store, the
admission), the AGI returns without CTI_STATE=done and [cti-wait-offer]
sends the caller back to the music, where their task waits again with its
place. Only a stored callback ends the call (after the goodbye).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import phonenumbers
import structlog
from pydantic import ValidationError
from redis.exceptions import RedisError

from cti.callbacks.errors import CallbackError, CannotPromise
from cti.callbacks.models import CallbackRequest
from cti.callbacks.service import CallbackService
from cti.calls.tracker import Tracker
from cti.config import NumbersSettings
from cti.ivr.agi import AgiSession
from cti.ivr.flows import EndKind, IvrOutcome
from cti.ivr.server import AgiHandler
from cti.routing import TaskKind
from cti.switchboard import Switchboard, TaskInfo

log = structlog.get_logger(__name__)

OFFER_SCRIPT = "callback-offer"
MAX_TRIES = 3               # readbacks / numbers keyed before giving up
CONFIRM_TIMEOUT_MS = 6000   # to press 1 or 2 after the readback
DIGIT_TIMEOUT_MS = 5000     # between two digits of a number keyed in
MAX_NUMBER_DIGITS = 16      # "00" + the 14 digits of the longest E.164 number


@dataclass(frozen=True, slots=True)
class OfferPrompts:
    """Sound files of the offer (under the Asterisk sounds directory)."""

    number_is: str = "cti/callback-number-is"          # "we will call you back on"
    confirm: str = "cti/callback-confirm-or-change"    # "1 to confirm, 2 for another number"
    enter: str = "cti/callback-enter-number"           # "key the number, then #"
    invalid: str = "cti/callback-invalid-number"
    confirmed: str = "cti/callback-confirmed"          # "you keep your place; goodbye"
    unavailable: str = "cti/callback-unavailable"      # "not possible now; please hold"


def spoken(e164: str) -> str:
    """The digits a caller recognises: the national form (+33611223344 ->
    0611223344), digits only, so SAY DIGITS can take them."""
    parsed = phonenumbers.parse(e164)
    national = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    return "".join(char for char in national if char.isdigit())


class PhoneCallbacks:
    def __init__(self, service: CallbackService, switchboard: Switchboard, tracker: Tracker,
                 numbers: NumbersSettings, prompts: OfferPrompts | None = None) -> None:
        self.service = service
        self.switchboard = switchboard
        self.tracker = tracker
        self.numbers = numbers
        self.prompts = prompts or OfferPrompts()

    def routes(self) -> dict[str, AgiHandler]:
        return {OFFER_SCRIPT: self.offer}

    def request(self, number: str | None, service: str, *,
                when: datetime | None = None) -> CallbackRequest | None:
        """A callback request for `number` (as keyed or as the caller id
        came), checked like the web's; None when it is no number we call."""
        if not number:
            return None
        body: dict[str, object] = {"number": number, "topic": service}
        if when is not None:
            body["when"] = when
        try:
            return CallbackRequest.model_validate(body, context={
                "region": self.numbers.default_region,
                "countries": self.numbers.allowed_callback_countries})
        except ValidationError:
            return None

    # -- the offer of [cti-wait] ----------------------------------------------------

    async def offer(self, session: AgiSession) -> None:
        """FastAGI `callback-offer`: confirm the number (or take another),
        store the callback with the task's enqueue time, withdraw the task,
        say goodbye and leave CTI_STATE=done for the dialplan to hang up."""
        request = session.request
        call = self.tracker.call_of(request.uniqueid)
        call_id = call.id if call is not None else request.uniqueid
        bound = log.bind(call_id=call_id)
        # Not routable while in the offer (the switchboard does it too when
        # it sees the AGI; whichever comes first). A call the server placed
        # itself (outbound, customer-first callback) is no caller to call back.
        placed = call is None or (call.originated and call.did is None)
        info = None if placed else self.switchboard.step_out(call_id)
        if info is None or info.task.kind is not TaskKind.INBOUND_CALL:
            bound.info("callback.offer_refused", reason="no waiting inbound call")
            await self._play(session, self.prompts.unavailable, bound)
            return
        service = info.task.service
        bound.info("callback.offer_started", service=service,
                   waited_s=round(self.service.now() - info.task.enqueued_at, 1))
        caller = call.caller_number if call is not None else None
        wanted = await self._confirm_number(session, caller or request.caller_number,
                                            service, bound)
        if wanted is None:
            bound.info("callback.offer_abandoned", reason="no number confirmed")
            await self._play(session, self.prompts.unavailable, bound)
            return
        if not await self._store(wanted, info, bound):
            await self._play(session, self.prompts.unavailable, bound)
            return
        # Stored: from here the call ends, whatever the caller does.
        self.switchboard.withdraw_call(call_id)
        await session.set_variable("CTI_STATE", "done")
        await self._play(session, self.prompts.confirmed, bound)

    async def _confirm_number(self, session: AgiSession, caller: str | None, service: str,
                              bound: structlog.stdlib.BoundLogger) -> CallbackRequest | None:
        """Read the number back, 1 confirms, 2 asks for another one (keyed,
        then #); at most MAX_TRIES rounds. None: no number confirmed."""
        wanted = self.request(caller, service)
        for _ in range(MAX_TRIES):
            if wanted is None:
                keyed = await session.get_data(self.prompts.enter, DIGIT_TIMEOUT_MS,
                                               MAX_NUMBER_DIGITS)
                wanted = self.request(keyed, service)
                if wanted is None:
                    bound.info("callback.offer_number_refused", digits=len(keyed))
                    await self._play(session, self.prompts.invalid, bound)
                    continue
            await self._play(session, self.prompts.number_is, bound)
            said = await session.say_digits(spoken(wanted.number))
            if said.value < 0:
                await session.channel_status()  # raises AgiDeadChannel when gone
            key = await session.get_data(self.prompts.confirm, CONFIRM_TIMEOUT_MS, 1)
            if key == "1":
                return wanted
            if key == "2":
                wanted = None
        return None

    async def _store(self, wanted: CallbackRequest, info: TaskInfo,
                     bound: structlog.stdlib.BoundLogger) -> bool:
        try:
            callback, created = await self.service.accept(
                wanted, enqueued_at=info.task.enqueued_at, priority=info.task.priority)
        except CallbackError as exc:
            bound.warning("callback.offer_refused", reason=exc.code, detail=exc.message)
            return False
        except (RedisError, OSError) as exc:
            bound.error("callback.offer_not_stored", reason=str(exc) or type(exc).__name__)
            return False
        bound.info("callback.offer_accepted", callback_id=callback.id, created=created,
                   service=callback.service, enqueued_at=callback.enqueued_at)
        return True

    async def _play(self, session: AgiSession, sound: str,
                    bound: structlog.stdlib.BoundLogger) -> None:
        """A missing sound file is logged, not fatal; a hangup raises."""
        result = await session.stream_file(sound)
        if result.value < 0:
            await session.channel_status()
            bound.warning("callback.prompt_failed", sound=sound)

    # -- the `callback` step of an IVR flow -------------------------------------------

    async def on_ivr_outcome(self, outcome: IvrOutcome) -> None:
        """A flow ended with a callback: store it. A flow run for a caller
        who already waits (a menu reached from the waiting context) passes
        the task's enqueue time and withdraws the task, like the offer. By
        phone nobody picks a slot: when ASAP cannot be promised (closed,
        overloaded) the first slot offered is taken."""
        ending = outcome.ending
        if ending.kind is not EndKind.CALLBACK:
            return
        call = self.tracker.call_of(outcome.call)
        call_id = call.id if call is not None else outcome.call
        bound = log.bind(call_id=call_id)
        info = self.switchboard.tasks.get(call_id)
        waiting = info if info is not None and info.task.kind is TaskKind.INBOUND_CALL \
            else None
        enqueued_at = None if waiting is None else waiting.task.enqueued_at
        service = ending.service or self.service.center.default_service
        wanted = self.request(ending.number, service)
        if wanted is None:
            bound.warning("callback.ivr_refused", reason="not a number we call back",
                          service=service)
            return
        try:
            try:
                callback, created = await self.service.accept(
                    wanted, enqueued_at=enqueued_at,
                    priority=None if waiting is None else waiting.task.priority)
            except CannotPromise:
                offered = await self.service.slots(service)
                later = self.request(ending.number, service, when=datetime.fromtimestamp(
                    offered[0].start, UTC)) if offered else None
                if later is None:
                    raise
                callback, created = await self.service.accept(later)
        except CallbackError as exc:
            bound.warning("callback.ivr_refused", reason=exc.code, detail=exc.message,
                          service=service)
            return
        if enqueued_at is not None:
            self.switchboard.withdraw_call(call_id)
        bound.info("callback.ivr_accepted", callback_id=callback.id, created=created,
                   service=callback.service, asap=callback.asap, kept_place=enqueued_at
                   is not None)
