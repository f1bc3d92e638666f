"""The IVR step machine, pure: (flow, state, event, now) -> (state, action).

No IO and no clock: the shell (runner.py) performs each action and feeds
back what happened as an event, with the current time for business hours
and PIN locks. `begin` starts a call; `advance` takes it one event further;
a `Finish` action ends it, and the state then carries the `Ending`.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from types import MappingProxyType

from cti.ivr.flows import models as m
from cti.ivr.flows.state import (
    ActionFailed,
    CallState,
    CheckPin,
    Choice,
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
    LockSelfService,
    Phase,
    Piece,
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

# Steps one call may enter. Every loop in a valid flow has an exit, but a
# caller who keeps pressing "repeat" (or a lookup that always answers the
# same) could go round forever; past this the call goes to the fallback
# service.
MAX_MOVES = 256

# Values that may reach a channel variable: nothing a dialplan splits on
# or expands (same rule as dialplans/cti.conf states for the server).
_SAFE_VALUE = re.compile(r"^[^,|&;()$\\\r\n\"'`{}\[\]]{0,200}$")
_CALLBACK_NUMBER = re.compile(r"^\+?[0-9]{3,20}$")
_CENT = Decimal("0.01")


class UnexpectedEvent(Exception):
    """The shell fed an event the current step does not wait for."""

    code = "ivr_unexpected_event"

    def __init__(self, state: CallState, event: Event) -> None:
        super().__init__(f"step {state.step!r} waiting in phase {state.phase.value!r} "
                         f"cannot take {type(event).__name__}")


def begin(flow: m.Flow, *, caller: str | None, now: datetime, did: str | None = None,
          language: str | None = None) -> Transition:
    """Start a call at the flow's start step. `language` is the channel's
    (agi_language); prompts without that language fall back to the flow's."""
    state = CallState(step=flow.start_id, phase=Phase.PERFORMING,
                      language=language or flow.language, caller=caller, did=did)
    return _enter(flow, state, flow.start_id, now)


def advance(flow: m.Flow, state: CallState, event: Event, now: datetime) -> Transition:
    if isinstance(event, HungUp):
        return _caller_gone(state)
    if state.phase is Phase.ENDED:
        raise UnexpectedEvent(state, event)
    if isinstance(event, ActionFailed):
        return _failed(flow, state, event.reason)
    step = flow.step(state.step)
    if state.phase is Phase.PERFORMING and isinstance(event, Completed):
        if isinstance(step, m.Play | m.Say | m.SetData | m.SetLanguage):
            return _enter(flow, state, step.next, now)
    elif state.phase is Phase.DIGITS and isinstance(event, Digits):
        if isinstance(step, m.Menu):
            return _menu_digits(flow, state, step, event.digits, now)
        if isinstance(step, m.Collect):
            return _collected(flow, state, step, event.digits, now)
        if isinstance(step, m.Authenticate):
            return _pin_entered(flow, state, step, event.digits, now)
    elif state.phase is Phase.CUSTOMER and isinstance(step, m.Identify):
        if isinstance(event, CustomerFound):
            customer = event.customer
            same = state.customer is not None and state.customer.id == customer.id
            state = replace(state, customer=customer, verified=state.verified and same,
                            pin_tries=state.pin_tries if same else 0)
            return _enter(flow, state, step.on_tier.get(customer.tier.lower(), step.next), now)
        if isinstance(event, CustomerMissing):
            return _enter(flow, state, step.on_not_found, now)
    elif state.phase is Phase.PIN_CHECK and isinstance(event, PinChecked) \
            and isinstance(step, m.Authenticate):
        if event.ok:
            return _enter(flow, replace(state, verified=True), step.next, now)
        return _wrong_pin(flow, state, step, now)
    elif state.phase is Phase.LOCK and isinstance(event, Completed) \
            and isinstance(step, m.Authenticate):
        return _enter(flow, state, step.on_failed, now)
    raise UnexpectedEvent(state, event)


# -- entering steps ------------------------------------------------------


def _enter(flow: m.Flow, state: CallState, step_id: str, now: datetime) -> Transition:
    """Enter `step_id`; steps that need no IO (goto, hours, plain set_data,
    identify without a key...) are passed through until one needs the
    shell or ends the call."""
    while True:
        if len(state.path) >= MAX_MOVES:
            return _failed(flow, state, f"more than {MAX_MOVES} steps in one call")
        state = replace(state, step=step_id, phase=Phase.PERFORMING, attempts=0,
                        last_failure=None, path=(*state.path, step_id))
        step = flow.step(step_id)
        if isinstance(step, m.Goto):
            step_id = step.target
        elif isinstance(step, m.Hours):
            step_id = step.next if step.schedule.is_open(now) else step.on_closed
        elif isinstance(step, m.SetData):
            data = dict(state.data)
            exported: list[tuple[str, str]] = []
            for key, template in step.data.items():
                value = render(template, state)
                if value is None:
                    continue  # a missing reference attaches nothing rather than half a value
                data[key] = value
                if step.export and _SAFE_VALUE.match(value):
                    exported.append((f"IVR_{key.upper()}", value))
            state = replace(state, data=MappingProxyType(data))
            if exported:
                return Transition(state, SetVariables(tuple(exported)))
            step_id = step.next
        elif isinstance(step, m.SetLanguage):
            state = replace(state, language=step.language)
            # CHANNEL(language) also makes Asterisk's own say-number speak it.
            return Transition(state, SetVariables((("CHANNEL(language)", step.language),)))
        elif isinstance(step, m.Identify):
            lookup_key = state.caller if step.by == "caller" else state.fields.get(
                step.account_field or "")
            if not lookup_key:
                step_id = step.on_not_found
                continue
            by = "number" if step.by == "caller" else "account"
            return Transition(replace(state, phase=Phase.CUSTOMER), FindCustomer(by, lookup_key))
        elif isinstance(step, m.Authenticate):
            customer = state.customer
            if customer is None:
                step_id = step.on_failed
            elif state.verified:
                step_id = step.next
            elif customer.locked_at(now) or state.pin_tries >= step.max_tries:
                step_id = step.on_locked if step.on_locked is not None else step.on_failed
            else:
                return _ask(flow, state, step.prompt, step.max_length, step.timeout)
        elif isinstance(step, m.Say):
            pieces = _pieces(flow, state, step)
            if pieces is None:
                step_id = step.on_missing or step.next
            else:
                return Transition(state, SayPieces(pieces))
        elif isinstance(step, m.Play):
            return Transition(state, PlaySounds((_sound(flow, state, step.prompt),)))
        elif isinstance(step, m.Menu):
            return _ask(flow, state, step.prompt, 1, step.timeout)
        elif isinstance(step, m.Collect):
            return _ask(flow, state, step.prompt, step.max_length, step.timeout,
                        terminator=step.terminator)
        else:
            return _terminal(flow, state, step)


def _ask(flow: m.Flow, state: CallState, prompt: m.Prompt, max_digits: int, timeout: float,
         *, terminator: str = "#", before: m.Prompt | None = None) -> Transition:
    notice = (_sound(flow, state, before),) if before is not None else ()
    action = ReadDigits(_sound(flow, state, prompt), max_digits, round(timeout * 1000),
                        terminator, notice)
    return Transition(replace(state, phase=Phase.DIGITS), action)


# -- digits ------------------------------------------------------------------


def _menu_digits(flow: m.Flow, state: CallState, step: m.Menu, digits: str,
                 now: datetime) -> Transition:
    digit = digits[:1]  # a flood of digits: only the first one chooses
    if digit in step.options:
        state = replace(state, choices=(*state.choices, Choice(step.id, digit)))
        return _enter(flow, state, step.options[digit], now)
    return _retry(flow, state, step, "invalid" if digit else "no_input", now)


def _collected(flow: m.Flow, state: CallState, step: m.Collect, digits: str,
               now: datetime) -> Transition:
    entry = digits[: step.max_length]  # extra digits are ignored
    if not entry:
        return _retry(flow, state, step, "no_input", now)
    if not entry.isdigit() or len(entry) < step.min_length:
        return _retry(flow, state, step, "invalid", now)
    fields = MappingProxyType({**state.fields, step.into: entry})
    return _enter(flow, replace(state, fields=fields), step.next, now)


def _pin_entered(flow: m.Flow, state: CallState, step: m.Authenticate, digits: str,
                 now: datetime) -> Transition:
    entry = digits[: step.max_length]
    if not entry:
        return _retry(flow, state, step, "no_input", now)
    if not entry.isdigit() or len(entry) < step.min_length:
        return _wrong_pin(flow, state, step, now)  # no need to ask the directory
    assert state.customer is not None  # _enter asks for a PIN only with a customer
    return Transition(replace(state, phase=Phase.PIN_CHECK), CheckPin(state.customer.id, entry))


def _retry(flow: m.Flow, state: CallState, step: m.Menu | m.Collect | m.Authenticate,
           failure: str, now: datetime) -> Transition:
    attempts = state.attempts + 1
    state = replace(state, attempts=attempts, last_failure=failure)
    if attempts > step.retries:
        if isinstance(step, m.Authenticate):
            target = step.on_no_input or step.on_failed
        elif failure == "no_input":
            target = step.on_no_input or step.on_invalid
        else:
            target = step.on_invalid
        return _enter(flow, state, target, now)
    if isinstance(step, m.Authenticate):
        return _ask(flow, state, step.prompt, step.max_length, step.timeout)
    notice = step.no_input_prompt if failure == "no_input" else step.invalid_prompt
    max_digits = 1 if isinstance(step, m.Menu) else step.max_length
    terminator = step.terminator if isinstance(step, m.Collect) else "#"
    return _ask(flow, state, step.prompt, max_digits, step.timeout, terminator=terminator,
                before=notice)


def _wrong_pin(flow: m.Flow, state: CallState, step: m.Authenticate,
               now: datetime) -> Transition:
    customer = state.customer
    assert customer is not None  # _enter asks for a PIN only with a customer
    tries = state.pin_tries + 1
    state = replace(state, pin_tries=tries)
    if tries >= step.max_tries:
        until = now + timedelta(minutes=step.lock_minutes)
        customer = replace(customer, locked_until=until)
        return Transition(replace(state, customer=customer, phase=Phase.LOCK),
                          LockSelfService(customer.id, until, tries))
    return _ask(flow, state, step.prompt, step.max_length, step.timeout,
                before=step.invalid_prompt)


# -- read-outs ---------------------------------------------------------------


def _pieces(flow: m.Flow, state: CallState, step: m.Say) -> tuple[Piece, ...] | None:
    """What to say, or None when the value is missing or not of the kind."""
    value = render(step.value, state)
    if not value:
        return None
    head: tuple[Piece, ...] = ()
    if step.prompt is not None:
        head = (PlaySound(_sound(flow, state, step.prompt)),)
    text = value.strip()
    if step.kind == "digits":
        return (*head, SayDigits(text)) if text.isdigit() else None
    if step.kind == "alpha":
        return (*head, SayAlpha(text)) if re.fullmatch(r"[A-Za-z0-9]{1,64}", text) else None
    if step.kind == "date":
        try:
            return (*head, SayDate(date.fromisoformat(text[:10])))
        except ValueError:
            return None
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    if not number.is_finite():
        return None
    if step.kind == "number":
        return (*head, SayNumber(int(number))) if number == number.to_integral_value() else None
    # amount
    assert step.unit_prompt is not None and step.subunit_prompt is not None
    amount = number.quantize(_CENT, rounding=ROUND_HALF_EVEN)
    pieces: list[Piece] = list(head)
    if amount < 0:
        if step.minus_prompt is None:
            return None  # never read a debt out as a credit
        pieces.append(PlaySound(_sound(flow, state, step.minus_prompt)))
        amount = -amount
    units = int(amount)
    cents = int((amount - units) * 100)
    pieces += [SayNumber(units), PlaySound(_sound(flow, state, step.unit_prompt))]
    if cents:
        if step.and_prompt is not None:
            pieces.append(PlaySound(_sound(flow, state, step.and_prompt)))
        pieces += [SayNumber(cents), PlaySound(_sound(flow, state, step.subunit_prompt))]
    return tuple(pieces)


def render(template: str, state: CallState) -> str | None:
    """Fill `${...}` references from the call; None if one is missing."""
    missing = False

    def lookup(match: re.Match[str]) -> str:
        nonlocal missing
        value = _lookup(state, match.group(1), match.group(2))
        if value is None:
            missing = True
            return ""
        return value

    text = m.TEMPLATE_REF.sub(lookup, template)
    return None if missing else text


def _lookup(state: CallState, root: str, name: str | None) -> str | None:
    if root == "caller":
        return state.caller
    if root == "language":
        return state.language
    if root == "did":
        return state.did
    if name is None:
        return None
    if root == "fields":
        return state.fields.get(name)
    if root == "data":
        return state.data.get(name)
    if root == "choice":
        digits = [choice.digit for choice in state.choices if choice.step == name]
        return digits[-1] if digits else None
    customer = state.customer
    if customer is None:
        return None
    if name in ("id", "name", "tier", "account", "currency"):
        text: str = getattr(customer, name)
        return text or None
    if name == "balance":
        return None if customer.balance is None else str(customer.balance)
    if name in customer.dates:
        return customer.dates[name].isoformat()
    return customer.attributes.get(name)


def _sound(flow: m.Flow, state: CallState, prompt: m.Prompt) -> str:
    return prompt.sound(state.language, flow.language)


# -- endings -----------------------------------------------------------------


def _terminal(flow: m.Flow, state: CallState,
              step: m.Handoff | m.Callback | m.Transfer | m.Hangup) -> Transition:
    sounds = (_sound(flow, state, step.prompt),) if step.prompt is not None else ()
    variables: list[tuple[str, str]] = []
    goto: tuple[str, str, str] | None = None
    if isinstance(step, m.Handoff):
        ending = Ending(EndKind.HANDOFF, step.id, step.service, step.priority,
                        MappingProxyType(dict(step.skills)))
        variables += _routing(step.service, step.priority, step.skills)
    elif isinstance(step, m.Callback):
        number = render(step.number, state)
        if number is None or not _CALLBACK_NUMBER.match(number):
            # Nobody to call back (withheld number): keep the caller in line.
            ending = Ending(EndKind.HANDOFF, step.id, step.service, "standard",
                            reason="callback offered but there is no number to call back")
            variables += _routing(step.service, "standard", {})
        else:
            ending = Ending(EndKind.CALLBACK, step.id, step.service, number=number)
            variables += [("CTI_SERVICE", step.service), ("CTI_STATE", "done")]
    elif isinstance(step, m.Transfer):
        if step.service is not None:
            ending = Ending(EndKind.TRANSFER, step.id, step.service, "standard")
            variables += _routing(step.service, "standard", {})
        else:
            assert step.number is not None and step.context is not None
            ending = Ending(EndKind.TRANSFER, step.id, number=step.number, context=step.context)
            variables.append(("CTI_STATE", "transferred"))
            goto = (step.context, step.number, "1")
    else:
        ending = Ending(EndKind.HANGUP, step.id)
        variables.append(("CTI_STATE", "done"))
    return _finish(state, ending, sounds, variables, goto)


def _routing(service: str, priority: str, skills: dict[str, int]) -> list[tuple[str, str]]:
    values = [("CTI_SERVICE", service), ("CTI_PRIORITY", priority)]
    if skills:
        # Space-separated: a comma would split a dialplan application's arguments.
        values.append(("CTI_SKILLS", " ".join(f"{name}:{level}" for name, level in skills.items())))
    return values


def _failed(flow: m.Flow, state: CallState, reason: str) -> Transition:
    ending = Ending(EndKind.ERROR, state.step, flow.fallback_service, "standard", reason=reason)
    return _finish(state, ending, (), _routing(flow.fallback_service, "standard", {}), None)


def _finish(state: CallState, ending: Ending, sounds: tuple[str, ...],
            variables: list[tuple[str, str]], goto: tuple[str, str, str] | None) -> Transition:
    if state.customer is not None and _SAFE_VALUE.match(state.customer.id):
        variables.append(("CTI_CUSTOMER", state.customer.id))
    state = replace(state, phase=Phase.ENDED, ending=ending)
    return Transition(state, Finish(ending, sounds, tuple(variables), goto))


def _caller_gone(state: CallState) -> Transition:
    ending = state.ending
    # Hanging up during the goodbye of a flow that ended the call anyway
    # (or after asking for a callback) changes nothing about how it ended.
    if ending is None or ending.kind not in (EndKind.HANGUP, EndKind.CALLBACK,
                                              EndKind.CALLER_HUNG_UP):
        ending = Ending(EndKind.CALLER_HUNG_UP, state.step,
                        reason=f"caller hung up at step {state.step!r}")
    return Transition(replace(state, phase=Phase.ENDED, ending=ending), Finish(ending))
