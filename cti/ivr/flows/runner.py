"""The IVR shell: runs the pure interpreter over one AGI session, performs
each action on the channel (AGI) or the customer directory, each under a
timeout, and reports the `IvrOutcome` through the `on_outcome` callback
before the AGI returns, so the router and the screen pop have it when the
call reaches [cti-inbound]'s waiting part.

Channel variables left for dialplans/cti.conf: CTI_SERVICE and CTI_PRIORITY
(and CTI_SKILLS, CTI_CUSTOMER) when the call goes on to routing;
CTI_STATE=done when the flow ended the call (self-served, callback
accepted), so [cti-inbound] hangs up instead of queueing. A transfer to a
number sets where the dialplan continues (SET CONTEXT/EXTENSION/PRIORITY).
"""

from __future__ import annotations

import asyncio
import calendar
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import structlog

from cti.ivr.agi import AgiError, AgiHangup, AgiRequest, AgiResult, AgiSession
from cti.ivr.flows.directory import CustomerDirectory
from cti.ivr.flows.interpreter import advance, begin
from cti.ivr.flows.loader import FlowLibrary, FlowVersion
from cti.ivr.flows.state import (
    Action,
    ActionFailed,
    CallState,
    CheckPin,
    Completed,
    CustomerFound,
    CustomerMissing,
    Digits,
    Ending,
    EndKind,
    Event,
    FindCustomer,
    Finish,
    HungUp,
    IvrOutcome,
    LockSelfService,
    Phase,
    PinChecked,
    PlaySound,
    PlaySounds,
    ReadDigits,
    SayAlpha,
    SayDate,
    SayDigits,
    SayNumber,
    SayPieces,
    SetVariables,
    Transition,
)
from cti.ivr.server import AgiHandler

log = structlog.get_logger(__name__)

OutcomeSink = Callable[[IvrOutcome], Awaitable[None]]
Clock = Callable[[], datetime]

_ALL_DTMF = "0123456789*#"
_LANGUAGE = re.compile(r"^[a-z]{2,3}(_[A-Z]{2})?$")
_DID = re.compile(r"^\+?[0-9]{2,20}$")


@dataclass(frozen=True, slots=True)
class _Answer:
    """Not a flow action: the runner answers the channel before the flow
    (harmless when [cti-inbound] already did, as recording 08 shows)."""


_ANSWER = _Answer()


class IvrRunner:
    """Runs flows on calls. `clock` returns an aware datetime (business
    hours, PIN locks); `directory_timeout` bounds each customer look-up."""

    def __init__(
        self,
        directory: CustomerDirectory,
        *,
        on_outcome: OutcomeSink,
        clock: Clock,
        directory_timeout: float = 3.0,
        outcome_timeout: float = 5.0,
    ) -> None:
        self._directory = directory
        self._on_outcome = on_outcome
        self._clock = clock
        self._directory_timeout = directory_timeout
        self._outcome_timeout = outcome_timeout

    async def run(self, version: FlowVersion, session: AgiSession) -> IvrOutcome:
        """Run `version` (held to the end, whatever reloads happen) on the
        call; never raises for anything the caller or Asterisk does."""
        request = session.request
        flow = version.flow
        bound = log.bind(call=request.uniqueid, flow=version.name, version=version.version)
        transition = begin(flow, caller=request.caller_number, did=did_of(request),
                           language=language_of(request), now=self._clock())
        bound.info("ivr.started", caller=request.caller_number, step=transition.state.step)
        # After a command timed out its result may still come and would be
        # read as the result of the next one: no more commands on this
        # session then, the outcome alone tells the router.
        stalled = False
        try:
            event, stalled = await self._attempt(_ANSWER, session, bound)
            ended = transition.state.phase is Phase.ENDED
            if isinstance(event, HungUp) or (isinstance(event, ActionFailed) and not ended):
                transition = advance(flow, transition.state, event, self._clock())
            while not isinstance(transition.action, Finish):
                event, stalled = await self._attempt(transition.action, session, bound)
                transition = advance(flow, transition.state, event, self._clock())
        except Exception as exc:
            # Never drop the caller for our own bug: the fallback service
            # takes the call, and the log says where it broke.
            bound.exception("ivr.flow_crashed", step=transition.state.step)
            if transition.state.phase is not Phase.ENDED:
                transition = advance(flow, transition.state,
                                     ActionFailed(f"internal error: {type(exc).__name__}"),
                                     self._clock())
        if stalled:
            bound.warning("ivr.finish_skipped", reason="Asterisk stopped answering")
            state = transition.state
        else:
            state = await self._finish(transition, version, session, bound)
        outcome = IvrOutcome.of(request.uniqueid, version.name, version.version, state)
        await self._report(outcome, bound)
        return outcome

    async def without_flow(self, session: AgiSession, *, flow: str, service: str,
                           reason: str) -> IvrOutcome:
        """No flow to run (unknown name, none loaded): route the call to
        `service` rather than drop it."""
        request = session.request
        bound = log.bind(call=request.uniqueid, flow=flow)
        bound.warning("ivr.no_flow", reason=reason, service=service)
        ending = Ending(EndKind.ERROR, "", service, "standard", reason=reason)
        state = CallState(step="", phase=Phase.ENDED, language=language_of(request) or "en",
                          caller=request.caller_number, did=did_of(request), ending=ending)
        try:
            await session.set_variable("CTI_SERVICE", service)
            await session.set_variable("CTI_PRIORITY", "standard")
        except AgiHangup:
            state = CallState(step="", phase=Phase.ENDED, language=state.language,
                              caller=state.caller, did=state.did,
                              ending=Ending(EndKind.CALLER_HUNG_UP, "", reason=reason))
        except (AgiError, TimeoutError) as exc:
            bound.warning("ivr.finish_failed", reason=str(exc) or type(exc).__name__)
        outcome = IvrOutcome.of(request.uniqueid, flow, "", state)
        await self._report(outcome, bound)
        return outcome

    # -- actions -------------------------------------------------------------

    async def _attempt(self, action: Action | _Answer, session: AgiSession,
                       bound: structlog.stdlib.BoundLogger) -> tuple[Event, bool]:
        """Perform one action: (what happened, whether Asterisk stalled).
        Whatever the caller or Asterisk does becomes an event; only a defect
        of ours raises."""
        try:
            return await self._perform(action, session, bound), False
        except TimeoutError:
            bound.warning("ivr.action_timeout", action=type(action).__name__)
            return ActionFailed(f"{type(action).__name__} timed out"), True

    async def _perform(self, action: Action | _Answer, session: AgiSession,
                       bound: structlog.stdlib.BoundLogger) -> Event:
        try:
            event = await self._do(action, session, bound)
        except AgiHangup:
            return HungUp()
        except AgiError as exc:
            bound.warning("ivr.action_failed", action=type(action).__name__, reason=str(exc))
            return ActionFailed(f"{type(action).__name__}: {exc}")
        # The HANGUP line comes after the result of the command during which
        # the caller left; once seen, nothing more is done on the channel.
        return HungUp() if session.hung_up else event

    async def _do(self, action: Action | _Answer, session: AgiSession,
                  bound: structlog.stdlib.BoundLogger) -> Event:
        if isinstance(action, _Answer):
            await session.answer()
            return Completed()
        if isinstance(action, PlaySounds):
            for sound in action.sounds:
                await _stream(session, sound, bound)
            return Completed()
        if isinstance(action, ReadDigits):
            return Digits(await _read_digits(session, action, bound))
        if isinstance(action, SayPieces):
            for piece in action.pieces:
                if isinstance(piece, PlaySound):
                    await _stream(session, piece.sound, bound)
                elif isinstance(piece, SayNumber):
                    await _checked(session, await session.say_number(piece.number))
                elif isinstance(piece, SayDigits):
                    await _checked(session, await session.say_digits(piece.digits))
                elif isinstance(piece, SayAlpha):
                    await _checked(session, await session.say_alpha(piece.text))
                elif isinstance(piece, SayDate):
                    # Midnight UTC said in UTC: the calendar date, whatever
                    # the server's zone.
                    epoch = calendar.timegm(piece.day.timetuple())
                    await _checked(session, await session.say_datetime(epoch, "ABdY", "UTC"))
            return Completed()
        if isinstance(action, SetVariables):
            for name, value in action.values:
                await session.set_variable(name, value)
            return Completed()
        return await self._ask_directory(action, bound)

    async def _ask_directory(self, action: Action,
                             bound: structlog.stdlib.BoundLogger) -> Event:
        directory = self._directory
        try:
            if isinstance(action, FindCustomer):
                lookup = directory.by_number if action.by == "number" else directory.by_account
                customer = await asyncio.wait_for(lookup(action.key), self._directory_timeout)
                bound.info("ivr.customer_lookup", by=action.by,
                           customer=customer.id if customer else None)
                return CustomerMissing() if customer is None else CustomerFound(customer)
            if isinstance(action, CheckPin):
                ok = await asyncio.wait_for(directory.check_pin(action.customer, action.pin),
                                            self._directory_timeout)
                bound.info("ivr.pin_checked", customer=action.customer, ok=ok)
                return PinChecked(ok)
            if isinstance(action, LockSelfService):
                await asyncio.wait_for(
                    directory.lock_self_service(action.customer, action.until,
                                                f"{action.tries} wrong PINs in the IVR"),
                    self._directory_timeout)
                bound.warning("ivr.pin_locked", customer=action.customer, tries=action.tries,
                              until=action.until.isoformat())
                return Completed()
        except TimeoutError:
            bound.error("ivr.directory_timeout", action=type(action).__name__)
            return ActionFailed(f"directory: {type(action).__name__} timed out")
        except Exception as exc:
            # The directory is another system (Redis...): whatever it raises,
            # the call goes on to the fallback service rather than dropping.
            bound.exception("ivr.directory_failed", action=type(action).__name__)
            return ActionFailed(f"directory: {type(action).__name__} failed: "
                                f"{type(exc).__name__}")
        raise TypeError(f"no performer for {type(action).__name__}")

    # -- the end -------------------------------------------------------------

    async def _finish(self, transition: Transition, version: FlowVersion,
                      session: AgiSession, bound: structlog.stdlib.BoundLogger) -> CallState:
        action = transition.action
        state = transition.state
        if not isinstance(action, Finish) or action.ending.kind is EndKind.CALLER_HUNG_UP:
            return state
        try:
            for sound in action.sounds:
                await _stream(session, sound, bound)
            for name, value in action.variables:
                await session.set_variable(name, value)
            if action.goto is not None:
                context, extension, priority = action.goto
                await session.set_context(context)
                await session.set_extension(extension)
                await session.set_priority(priority)
        except AgiHangup:
            return advance(version.flow, state, HungUp(), self._clock()).state
        except (AgiError, TimeoutError) as exc:
            # The ending is decided; the outcome still reaches the router.
            bound.warning("ivr.finish_failed", reason=str(exc) or type(exc).__name__)
        return state

    async def _report(self, outcome: IvrOutcome, bound: structlog.stdlib.BoundLogger) -> None:
        ending = outcome.ending
        bound.info("ivr.ended", kind=ending.kind.value, step=ending.step,
                   service=ending.service, priority=ending.priority, reason=ending.reason,
                   customer=outcome.customer, verified=outcome.verified,
                   choices=[c.digit for c in outcome.choices], language=outcome.language)
        try:
            await asyncio.wait_for(self._on_outcome(outcome), self._outcome_timeout)
        except Exception:
            # One error boundary: a failing consumer must not change how the
            # call continues in the dialplan.
            bound.exception("ivr.outcome_not_delivered", kind=ending.kind.value)


async def _stream(session: AgiSession, sound: str, bound: structlog.stdlib.BoundLogger,
                  escape_digits: str = "") -> str | None:
    """Play one sound; the key that interrupted it, if any. A missing sound
    file is logged and skipped: a caller is not dropped for a prompt."""
    result = await session.stream_file(sound, escape_digits)
    if result.value < 0:
        # -1 means a missing file or a hangup; CHANNEL STATUS tells them
        # apart (511 on a dead channel raises AgiDeadChannel).
        await session.channel_status()
        bound.warning("ivr.prompt_failed", sound=sound)
        return None
    return chr(result.value) if result.value > 0 else None


async def _checked(session: AgiSession, result: AgiResult) -> None:
    """SAY * answer -1 on a hangup: CHANNEL STATUS turns it into AgiDeadChannel."""
    if result.value < 0:
        await session.channel_status()


async def _read_digits(session: AgiSession, action: ReadDigits,
                       bound: structlog.stdlib.BoundLogger) -> str:
    for sound in action.before:
        await _stream(session, sound, bound)
    if action.terminator == "#":
        # GET DATA: Asterisk times each digit and stops at `#` or max_digits.
        return await session.get_data(action.sound, action.timeout_ms, action.max_digits)
    # GET DATA always ends on `#` and would keep `*`: read key by key.
    key = await _stream(session, action.sound, bound, _ALL_DTMF)
    if key is None:
        key = await session.wait_for_digit(action.timeout_ms)
    digits = ""
    while key is not None and key != action.terminator:
        digits += key
        if len(digits) >= action.max_digits:
            break
        key = await session.wait_for_digit(action.timeout_ms)
    return digits


def did_of(request: AgiRequest) -> str | None:
    """The number called: `?did=` (dialplans/cti.conf), else the first AGI
    argument (recording 08), else the dialplan extension."""
    for candidate in (request.params.get("did"), *request.args[:1],
                      request.env.get("agi_extension")):
        if candidate and _DID.match(candidate):
            return candidate
    return None


def language_of(request: AgiRequest) -> str | None:
    language = request.env.get("agi_language", "")
    return language if _LANGUAGE.match(language) else None


def ivr_routes(
    library: FlowLibrary,
    directory: CustomerDirectory,
    on_outcome: OutcomeSink,
    clock: Clock,
    *,
    default_service: str = "general",
    default_flow: str = "main",
    directory_timeout: float = 3.0,
) -> dict[str, AgiHandler]:
    """FastAGI route "ivr": the flow named by `?flow=`, else the flow that
    answers the DID, else `default_flow`. With no such flow the call is
    handed to `default_service` (never dropped)."""
    runner = IvrRunner(directory, on_outcome=on_outcome, clock=clock,
                       directory_timeout=directory_timeout)

    async def ivr(session: AgiSession) -> None:
        request = session.request
        name = request.params.get("flow")
        if name is not None:
            version = library.get(name)
        else:
            did = did_of(request)
            version = (library.for_did(did) if did else None) or library.get(default_flow)
            name = version.name if version else default_flow
        if version is None:
            await runner.without_flow(session, flow=name, service=default_service,
                                      reason=f"no flow named {name!r} is loaded")
            return
        await runner.run(version, session)

    return {"ivr": ivr}
