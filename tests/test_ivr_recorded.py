"""The shipped flows (dialplans/ivr) through the real FastAGI server of
`cti serve` (the IVR feature of a Server, a real redis-server), with the
FastAGI peer that answers as Asterisk 22 did in recording 08
(tests/agi_caller.py RecordedAsterisk).

First the peer itself is held to the recording: given the commands of
recording 08 it must send back the recorded bytes. Then each flow runs
through the server, and the tests look at what the server leaves for the
rest of the center: the IVR outcome the pop and the router read from Redis,
the channel variables routing reads (CTI_SERVICE, CTI_PRIORITY...), the PIN
lock and counter in the customer store, and that every AGI socket is closed
and every session task gone when a call ends.

The server's clock is shifted to a known weekday morning or Sunday evening
(tests/test_ivr_e2e.py) so business hours do not depend on when the suite
runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from structlog.testing import capture_logs

from cti.app import Server
from cti.center import center_from
from cti.config import load_settings
from cti.customers.models import Customer
from cti.customers.pins import hash_pin
from cti.customers.store import CustomerStore
from cti.ivr.agi import AgiError, AgiSession
from cti.ivr.feature import IvrFeature, outcome_key
from cti.ivr.server import FastAgiServer
from cti.store.connection import open_store
from tests.agi_caller import (
    HANG_UP,
    RecordedAsterisk,
    asterisk_lines,
    recorded_conversation,
)
from tests.servers import free_port, redis_server
from tests.test_ivr_e2e import CLOSED, OPEN, shifted

pytestmark = [pytest.mark.timeout(30), pytest.mark.integration]

SAMPLES = Path(__file__).parent.parent / "dialplans" / "ivr"
MAIN_DID = "0140000010"
BALANCE_DID = "0140000020"
UNKNOWN = "+33699999999"

VERA = Customer(id="c-vera", name="Vera", tier="vip", phones=["+33611111111"],
                account="900001", pin_hash=hash_pin("9999"))
ALICE = Customer(id="c-alice", name="Alice", phones=["+33622222222"], account="123456",
                 balance=Decimal("1234.56"), pin_hash=hash_pin("4321"))


# -- the peer against the recording -----------------------------------------------


@pytest.mark.parametrize("hangup_late", [False, True])
@pytest.mark.parametrize(("conn", "keys"), [("agi1", ["2", "1234#"]), ("agi2", [HANG_UP])])
async def test_the_peer_answers_recording_08_with_its_own_bytes(
        conn: str, keys: list[str | None], hangup_late: bool) -> None:
    conversation = recorded_conversation(conn)
    values = dict(line.split(": ", 1) for line in
                  conversation.env.decode().splitlines() if line.startswith("agi_"))
    peer = RecordedAsterisk(
        list(keys), script=values["agi_network_script"], caller=values["agi_callerid"],
        caller_name=values["agi_calleridname"], uniqueid=values["agi_uniqueid"],
        channel=values["agi_channel"], context=values["agi_context"],
        extension=values["agi_extension"], priority=values["agi_priority"],
        args=tuple(v for k, v in values.items() if k.startswith("agi_arg_")),
        environment={"agi_threadid": values["agi_threadid"]}, hangup_late=hangup_late)
    assert peer.env(4573) == conversation.env

    async def recorded_server_side(session: AgiSession) -> None:
        for command, _ in conversation.exchange:
            with contextlib.suppress(AgiError):  # 510, 520 and 511 are answers too
                await session.command(command)

    server = FastAgiServer({"ivr": recorded_server_side}, port=0)
    await server.start()
    try:
        await peer.call(server.port)
    finally:
        await server.close()
    assert peer.commands == [command for command, _ in conversation.exchange]
    assert b"".join(peer.replies) == conversation.received
    if not hangup_late:
        assert peer.replies == ["".join(f"{line}\n" for line in answer).encode()
                                for _, answer in conversation.exchange]
    assert peer.closed_by_server


# -- the server as `cti serve` runs it --------------------------------------------


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@dataclass
class Ivr:
    server: Server
    feature: IvrFeature
    redis: Redis
    calls: int = 0
    ended: list[RecordedAsterisk] = field(default_factory=list)

    def caller(self, keys: list[str | None], *, number: str | None = UNKNOWN,
               did: str = MAIN_DID, **options: Any) -> RecordedAsterisk:
        """A caller on `did` (script ivr?did=, as dialplans/cti.conf calls
        it) with a uniqueid of its own."""
        self.calls += 1
        return RecordedAsterisk(keys, script=f"ivr?did={did}", caller=number, extension=did,
                                uniqueid=f"1795369761.{60 + 2 * self.calls}", **options)

    async def call(self, peer: RecordedAsterisk) -> dict[str, object]:
        """Run the call to its end; the outcome the pop reads."""
        completed = self.feature.agi.completed
        ended = Counter(self.feature.ended)
        await asyncio.wait_for(peer.call(self.feature.agi.port), 10)
        # Asterisk never closes the AGI socket itself: the server must.
        assert peer.closed_by_server
        await self.settled()
        assert (self.feature.agi.completed, self.feature.agi.failed) == (completed + 1, 0)
        raw = await self.redis.get(outcome_key(peer.uniqueid))
        assert raw is not None, f"no IVR outcome stored for {peer.uniqueid}"
        assert 86_000 < await self.redis.ttl(outcome_key(peer.uniqueid)) <= 86_400
        pop: dict[str, object] = json.loads(raw)
        # the metrics count the call once, by flow and ending
        assert self.feature.ended - ended == Counter({(pop["flow"], pop["ended"]): 1})
        return pop

    async def settled(self) -> None:
        """No FastAGI session left, neither counted nor as a task."""
        deadline = time.monotonic() + 5
        while self.feature.agi.active or _agi_tasks():
            assert time.monotonic() < deadline, f"sessions left: {_agi_tasks()}"
            await asyncio.sleep(0.01)

    async def failures(self, customer: str) -> str | None:
        value: str | None = await self.redis.get(
            self.server.customers.keys.pin_failures(customer))
        return value

    async def lock(self, customer: str) -> tuple[dict[str, str], int] | None:
        key = self.server.customers.keys.pin_lock(customer)
        value = await self.redis.get(key)
        return None if value is None else (json.loads(value), await self.redis.pttl(key))


def _agi_tasks() -> list[asyncio.Task[object]]:
    return [task for task in asyncio.all_tasks()
            if getattr(task.get_coro(), "__qualname__", "").startswith("FastAgiServer.")]


@asynccontextmanager
async def ivr(redis_url: str, now: datetime = OPEN) -> AsyncIterator[Ivr]:
    store = await open_store(redis_url)
    await store.redis.flushdb()
    await CustomerStore(store.redis).put_many([VERA, ALICE])
    # No Asterisk on AMI: the link retries in the background, the IVR does
    # not need it.
    settings = load_settings(None, {
        "CTI_AMI_PORT": str(free_port()), "CTI_HTTP_PORT": str(free_port()),
        "CTI_AGI_PORT": str(free_port()), "CTI_CENTER_FLOWS": str(SAMPLES)})
    center = center_from({
        "services": {name: {"skills": {name: 1}}
                     for name in ("support", "sales", "accounts", "premium")},
        "agents": [], "default_service": "support"}, "recorded center")
    server = Server(settings, center, store, clock=shifted(now))
    [feature] = [f for f in server.features if isinstance(f, IvrFeature)]
    try:
        await server.start()
        assert (sorted(feature.library.flows), dict(feature.library.errors)) == (
            ["balance", "main"], {})
        yield Ivr(server, feature, store.redis)
    finally:
        await server.stop()
        await store.close()


def pop_of(flow: str, *, ended: str, service: str | None = None, priority: str | None = None,
           choices: tuple[tuple[str, str], ...] = (), customer: str | None = None,
           verified: bool = False, language: str = "en") -> dict[str, object]:
    """The screen pop's IVR part as cti/ivr/feature.py pop_of() writes it."""
    return {"flow": flow, "choices": [{"step": step, "digit": digit} for step, digit in choices],
            "customer_id": customer, "verified": verified, "service": service,
            "priority": priority, "language": language, "ended": ended}


DEAD = asterisk_lines().dead


# -- main.yaml ---------------------------------------------------------------------


@pytest.mark.parametrize(("keys", "choices", "service", "skills", "menus"), [
    (["1"], (("main_menu", "1"),), "sales", "sales:1", ["cti/main-menu"]),
    (["2", "1"], (("main_menu", "2"), ("support", "1")), "support", "support:1",
     ["cti/main-menu", "cti/support-wait-or-callback"]),
    (["3"], (("main_menu", "3"),), "accounts", "billing:1", ["cti/main-menu"]),
], ids=["sales", "support", "accounts"])
async def test_each_main_menu_choice_hands_the_call_to_its_service(
        redis_url: str, keys: list[str | None], choices: tuple[tuple[str, str], ...],
        service: str, skills: str, menus: list[str]) -> None:
    async with ivr(redis_url) as r:
        peer = r.caller(list(keys))
        pop = await r.call(peer)
    assert pop == pop_of("main", ended="handoff", service=service, priority="standard",
                         choices=choices)
    assert peer.variables == {"CTI_SERVICE": service, "CTI_PRIORITY": "standard",
                              "CTI_SKILLS": skills}
    assert [c.split()[2] for c in peer.sent("GET DATA")] == menus
    assert (peer.agi_status, peer.hung_up_at, peer.keys) == ("SUCCESS", None, [])


async def test_nine_switches_the_menu_and_the_channel_to_french(redis_url: str) -> None:
    async with ivr(redis_url) as r:
        peer = r.caller(["9", "1"])
        pop = await r.call(peer)
    assert pop == pop_of("main", ended="handoff", service="sales", priority="standard",
                         choices=(("main_menu", "9"), ("main_menu", "1")), language="fr")
    assert peer.sent("GET DATA") == ["GET DATA cti/main-menu 5000 1",
                                     "GET DATA cti/fr/main-menu 5000 1"]
    assert peer.language == "fr"  # CHANNEL(language): Asterisk's own prompts too
    assert peer.variables["CTI_SERVICE"] == "sales"


async def test_asking_for_a_callback_ends_the_ivr_without_queueing(redis_url: str) -> None:
    async with ivr(redis_url) as r:
        peer = r.caller(["2", "2"])
        pop = await r.call(peer)
    assert pop == pop_of("main", ended="callback", service="support",
                         choices=(("main_menu", "2"), ("support", "2")))
    # CTI_STATE=done: [cti-inbound] hangs up instead of queueing
    assert peer.variables == {"CTI_SERVICE": "support", "CTI_STATE": "done"}
    assert peer.commands[-3] == 'STREAM FILE cti/callback-confirmed ""'


async def test_a_vip_recognised_by_number_goes_to_the_premium_line(redis_url: str) -> None:
    async with ivr(redis_url) as r:
        peer = r.caller([], number=VERA.phones[0])
        pop = await r.call(peer)
    assert pop == pop_of("main", ended="handoff", service="premium", priority="vip",
                         customer="c-vera")
    assert peer.variables == {"CTI_SERVICE": "premium", "CTI_PRIORITY": "vip",
                              "CTI_SKILLS": "premium:1", "CTI_CUSTOMER": "c-vera"}
    assert peer.commands == ["ANSWER", 'STREAM FILE cti/vip-welcome ""',
                             'SET VARIABLE CTI_SERVICE "premium"',
                             'SET VARIABLE CTI_PRIORITY "vip"',
                             'SET VARIABLE CTI_SKILLS "premium:1"',
                             'SET VARIABLE CTI_CUSTOMER "c-vera"']


@pytest.mark.parametrize(("number", "keys", "ended", "service", "variables", "last_sound"), [
    (UNKNOWN, [None, None], "hangup", None, {"CTI_STATE": "done"}, "cti/closed-goodbye"),
    (UNKNOWN, ["1"], "callback", "support", {"CTI_SERVICE": "support", "CTI_STATE": "done"},
     "cti/callback-confirmed"),
    (VERA.phones[0], [None, None], "hangup", None,
     {"CTI_STATE": "done", "CTI_CUSTOMER": "c-vera"}, "cti/closed-goodbye"),
], ids=["silent", "callback", "vip"])
async def test_closed_hours_offer_a_callback_and_never_queue(
        redis_url: str, number: str, keys: list[str | None], ended: str, service: str | None,
        variables: dict[str, str], last_sound: str) -> None:
    async with ivr(redis_url, CLOSED) as r:
        peer = r.caller(list(keys), number=number)
        pop = await r.call(peer)
    assert pop["ended"] == ended and pop["service"] == service
    assert pop["priority"] is None  # nothing for the router
    assert peer.variables == variables
    assert peer.sent("GET DATA") == ["GET DATA cti/closed-offer-callback 5000 1"] * len(keys)
    assert peer.sent("STREAM FILE") == [f'STREAM FILE {last_sound} ""']


@pytest.mark.parametrize(("did", "flow", "prompt", "notices", "service"), [
    (MAIN_DID, "main", "GET DATA cti/main-menu 5000 1",
     ['STREAM FILE cti/no-choice ""'] * 2, "support"),
    (BALANCE_DID, "balance", "GET DATA cti/enter-account 5000 10", [], "accounts"),
])
async def test_a_silent_caller_goes_to_a_person_once_the_retries_are_spent(
        redis_url: str, did: str, flow: str, prompt: str, notices: list[str],
        service: str) -> None:
    async with ivr(redis_url) as r:
        peer = r.caller([None, None, None], did=did)
        pop = await r.call(peer)
    assert pop["flow"] == flow and (pop["ended"], pop["service"]) == ("handoff", service)
    assert peer.sent("GET DATA") == [prompt] * 3
    assert [c for c in peer.sent("STREAM FILE") if "no-choice" in c] == notices
    assert all(reply == b"200 result= (timeout)\n"
               for command, reply in zip(peer.commands, peer.replies, strict=True)
               if command.startswith("GET DATA"))
    assert peer.variables["CTI_SERVICE"] == service


async def test_unknown_keys_and_a_digit_flood_keep_the_first_digit_of_the_menu(
        redis_url: str) -> None:
    async with ivr(redis_url) as r:
        peer = r.caller(["7", "#", "31415926535"])
        pop = await r.call(peer)
    answers = [reply for command, reply in zip(peer.commands, peer.replies, strict=True)
               if command.startswith("GET DATA")]
    # 7 is no option; "#" alone is an empty entry; GET DATA of one digit
    # stops at the 3 of the flood
    assert answers == [b"200 result=7\n", b"200 result=\n", b"200 result=3\n"]
    assert [c for c in peer.sent("STREAM FILE") if "choice" in c] == [
        'STREAM FILE cti/invalid-choice ""', 'STREAM FILE cti/no-choice ""']
    assert pop == pop_of("main", ended="handoff", service="accounts", priority="standard",
                         choices=(("main_menu", "3"),))


@pytest.mark.parametrize("hangup_late", [False, True], ids=["hangup-at-once", "hangup-late"])
@pytest.mark.parametrize(("keys", "during"), [
    ([HANG_UP], None),
    (["7"], "cti/invalid-choice"),
], ids=["during-the-menu", "during-the-retry-notice"])
async def test_a_caller_hanging_up_mid_menu_ends_the_flow_and_its_socket(
        redis_url: str, keys: list[str | None], during: str | None, hangup_late: bool) -> None:
    async with ivr(redis_url) as r:
        peer = r.caller(list(keys), hang_up_during=during, hangup_late=hangup_late)
        pop = await r.call(peer)  # the server closed the socket; no session task left
    assert pop == pop_of("main", ended="caller_hung_up")
    assert peer.hung_up_at is not None and peer.agi_status == "HANGUP"
    # -1 is a hang-up or a failed prompt: one probe of the channel, which
    # gets the HANGUP line (if not sent yet) and 511; then the server closes
    hangup = asterisk_lines().hangup
    assert peer.after_hang_up() == [
        ("CHANNEL STATUS", f"{hangup}\n{DEAD}\n".encode() if hangup_late else
         f"{DEAD}\n".encode())]
    during = peer.replies[peer.hung_up_at - 1]
    assert during.startswith(b"200 result=-1")
    assert during.endswith(f"\n{hangup}\n".encode()) is not hangup_late
    assert "CTI_SERVICE" not in peer.variables


async def test_a_missing_menu_prompt_is_not_taken_for_a_hang_up(redis_url: str) -> None:
    # GET DATA answers -1 when its prompt cannot be played (app.c
    # ast_app_getdata_full), as when the caller hangs up: the caller is
    # still there and must reach somebody.
    async with ivr(redis_url) as r:
        peer = r.caller([], missing_sounds=frozenset({"cti/main-menu"}))
        pop = await r.call(peer)
    assert peer.hung_up_at is None
    assert peer.commands[2:4] == ["GET DATA cti/main-menu 5000 1", "CHANNEL STATUS"]
    assert peer.replies[2:4] == [b"200 result=-1\n", b"200 result=6\n"]
    assert pop == pop_of("main", ended="error", service="support", priority="standard")
    assert peer.variables == {"CTI_SERVICE": "support", "CTI_PRIORITY": "standard"}
    assert peer.agi_status == "SUCCESS"  # [cti-inbound] keeps CTI_SERVICE


async def test_a_caller_gone_before_the_agi_starts_gets_511_from_the_first_command(
        redis_url: str) -> None:
    async with ivr(redis_url) as r:
        peer = r.caller([], dead_on_arrival=True)
        pop = await r.call(peer)
    assert pop == pop_of("main", ended="caller_hung_up")
    assert (peer.commands, peer.replies) == (["ANSWER"], [f"{DEAD}\n".encode()])


# -- balance.yaml ------------------------------------------------------------------


async def test_the_right_pin_has_the_balance_said_and_the_caller_leaves_served(
        redis_url: str) -> None:
    async with ivr(redis_url) as r:
        peer = r.caller(["123456#", "4321#", None], did=BALANCE_DID)
        pop = await r.call(peer)
        assert (await r.failures("c-alice"), await r.lock("c-alice")) == (None, None)
    assert pop == pop_of("balance", ended="hangup", customer="c-alice", verified=True)
    assert peer.commands == [
        "ANSWER",
        'STREAM FILE cti/balance-welcome ""',
        "GET DATA cti/enter-account 5000 10",
        "GET DATA cti/enter-pin 5000 6",
        'STREAM FILE cti/your-balance-is ""',
        'SAY NUMBER 1234 ""',
        'STREAM FILE euros ""',
        'STREAM FILE and ""',
        'SAY NUMBER 56 ""',
        'STREAM FILE cents ""',
        "GET DATA cti/agent-or-goodbye 4000 1",
        'STREAM FILE vm-goodbye ""',
        'SET VARIABLE CTI_STATE "done"',
        'SET VARIABLE CTI_CUSTOMER "c-alice"',
    ]
    assert peer.replies[5] == peer.replies[8] == b"200 result=0\n"


async def test_three_wrong_pins_lock_self_service_and_the_next_call_is_refused(
        redis_url: str) -> None:
    async with ivr(redis_url) as r:
        with capture_logs() as logs:
            peer = r.caller(["123456#", "1111#", "2222#", "3333#"], did=BALANCE_DID)
            pop = await r.call(peer)
        assert pop == pop_of("balance", ended="handoff", service="accounts",
                             priority="standard", customer="c-alice")
        assert peer.sent("GET DATA cti/enter-pin") == ["GET DATA cti/enter-pin 5000 6"] * 3
        assert peer.sent('STREAM FILE cti/wrong-pin') == ['STREAM FILE cti/wrong-pin ""'] * 2
        assert peer.commands[-5] == 'STREAM FILE cti/self-service-locked ""'
        assert peer.variables == {"CTI_SERVICE": "accounts", "CTI_PRIORITY": "standard",
                                  "CTI_SKILLS": "billing:1", "CTI_CUSTOMER": "c-alice"}
        [locked] = [e for e in logs if e["event"] == "ivr.pin_locked"]
        assert (locked["customer"], locked["tries"]) == ("c-alice", 3)
        # PINs never logged (as whole numbers: a deadline's microseconds or
        # a port may hold the same digits)
        keyed = re.compile(r"(?<!\d)(1111|2222|3333)(?!\d)")
        assert not [e for e in logs if keyed.search(repr(e))]
        # the store: three failures counted, self-service locked 30 minutes
        assert await r.failures("c-alice") == "3"
        lock = await r.lock("c-alice")
        assert lock is not None
        reason, ttl_ms = lock[0]["reason"], lock[1]
        assert reason == "3 wrong PINs in the IVR" and 29 * 60_000 < ttl_ms <= 30 * 60_000

        again = r.caller(["123456#", "4321#"], did=BALANCE_DID)
        pop = await r.call(again)
    assert again.keys == ["4321#"]  # the right PIN was never asked for
    assert again.sent("GET DATA") == ["GET DATA cti/enter-account 5000 10"]
    assert 'STREAM FILE cti/self-service-locked ""' in again.commands
    assert not again.sent("SAY")
    assert pop == pop_of("balance", ended="handoff", service="accounts", priority="standard",
                         customer="c-alice")


async def test_one_wrong_pin_per_call_still_locks_self_service_in_the_store(
        redis_url: str) -> None:
    # Hanging up after each wrong PIN dodges the flow's count (3 in a call),
    # not the store's (5 across calls).
    async with ivr(redis_url) as r:
        for tries in range(1, 6):
            peer = r.caller(["123456#", "0000#"], did=BALANCE_DID,
                            hang_up_during="cti/wrong-pin")
            pop = await r.call(peer)
            assert (pop["ended"], pop["verified"]) == ("caller_hung_up", False)
            assert await r.failures("c-alice") == (str(tries) if tries < 5 else None)
        lock = await r.lock("c-alice")
        assert lock is not None and lock[0]["reason"] == "5 wrong PINs across calls"
        again = r.caller(["123456#", "4321#"], did=BALANCE_DID)
        pop = await r.call(again)
    assert again.keys == ["4321#"] and not again.sent("GET DATA cti/enter-pin")
    assert (pop["verified"], pop["service"]) == (False, "accounts")


async def test_a_hang_up_while_the_balance_is_said_is_noticed_at_once(redis_url: str) -> None:
    async with ivr(redis_url) as r:
        peer = r.caller(["123456#", "4321#"], did=BALANCE_DID, hang_up_at=6)
        pop = await r.call(peer)
    assert peer.commands[5:] == ['SAY NUMBER 1234 ""', "CHANNEL STATUS"]
    assert peer.replies[5:] == [f"200 result=-1\n{asterisk_lines().hangup}\n".encode(),
                                f"{DEAD}\n".encode()]
    assert pop == pop_of("balance", ended="caller_hung_up", customer="c-alice", verified=True)


async def test_an_account_number_flood_is_cut_to_its_ten_digits(redis_url: str) -> None:
    async with ivr(redis_url) as r:
        peer = r.caller(["12345678901234567890#"], did=BALANCE_DID)
        pop = await r.call(peer)
    assert peer.replies[2] == b"200 result=1234567890\n"
    assert 'STREAM FILE cti/unknown-account ""' in peer.commands
    assert pop == pop_of("balance", ended="handoff", service="accounts", priority="standard")
