"""The shipped flows run by the real FastAgiServer over TCP against a
scripted Asterisk (tests/agi_caller.py), and one flow against the bytes
Asterisk 22 sent in recording 08."""

from __future__ import annotations

import asyncio
import calendar
import shlex
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from structlog.testing import capture_logs

from cti.ivr.flows import (
    Customer,
    EndKind,
    FlowLibrary,
    IvrOutcome,
    MemoryDirectory,
    ivr_routes,
)
from cti.ivr.flows.directory import CustomerDirectory
from cti.ivr.server import FastAgiServer
from tests.agi_caller import CLOSE, HANG_UP, FakeAsterisk, recorded_conversation

SAMPLES = Path(__file__).parent.parent / "dialplans" / "ivr"
PARIS = ZoneInfo("Europe/Paris")
OPEN = datetime(2026, 3, 10, 10, 0, tzinfo=PARIS)
CLOSED = datetime(2026, 3, 10, 21, 30, tzinfo=PARIS)


@pytest.fixture
def library() -> FlowLibrary:
    library = FlowLibrary(SAMPLES)
    assert library.reload().refused == ()
    return library


@pytest.fixture
def directory() -> MemoryDirectory:
    return MemoryDirectory([
        (Customer(id="c-vip", name="Vera", tier="VIP", account="900001",
                  numbers=("+33611111111",), balance=Decimal("5000")), "9999"),
        (Customer(id="c-alice", name="Alice", account="123456", numbers=("+33622222222",),
                  balance=Decimal("1234.56")), "4321"),
        (Customer(id="c-bob", name="Bob", account="1234567890", balance=Decimal("7")), "2468"),
    ])


async def call(fake: FakeAsterisk, library: FlowLibrary, directory: CustomerDirectory, *,
               now: datetime = OPEN,
               on_outcome: Callable[[IvrOutcome], Awaitable[None]] | None = None,
               ) -> tuple[IvrOutcome, FastAgiServer]:
    """One call through the real server; returns the outcome it reported."""
    outcomes: list[IvrOutcome] = []
    reported = asyncio.Event()

    async def sink(outcome: IvrOutcome) -> None:
        outcomes.append(outcome)
        reported.set()
        if on_outcome is not None:
            await on_outcome(outcome)

    server = FastAgiServer(ivr_routes(library, directory, sink, lambda: now), port=0)
    await server.start()
    try:
        await fake.call(server.port)
        await asyncio.wait_for(reported.wait(), 5)
    finally:
        await server.close()
    [outcome] = outcomes
    return outcome, server


# -- main.yaml ---------------------------------------------------------------


async def test_sales_choice_sets_the_routing_variables(
        library: FlowLibrary, directory: MemoryDirectory) -> None:
    fake = FakeAsterisk(["1"], caller="+33699999999")
    outcome, server = await call(fake, library, directory)
    assert fake.commands == [
        "ANSWER",
        'STREAM FILE cti/welcome ""',
        "GET DATA cti/main-menu 5000 1",
        'SET VARIABLE CTI_SERVICE "sales"',
        'SET VARIABLE CTI_PRIORITY "standard"',
        'SET VARIABLE CTI_SKILLS "sales:1"',
    ]
    assert (outcome.ending.kind, outcome.ending.service) == (EndKind.HANDOFF, "sales")
    assert (outcome.call, outcome.flow, outcome.did) == ("1795369761.62", "main", "0140000010")
    assert (outcome.caller, outcome.language) == ("+33699999999", "en")
    assert [(c.step, c.digit) for c in outcome.choices] == [("main_menu", "1")]
    assert server.completed == 1 and server.failed == 0


async def test_support_then_callback(library: FlowLibrary, directory: MemoryDirectory) -> None:
    fake = FakeAsterisk(["2", "2"], caller="+33622222222")
    outcome, _ = await call(fake, library, directory)
    assert (outcome.ending.kind, outcome.ending.number) == (EndKind.CALLBACK, "+33622222222")
    assert fake.variables == {"CTI_SERVICE": "support", "CTI_STATE": "done",
                              "CTI_CUSTOMER": "c-alice"}
    assert outcome.customer == "c-alice" and not outcome.verified


async def test_account_choice_attaches_data(library: FlowLibrary,
                                            directory: MemoryDirectory) -> None:
    outcome, _ = await call(FakeAsterisk(["3"]), library, directory)
    assert outcome.ending.service == "accounts"
    assert dict(outcome.data) == {"topic": "account"}


async def test_vip_is_recognised_by_number_and_sent_to_the_priority_service(
        library: FlowLibrary, directory: MemoryDirectory) -> None:
    fake = FakeAsterisk([], caller="+33611111111")
    outcome, _ = await call(fake, library, directory)
    assert fake.commands == [
        "ANSWER",
        'STREAM FILE cti/vip-welcome ""',
        'SET VARIABLE CTI_SERVICE "premium"',
        'SET VARIABLE CTI_PRIORITY "vip"',
        'SET VARIABLE CTI_SKILLS "premium:1"',
        'SET VARIABLE CTI_CUSTOMER "c-vip"',
    ]
    assert (outcome.ending.priority, outcome.customer) == ("vip", "c-vip")


async def test_closed_hours_say_goodbye_and_end_the_call(
        library: FlowLibrary, directory: MemoryDirectory) -> None:
    fake = FakeAsterisk([None, None], caller="+33699999999")
    outcome, _ = await call(fake, library, directory, now=CLOSED)
    assert fake.commands[1:] == [
        "GET DATA cti/closed-offer-callback 5000 1",
        "GET DATA cti/closed-offer-callback 5000 1",
        'STREAM FILE cti/closed-goodbye ""',
        'SET VARIABLE CTI_STATE "done"',  # [cti-inbound] hangs up, does not queue
    ]
    assert (outcome.ending.kind, outcome.ending.step) == (EndKind.HANGUP, "closed_goodbye")


async def test_hang_up_mid_menu_ends_cleanly(library: FlowLibrary,
                                             directory: MemoryDirectory) -> None:
    fake = FakeAsterisk([HANG_UP])
    outcome, server = await call(fake, library, directory)
    # GET DATA's -1 is also a missing prompt: one CHANNEL STATUS (511 after
    # the HANGUP) tells them apart, and nothing more is sent.
    assert fake.commands[-2:] == ["GET DATA cti/main-menu 5000 1", "CHANNEL STATUS"]
    assert (outcome.ending.kind, outcome.ending.step) == (EndKind.CALLER_HUNG_UP, "main_menu")
    assert fake.variables == {}
    assert server.completed == 1 and server.active == 0


async def test_caller_socket_closing_mid_menu_ends_cleanly(
        library: FlowLibrary, directory: MemoryDirectory) -> None:
    outcome, server = await call(FakeAsterisk([CLOSE]), library, directory)
    assert (outcome.ending.kind, outcome.ending.step) == (EndKind.CALLER_HUNG_UP, "main_menu")
    assert server.completed == 1


async def test_hang_up_during_a_prompt_is_noticed_before_the_next_step(
        library: FlowLibrary, directory: MemoryDirectory) -> None:
    fake = FakeAsterisk(["1"], hang_up_during=frozenset({"cti/welcome"}))
    outcome, _ = await call(fake, library, directory)
    # STREAM FILE says -1 for a missing file and for a hangup alike; the
    # CHANNEL STATUS that tells them apart gets HANGUP then 511.
    assert fake.commands == ["ANSWER", 'STREAM FILE cti/welcome ""', "CHANNEL STATUS"]
    assert (outcome.ending.kind, outcome.ending.step) == (EndKind.CALLER_HUNG_UP, "welcome")


async def test_a_missing_prompt_file_is_skipped(library: FlowLibrary,
                                                directory: MemoryDirectory) -> None:
    fake = FakeAsterisk(["1"], missing_sounds=frozenset({"cti/welcome"}))
    with capture_logs() as logs:
        outcome, _ = await call(fake, library, directory)
    assert fake.commands[1:4] == ['STREAM FILE cti/welcome ""', "CHANNEL STATUS",
                                  "GET DATA cti/main-menu 5000 1"]
    assert outcome.ending.service == "sales"
    assert any(e["event"] == "ivr.prompt_failed" and e["sound"] == "cti/welcome" for e in logs)


async def test_silent_caller_goes_to_support_after_the_retries(
        library: FlowLibrary, directory: MemoryDirectory) -> None:
    fake = FakeAsterisk([None, None, None])
    outcome, _ = await call(fake, library, directory)
    assert fake.commands[2:] == [
        "GET DATA cti/main-menu 5000 1",
        'STREAM FILE cti/no-choice ""', "GET DATA cti/main-menu 5000 1",
        'STREAM FILE cti/no-choice ""', "GET DATA cti/main-menu 5000 1",
        'SET VARIABLE CTI_SERVICE "support"', 'SET VARIABLE CTI_PRIORITY "standard"',
        'SET VARIABLE CTI_SKILLS "support:1"',
    ]
    assert outcome.ending.step == "support_handoff" and outcome.choices == ()


async def test_unknown_flow_goes_to_the_default_service(
        library: FlowLibrary, directory: MemoryDirectory) -> None:
    fake = FakeAsterisk([], script="ivr?flow=nope")
    outcome, _ = await call(fake, library, directory)
    assert fake.commands == ['SET VARIABLE CTI_SERVICE "general"',
                             'SET VARIABLE CTI_PRIORITY "standard"']
    assert (outcome.ending.kind, outcome.ending.service, outcome.flow) == (
        EndKind.ERROR, "general", "nope")


async def test_a_failing_outcome_consumer_does_not_change_the_call(
        library: FlowLibrary, directory: MemoryDirectory) -> None:
    async def broken(outcome: IvrOutcome) -> None:
        raise RuntimeError("screen pop is down")

    fake = FakeAsterisk(["1"])
    with capture_logs() as logs:
        _, server = await call(fake, library, directory, on_outcome=broken)
    assert fake.variables["CTI_SERVICE"] == "sales"
    assert server.completed == 1
    assert [e["event"] for e in logs if e["log_level"] == "error"] == [
        "ivr.outcome_not_delivered"]


async def test_a_failing_directory_hands_the_call_to_the_fallback_service(
        library: FlowLibrary) -> None:
    class Down(MemoryDirectory):
        async def by_number(self, number: str) -> Customer | None:
            raise ConnectionError("redis is down")

    fake = FakeAsterisk([])
    outcome, _ = await call(fake, library, Down())
    assert (outcome.ending.kind, outcome.ending.service) == (EndKind.ERROR, "support")
    assert fake.variables == {"CTI_SERVICE": "support", "CTI_PRIORITY": "standard"}


async def test_a_stalled_asterisk_gets_no_more_commands(
        library: FlowLibrary, directory: MemoryDirectory) -> None:
    outcomes: list[IvrOutcome] = []

    async def sink(outcome: IvrOutcome) -> None:
        outcomes.append(outcome)

    fake = FakeAsterisk(["1"], stall_during=frozenset({"cti/welcome"}))
    server = FastAgiServer(ivr_routes(library, directory, sink, lambda: OPEN), port=0,
                           command_timeout=0.2)
    await server.start()
    try:
        with capture_logs() as logs:
            await fake.call(server.port)  # returns when the server hangs up the AGI
    finally:
        await server.close()
    # A late result would be read as the next command's: nothing is sent.
    assert fake.commands == ["ANSWER", 'STREAM FILE cti/welcome ""']
    [outcome] = outcomes
    assert (outcome.ending.kind, outcome.ending.service) == (EndKind.ERROR, "support")
    assert outcome.ending.reason == "PlaySounds timed out"
    assert {"ivr.action_timeout", "ivr.finish_skipped"} <= {e["event"] for e in logs}


# -- balance.yaml ------------------------------------------------------------


async def test_balance_is_said_then_the_caller_leaves_self_served(
        library: FlowLibrary, directory: MemoryDirectory) -> None:
    fake = FakeAsterisk(["123456", "4321", None], script="ivr?did=0140000020")
    outcome, _ = await call(fake, library, directory)
    assert fake.commands[1:] == [
        'STREAM FILE cti/balance-welcome ""',
        "GET DATA cti/enter-account 5000 10",
        "GET DATA cti/enter-pin 5000 6",
        'STREAM FILE cti/your-balance-is ""',
        'SAY NUMBER 1234 ""', 'STREAM FILE euros ""', 'STREAM FILE and ""',
        'SAY NUMBER 56 ""', 'STREAM FILE cents ""',
        "GET DATA cti/agent-or-goodbye 4000 1",
        'STREAM FILE vm-goodbye ""',
        'SET VARIABLE CTI_STATE "done"', 'SET VARIABLE CTI_CUSTOMER "c-alice"',
    ]
    assert outcome.flow == "balance" and outcome.verified and outcome.customer == "c-alice"
    assert dict(outcome.fields) == {"account": "123456"}


async def test_three_wrong_pins_lock_self_service_and_log_it(
        library: FlowLibrary, directory: MemoryDirectory) -> None:
    fake = FakeAsterisk(["123456", "0000", "1111", "2222"], script="ivr?flow=balance")
    with capture_logs() as logs:
        outcome, _ = await call(fake, library, directory)
    assert fake.sent("GET DATA cti/enter-pin") == ["GET DATA cti/enter-pin 5000 6"] * 3
    assert fake.sent("STREAM FILE cti/wrong-pin") == ['STREAM FILE cti/wrong-pin ""'] * 2
    assert 'STREAM FILE cti/self-service-locked ""' in fake.commands
    [locked] = [e for e in logs if e["event"] == "ivr.pin_locked"]
    until = OPEN + timedelta(minutes=30)
    assert (locked["customer"], locked["tries"], locked["until"]) == (
        "c-alice", 3, until.isoformat())
    assert locked["log_level"] == "warning"
    assert not any("0000" in repr(entry) for entry in logs)  # PINs never logged
    alice = directory.get("c-alice")
    assert alice is not None and alice.locked_until == until
    assert (outcome.ending.kind, outcome.ending.service) == (EndKind.HANDOFF, "accounts")
    assert not outcome.verified

    # The right PIN, ten minutes later: still locked, not even asked.
    again = FakeAsterisk(["123456", "4321"], script="ivr?flow=balance")
    outcome, _ = await call(again, library, directory, now=OPEN + timedelta(minutes=10))
    assert again.sent("GET DATA cti/enter-pin") == []
    assert outcome.ending.service == "accounts" and not outcome.verified


async def test_account_digit_flood_is_cut_to_max_length(
        library: FlowLibrary, directory: MemoryDirectory) -> None:
    # Asterisk stops at max digits; even if more come back, extras are dropped.
    fake = FakeAsterisk(["123456789012345", "2468", "1"], script="ivr?flow=balance")
    outcome, _ = await call(fake, library, directory)
    assert outcome.fields["account"] == "1234567890"
    assert outcome.customer == "c-bob" and outcome.verified
    assert outcome.ending.service == "accounts"


async def test_account_numbers_keep_their_leading_zeros(
        library: FlowLibrary, directory: MemoryDirectory) -> None:
    directory.add(Customer(id="c-007", account="007007", balance=Decimal("0.5")), pin="0000")
    fake = FakeAsterisk(["007007", "0000", "1"], script="ivr?flow=balance")
    outcome, _ = await call(fake, library, directory)
    assert outcome.fields["account"] == "007007"
    assert outcome.customer == "c-007" and outcome.verified
    assert 'SAY NUMBER 0 ""' in fake.commands and 'SAY NUMBER 50 ""' in fake.commands


# -- step kinds the samples do not use ---------------------------------------


async def test_star_terminated_entry_and_transfer_to_a_number(
        tmp_path: Path, directory: MemoryDirectory) -> None:
    (tmp_path / "main.yaml").write_text("""\
fallback_service: general
steps:
  - id: order
    type: collect
    prompt: cti/order
    into: order
    max_length: 6
    terminator: "*"
    timeout: 3
    next: note
    on_invalid: out
  - {id: note, type: set_data, data: {order: "${fields.order}"}, export: true, next: due}
  - {id: due, type: say, kind: date, value: "2026-04-30", next: out}
  - {id: out, type: transfer, number: "+33140000099", context: from-cti}
""")
    library = FlowLibrary(tmp_path)
    library.reload()
    fake = FakeAsterisk(["1", "2", "3", "*"])
    outcome, _ = await call(fake, library, directory)
    assert fake.commands == [
        "ANSWER",
        'STREAM FILE cti/order "0123456789*#"',
        "WAIT FOR DIGIT 3000", "WAIT FOR DIGIT 3000", "WAIT FOR DIGIT 3000",
        "WAIT FOR DIGIT 3000",
        'SET VARIABLE IVR_ORDER "123"',
        # midnight UTC, said in UTC: the date whatever the server's zone
        f'SAY DATETIME {calendar.timegm((2026, 4, 30, 0, 0, 0))} "" "ABdY" UTC',
        'SET VARIABLE CTI_STATE "transferred"',
        "SET CONTEXT from-cti", "SET EXTENSION +33140000099", "SET PRIORITY 1",
    ]
    assert (outcome.ending.kind, outcome.ending.number) == (EndKind.TRANSFER, "+33140000099")
    assert dict(outcome.data) == {"order": "123"}


# -- the real bytes of Asterisk 22 -------------------------------------------

# A flow whose commands are those of recording 08's agi1 (prompts, GET DATA
# timeouts and lengths), so each is answered with what Asterisk really sent.
RECORDED_FLOW = """\
fallback_service: support
steps:
  - {id: hello, type: play, prompt: hello-world, next: menu}
  - id: menu
    type: menu
    prompt: basic-pbx-ivr-main
    options: {1: done, 2: echo}
    timeout: 5
    on_invalid: done
  - {id: echo, type: play, prompt: you-entered, next: say_choice}
  - {id: say_choice, type: say, kind: digits, value: "${choice.menu}", next: account}
  - id: account
    type: collect
    prompt: agent-pass
    into: account
    min_length: 4
    max_length: 6
    timeout: 10
    next: remember
    on_invalid: done
  - id: remember
    type: set_data
    data: {choice: "${choice.menu}", account: "${fields.account}"}
    export: true
    next: done
  - {id: done, type: handoff, service: support}
"""


def recorded_exchange(conn: str) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The env block, then each command sent with the exact bytes received."""
    conversation = recorded_conversation(conn)
    return conversation.env, [(command, "".join(f"{line}\n" for line in answer).encode())
                              for command, answer in conversation.exchange]


async def replay_asterisk(port: int, conn: str) -> list[str]:
    """Answer each command with the recorded reply of the same recorded
    command (the recorded flow probed more, e.g. CHANNEL STATUS, which ours
    skips). Our final routing variables were not in that call: they get the
    reply Asterisk gave to its SET VARIABLE. Returns the recorded commands
    matched, in order."""
    env, exchange = recorded_exchange(conn)
    set_variable_reply = next(r for c, r in exchange if c.startswith("SET VARIABLE"))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    matched: list[str] = []
    cursor = 0
    try:
        writer.write(env)
        while raw := await asyncio.wait_for(reader.readline(), 5):
            ours = shlex.split(raw.decode())
            for index in range(cursor, len(exchange)):
                if shlex.split(exchange[index][0]) == ours:
                    matched.append(exchange[index][0])
                    writer.write(exchange[index][1])
                    cursor = index + 1
                    break
            else:
                assert ours[:3] in (["SET", "VARIABLE", "CTI_SERVICE"],
                                    ["SET", "VARIABLE", "CTI_PRIORITY"]), ours
                writer.write(set_variable_reply)
            await writer.drain()
    finally:
        writer.close()
        await writer.wait_closed()
    return matched


async def test_a_flow_consumes_the_real_bytes_of_recording_08(
        tmp_path: Path, directory: MemoryDirectory) -> None:
    (tmp_path / "main.yaml").write_text(RECORDED_FLOW)  # agi1 asked for ?flow=main
    library = FlowLibrary(tmp_path)
    library.reload()
    outcomes: list[IvrOutcome] = []

    async def sink(outcome: IvrOutcome) -> None:
        outcomes.append(outcome)

    server = FastAgiServer(ivr_routes(library, directory, sink, lambda: OPEN), port=0)
    await server.start()
    try:
        matched = await replay_asterisk(server.port, "agi1")
    finally:
        await server.close()
    assert matched == [
        "ANSWER",
        'STREAM FILE hello-world ""',
        "GET DATA basic-pbx-ivr-main 5000 1",  # -> 200 result=2
        'STREAM FILE you-entered ""',
        'SAY DIGITS 2 ""',
        "GET DATA agent-pass 10000 6",  # -> 200 result=1234 (# ended it)
        "SET VARIABLE IVR_CHOICE 2",
        "SET VARIABLE IVR_ACCOUNT 1234",
    ]
    [outcome] = outcomes
    assert [(c.step, c.digit) for c in outcome.choices] == [("menu", "2")]
    assert dict(outcome.fields) == {"account": "1234"}
    assert (outcome.ending.kind, outcome.ending.service) == (EndKind.HANDOFF, "support")
    assert (outcome.call, outcome.caller, outcome.did) == (
        "1795369761.62", "+33677777777", "0140000010")
    assert outcome.path == ("hello", "menu", "echo", "say_choice", "account", "remember", "done")
