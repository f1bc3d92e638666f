"""The pure IVR interpreter through the shipped flows (dialplans/ivr), with
scripted inputs: every action is answered by plain values, no IO."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cti.ivr.flows import Customer, FlowLibrary, FlowVersion, Schedule, advance, begin
from cti.ivr.flows.interpreter import MAX_MOVES, UnexpectedEvent
from cti.ivr.flows.loader import parse_flow
from cti.ivr.flows.state import (
    CallState,
    CheckPin,
    Completed,
    CustomerFound,
    CustomerMissing,
    Digits,
    EndKind,
    Event,
    FindCustomer,
    Finish,
    HungUp,
    LockSelfService,
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
)

FLOWS = Path(__file__).parent.parent / "dialplans" / "ivr"
PARIS = ZoneInfo("Europe/Paris")
OPEN = datetime(2026, 3, 10, 10, 0, tzinfo=PARIS)  # a Tuesday morning
CLOSED = datetime(2026, 3, 10, 21, 30, tzinfo=PARIS)
HOLIDAY = datetime(2026, 12, 25, 10, 0, tzinfo=PARIS)  # a Friday

VIP = Customer(id="c-vip", name="Vera Vip", tier="VIP", account="900001",
               numbers=("+33611111111",), balance=Decimal("5000.00"))
ALICE = Customer(id="c-alice", name="Alice", tier="standard", account="123456",
                 numbers=("+33622222222",), balance=Decimal("1234.56"))
HANG = "<hang up>"


@pytest.fixture(scope="module")
def flows() -> dict[str, FlowVersion]:
    library = FlowLibrary(FLOWS)
    report = library.reload()
    assert report.refused == ()
    return dict(library.flows)


@dataclass
class Run:
    state: CallState
    actions: list[object] = field(default_factory=list)

    @property
    def finish(self) -> Finish:
        last = self.actions[-1]
        assert isinstance(last, Finish)
        return last

    @property
    def variables(self) -> dict[str, str]:
        return dict(self.finish.variables)

    def prompts(self) -> list[str]:
        return [a.sound for a in self.actions if isinstance(a, ReadDigits)]


def drive(version: FlowVersion, keys: list[str | None], *, caller: str | None = None,
          now: datetime = OPEN, customers: tuple[Customer, ...] = (VIP, ALICE),
          pins: dict[str, str] | None = None, language: str | None = None) -> Run:
    """Answer each action like the runner would, from plain values."""
    pins = pins if pins is not None else {"c-alice": "4321", "c-vip": "9999"}
    flow = version.flow
    keys = list(keys)
    transition = begin(flow, caller=caller, now=now, language=language)
    run = Run(transition.state, [transition.action])
    while not isinstance(transition.action, Finish):
        action = transition.action
        event: Event
        if isinstance(action, ReadDigits):
            key = keys.pop(0) if keys else HANG
            event = HungUp() if key == HANG else Digits(key or "")
        elif isinstance(action, FindCustomer):
            found = [c for c in customers
                     if (action.key in c.numbers if action.by == "number"
                         else action.key == c.account)]
            event = CustomerFound(found[0]) if found else CustomerMissing()
        elif isinstance(action, CheckPin):
            event = PinChecked(pins.get(action.customer) == action.pin)
        else:
            event = Completed()
        transition = advance(flow, transition.state, event, now)
        run.state = transition.state
        run.actions.append(transition.action)
    return run


# -- main.yaml ---------------------------------------------------------------


def test_one_goes_to_sales(flows: dict[str, FlowVersion]) -> None:
    run = drive(flows["main"], ["1"], caller="+33699999999")
    ending = run.state.ending
    assert ending is not None
    assert (ending.kind, ending.service, ending.priority) == (EndKind.HANDOFF, "sales", "standard")
    assert dict(ending.skills) == {"sales": 1}
    assert run.variables == {"CTI_SERVICE": "sales", "CTI_PRIORITY": "standard",
                             "CTI_SKILLS": "sales:1"}
    assert [(c.step, c.digit) for c in run.state.choices] == [("main_menu", "1")]
    assert run.actions[:2] == [FindCustomer("number", "+33699999999"),
                               PlaySounds(("cti/welcome",))]


def test_two_then_one_waits_for_support(flows: dict[str, FlowVersion]) -> None:
    run = drive(flows["main"], ["2", "1"])
    assert run.state.ending is not None
    assert run.state.ending.service == "support"
    assert [c.digit for c in run.state.choices] == ["2", "1"]


def test_two_then_two_asks_for_a_callback_to_the_caller(flows: dict[str, FlowVersion]) -> None:
    run = drive(flows["main"], ["2", "2"], caller="+33622222222")
    ending = run.state.ending
    assert ending is not None
    assert (ending.kind, ending.service, ending.number) == (
        EndKind.CALLBACK, "support", "+33622222222")
    assert run.variables["CTI_STATE"] == "done"  # [cti-inbound] hangs up
    assert run.finish.sounds == ("cti/callback-confirmed",)


def test_callback_without_a_caller_number_keeps_the_caller_in_line(
        flows: dict[str, FlowVersion]) -> None:
    run = drive(flows["main"], ["2", "2"], caller=None)
    ending = run.state.ending
    assert ending is not None
    assert (ending.kind, ending.service) == (EndKind.HANDOFF, "support")
    assert "CTI_STATE" not in run.variables


def test_three_attaches_the_topic_and_goes_to_accounts(flows: dict[str, FlowVersion]) -> None:
    run = drive(flows["main"], ["3"])
    assert run.state.ending is not None
    assert run.state.ending.service == "accounts"
    assert dict(run.state.data) == {"topic": "account"}


def test_vip_caller_goes_to_the_priority_service_without_the_menu(
        flows: dict[str, FlowVersion]) -> None:
    run = drive(flows["main"], [], caller="+33611111111")
    ending = run.state.ending
    assert ending is not None
    assert (ending.kind, ending.service, ending.priority) == (EndKind.HANDOFF, "premium", "vip")
    assert run.variables["CTI_PRIORITY"] == "vip"
    assert run.variables["CTI_CUSTOMER"] == "c-vip"
    assert not run.prompts()  # never asked anything
    assert run.actions[0] == FindCustomer("number", "+33611111111")


def test_known_standard_customer_hears_the_menu(flows: dict[str, FlowVersion]) -> None:
    run = drive(flows["main"], ["1"], caller="+33622222222")
    assert run.state.customer == ALICE
    assert run.state.ending is not None
    assert run.state.ending.service == "sales"


@pytest.mark.parametrize("now", [CLOSED, HOLIDAY, datetime(2026, 3, 15, 10, tzinfo=PARIS)],
                         ids=["evening", "holiday", "sunday"])
def test_closed_hours_offer_a_callback_then_say_goodbye(
        flows: dict[str, FlowVersion], now: datetime) -> None:
    run = drive(flows["main"], [None, None], caller="+33699999999", now=now)
    ending = run.state.ending
    assert ending is not None
    assert (ending.kind, ending.step) == (EndKind.HANGUP, "closed_goodbye")
    assert run.variables == {"CTI_STATE": "done"}
    assert run.finish.sounds == ("cti/closed-goodbye",)
    assert run.prompts() == ["cti/closed-offer-callback"] * 2


def test_closed_hours_callback(flows: dict[str, FlowVersion]) -> None:
    run = drive(flows["main"], ["1"], caller="+33699999999", now=CLOSED)
    assert run.state.ending is not None
    assert run.state.ending.kind is EndKind.CALLBACK


def test_vip_out_of_hours_gets_the_closed_branch_too(flows: dict[str, FlowVersion]) -> None:
    run = drive(flows["main"], ["1"], caller="+33611111111", now=CLOSED)
    assert run.state.ending is not None
    assert run.state.ending.kind is EndKind.CALLBACK
    assert run.state.customer == VIP


def test_hang_up_mid_menu_ends_at_the_menu(flows: dict[str, FlowVersion]) -> None:
    run = drive(flows["main"], [HANG])
    ending = run.state.ending
    assert ending is not None
    assert (ending.kind, ending.step) == (EndKind.CALLER_HUNG_UP, "main_menu")
    assert run.finish.variables == ()  # nothing to tell a dead channel


def test_silent_caller_is_prompted_then_handed_to_support(flows: dict[str, FlowVersion]) -> None:
    run = drive(flows["main"], [None, None, None])
    reads = [a for a in run.actions if isinstance(a, ReadDigits)]
    assert [r.before for r in reads] == [(), ("cti/no-choice",), ("cti/no-choice",)]
    assert all(r.timeout_ms == 5000 and r.max_digits == 1 for r in reads)
    assert run.state.ending is not None
    assert (run.state.ending.step, run.state.ending.service) == ("support_handoff", "support")


def test_unknown_digits_use_the_invalid_branch(flows: dict[str, FlowVersion]) -> None:
    run = drive(flows["main"], ["7", "#", "0"])
    reads = [a for a in run.actions if isinstance(a, ReadDigits)]
    assert [r.before for r in reads][1:] == [("cti/invalid-choice",)] * 2
    assert run.state.ending is not None
    assert run.state.ending.step == "support_handoff"
    assert run.state.last_failure is None  # reset on entering the next step
    assert run.state.choices == ()


def test_a_digit_flood_chooses_with_the_first_digit_only(flows: dict[str, FlowVersion]) -> None:
    run = drive(flows["main"], ["1999999999999"])
    assert run.state.ending is not None
    assert run.state.ending.service == "sales"


def test_nine_switches_to_french_prompts(flows: dict[str, FlowVersion]) -> None:
    run = drive(flows["main"], ["9", "1"])
    assert SetVariables((("CHANNEL(language)", "fr"),)) in run.actions
    assert run.prompts() == ["cti/main-menu", "cti/fr/main-menu"]
    assert run.state.language == "fr"


def test_channel_language_picks_the_prompt_and_falls_back(flows: dict[str, FlowVersion]) -> None:
    assert drive(flows["main"], ["1"], language="fr").prompts() == ["cti/fr/main-menu"]
    assert drive(flows["main"], ["1"], language="de").prompts() == ["cti/main-menu"]


# -- balance.yaml ------------------------------------------------------------


def test_balance_is_said_after_the_right_pin(flows: dict[str, FlowVersion]) -> None:
    run = drive(flows["balance"], ["123456", "4321", None])
    says = [a for a in run.actions if isinstance(a, SayPieces)]
    assert says == [SayPieces((PlaySound("cti/your-balance-is"), SayNumber(1234),
                               PlaySound("euros"), PlaySound("and"), SayNumber(56),
                               PlaySound("cents")))]
    ending = run.state.ending
    assert ending is not None
    assert (ending.kind, ending.step) == (EndKind.HANGUP, "goodbye")
    assert run.variables == {"CTI_STATE": "done", "CTI_CUSTOMER": "c-alice"}
    assert run.state.verified
    assert dict(run.state.fields) == {"account": "123456"}  # the PIN is kept nowhere


def test_pin_is_never_in_the_state_or_a_repr(flows: dict[str, FlowVersion]) -> None:
    run = drive(flows["balance"], ["123456", "4321", "1"])
    checks = [a for a in run.actions if isinstance(a, CheckPin)]
    assert checks and "4321" not in repr(checks[0])
    assert "4321" not in repr(run.state)


def test_three_wrong_pins_lock_self_service(flows: dict[str, FlowVersion]) -> None:
    run = drive(flows["balance"], ["123456", "0000", "1111", "2222"])
    locks = [a for a in run.actions if isinstance(a, LockSelfService)]
    assert locks == [LockSelfService("c-alice", OPEN + timedelta(minutes=30), 3)]
    reads = [a for a in run.actions if isinstance(a, ReadDigits)]
    assert [r.before for r in reads][1:] == [(), ("cti/wrong-pin",), ("cti/wrong-pin",)]
    assert PlaySounds(("cti/self-service-locked",)) in run.actions
    ending = run.state.ending
    assert ending is not None
    assert (ending.kind, ending.service) == (EndKind.HANDOFF, "accounts")
    assert not run.state.verified
    assert run.state.pin_tries == 3


def test_a_locked_customer_is_not_asked_for_a_pin(flows: dict[str, FlowVersion]) -> None:
    locked = Customer(id="c-alice", account="123456", balance=Decimal(1),
                      locked_until=OPEN + timedelta(minutes=10))
    run = drive(flows["balance"], ["123456"], customers=(locked,))
    assert not [a for a in run.actions if isinstance(a, CheckPin)]
    assert PlaySounds(("cti/self-service-locked",)) in run.actions
    # and once the lock has run out, the PIN is asked again
    later = drive(flows["balance"], ["123456", "4321", "1"], customers=(locked,),
                  now=OPEN + timedelta(minutes=11))
    assert later.state.verified


def test_a_short_pin_counts_as_wrong_without_asking_the_directory(
        flows: dict[str, FlowVersion]) -> None:
    run = drive(flows["balance"], ["123456", "12", "4321", "1"])
    assert len([a for a in run.actions if isinstance(a, CheckPin)]) == 1
    assert run.state.verified and run.state.pin_tries == 1


def test_unknown_account_goes_to_an_agent(flows: dict[str, FlowVersion]) -> None:
    run = drive(flows["balance"], ["999999"])
    assert PlaySounds(("cti/unknown-account",)) in run.actions
    assert run.state.ending is not None
    assert run.state.ending.service == "accounts"


def test_account_digit_flood_keeps_max_length(flows: dict[str, FlowVersion]) -> None:
    run = drive(flows["balance"], ["12345678901234567890"],
                customers=(Customer(id="x", account="1234567890"),))
    assert run.state.fields["account"] == "1234567890"


def test_too_short_account_is_invalid_then_retried(flows: dict[str, FlowVersion]) -> None:
    run = drive(flows["balance"], ["12", "123456", "4321", "1"])
    reads = [a for a in run.actions if isinstance(a, ReadDigits)]
    assert reads[1].before == ("cti/invalid-account",)
    assert run.state.verified


def test_negative_balance_is_said_after_minus(flows: dict[str, FlowVersion]) -> None:
    owing = Customer(id="c-o", account="555555", balance=Decimal("-20.05"))
    run = drive(flows["balance"], ["555555", "1111", "1"], customers=(owing,),
                pins={"c-o": "1111"})
    says = [a for a in run.actions if isinstance(a, SayPieces)]
    assert says[0].pieces[1:5] == (PlaySound("minus"), SayNumber(20), PlaySound("euros"),
                                   PlaySound("and"))


def test_no_balance_on_record_goes_to_an_agent(flows: dict[str, FlowVersion]) -> None:
    empty = Customer(id="c-e", account="777777")
    run = drive(flows["balance"], ["777777", "1111"], customers=(empty,), pins={"c-e": "1111"})
    assert not [a for a in run.actions if isinstance(a, SayPieces)]
    assert run.state.ending is not None
    assert run.state.ending.step == "agent"


# -- step kinds the samples do not use ---------------------------------------


SAYS = """
fallback_service: general
steps:
  - {id: who, type: identify, by: caller, next: n, on_not_found: x}
  - {id: n, type: say, kind: number, value: "${customer.visits}", next: d}
  - {id: d, type: say, kind: digits, value: "${customer.account}", next: a}
  - {id: a, type: say, kind: alpha, value: "${customer.plate}", next: t}
  - {id: t, type: say, kind: date, value: "${customer.due_date}", next: bad}
  - {id: bad, type: say, kind: number, value: "${customer.name}", next: x, on_missing: x}
  - {id: x, type: transfer, number: "+33140000099", context: from-cti}
"""


def test_say_kinds_and_transfer_to_a_number() -> None:
    flow = parse_flow(SAYS, file="says.yaml")
    customer = Customer(id="c-1", name="Zoe", account="0042", dates={"due_date": date(2026, 4, 30)},
                        attributes={"visits": "12", "plate": "AB123CD"})
    transition = begin(flow, caller="+33600000000", now=OPEN)
    assert transition.action == FindCustomer("number", "+33600000000")
    transition = advance(flow, transition.state, CustomerFound(customer), OPEN)
    said = []
    while isinstance(transition.action, SayPieces):
        said.append(transition.action)
        transition = advance(flow, transition.state, Completed(), OPEN)
    assert said == [SayPieces((SayNumber(12),)), SayPieces((SayDigits("0042"),)),
                    SayPieces((SayAlpha("AB123CD"),)), SayPieces((SayDate(date(2026, 4, 30)),))]
    finish = transition.action
    assert isinstance(finish, Finish)
    assert finish.goto == ("from-cti", "+33140000099", "1")
    assert dict(finish.variables) == {"CTI_STATE": "transferred", "CTI_CUSTOMER": "c-1"}
    assert finish.ending.kind is EndKind.TRANSFER
    assert transition.state.path == ("who", "n", "d", "a", "t", "bad", "x")


def test_an_event_the_step_does_not_wait_for_is_refused(flows: dict[str, FlowVersion]) -> None:
    flow = flows["main"].flow
    transition = begin(flow, caller=None, now=OPEN)
    transition = advance(flow, transition.state, Completed(), OPEN)  # welcome played
    with pytest.raises(UnexpectedEvent, match=r"'main_menu'.*'digits'.*PinChecked"):
        advance(flow, transition.state, PinChecked(True), OPEN)


def test_a_caller_looping_forever_ends_at_the_fallback_service() -> None:
    flow = parse_flow("""
fallback_service: general
steps:
  - id: menu
    type: menu
    prompt: m
    options: {9: menu, 1: out}
    on_invalid: out
  - {id: out, type: hangup}
""", file="loop.yaml")
    run = drive(FlowVersion("loop", "v", Path("loop.yaml"), flow), ["9"] * (MAX_MOVES + 5))
    ending = run.state.ending
    assert ending is not None
    assert (ending.kind, ending.service) == (EndKind.ERROR, "general")
    assert "256 steps" in ending.reason
    assert run.variables == {"CTI_SERVICE": "general", "CTI_PRIORITY": "standard"}


KEYS = st.lists(st.one_of(st.none(), st.just(HANG), st.text("0123456789*#", max_size=12)),
                max_size=12)


@settings(max_examples=150, deadline=None)
@given(keys=KEYS, caller=st.sampled_from([None, "+33611111111", "+33622222222"]),
       hour=st.integers(0, 23))
def test_any_caller_behaviour_ends_the_flow_cleanly(flows: dict[str, FlowVersion],
                                                     keys: list[str | None], caller: str | None,
                                                     hour: int) -> None:
    now = datetime(2026, 3, 10, hour, 0, tzinfo=PARIS)
    for name in ("main", "balance"):
        run = drive(flows[name], keys, caller=caller, now=now)
        ending = run.state.ending
        assert ending is not None
        variables = run.variables
        if ending.kind is EndKind.CALLER_HUNG_UP:
            assert variables == {}
        elif ending.kind in (EndKind.HANGUP, EndKind.CALLBACK):
            assert variables["CTI_STATE"] == "done"
        else:
            assert variables["CTI_SERVICE"] == ending.service
        assert len(run.state.path) <= MAX_MOVES


# -- business hours ----------------------------------------------------------


def test_schedule_is_read_in_its_own_time_zone() -> None:
    schedule = Schedule.model_validate({"timezone": "America/New_York",
                                        "weekly": {"mon-fri": "09:00-17:00"}})
    utc = ZoneInfo("UTC")
    assert schedule.is_open(datetime(2026, 3, 10, 14, 0, tzinfo=utc))  # 10:00 in New York
    assert not schedule.is_open(datetime(2026, 3, 10, 22, 0, tzinfo=utc))  # 18:00
    # DST: on 2026-03-08 New York moved to UTC-4; 13:00 UTC is 09:00 local after
    assert schedule.is_open(datetime(2026, 3, 9, 13, 0, tzinfo=utc))
    assert not schedule.is_open(datetime(2026, 3, 6, 13, 0, tzinfo=utc))  # 08:00 before DST
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.is_open(datetime(2026, 3, 10, 14, 0))


@settings(max_examples=100, deadline=None)
@given(minute=st.integers(0, 24 * 60 - 1))
def test_a_holiday_is_closed_all_day_and_the_end_is_exclusive(minute: int) -> None:
    schedule = Schedule.model_validate({"timezone": "Europe/Paris",
                                        "weekly": {"mon-sun": ["00:00-12:00", "12:00-24:00"]},
                                        "holidays": [date(2026, 12, 25)]})
    at = datetime(2026, 12, 25, tzinfo=PARIS) + timedelta(minutes=minute)
    assert not schedule.is_open(at)
    assert schedule.is_open(at - timedelta(days=1))
    lunch = Schedule.model_validate({"timezone": "Europe/Paris",
                                     "weekly": {"mon-sun": ["08:00-12:00", "14:00-18:00"]}})
    day = datetime(2026, 3, 10, tzinfo=PARIS) + timedelta(minutes=minute)
    assert lunch.is_open(day) == (8 * 60 <= minute < 12 * 60 or 14 * 60 <= minute < 18 * 60)
