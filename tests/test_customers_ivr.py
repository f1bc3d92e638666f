"""The Redis customer directory as the IVR uses it: look-ups by number and
account, PIN checks, and the self-service lock kept in Redis with an
expiry; then the shipped balance flow run over FastAGI against it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import fakeredis
import pytest
from structlog.testing import capture_logs

from cti.customers import (
    Customer,
    CustomerStore,
    RedisDirectory,
    UnknownCustomer,
    hash_pin,
)
from cti.ivr.flows import EndKind, FlowLibrary, IvrOutcome, ivr_routes
from cti.ivr.flows.directory import CustomerDirectory
from cti.ivr.server import FastAgiServer
from cti.store import open_store
from tests.agi_caller import FakeAsterisk
from tests.servers import redis_server

SAMPLES = Path(__file__).parent.parent / "dialplans" / "ivr"
PARIS = ZoneInfo("Europe/Paris")
OPEN = datetime(2026, 3, 10, 10, 0, tzinfo=PARIS)

ALICE = Customer(id="c-alice", name="Alice Martin", phones=["+33622222222"], account="123456",
                 balance=Decimal("1234.56"), segment={"recency_days": 3, "label": "loyal"},
                 pin_hash=hash_pin("4321"))
VERA = Customer(id="c-vip", name="Vera", tier="vip", phones=["+33611111111"],
                account="900001", pin_hash=hash_pin("9999"))


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(OPEN)


@pytest.fixture
async def store() -> AsyncIterator[CustomerStore]:
    redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(), decode_responses=True)
    customers = CustomerStore(redis)
    await customers.put_many([ALICE, VERA])
    try:
        yield customers
    finally:
        await redis.aclose()


@pytest.fixture
def directory(store: CustomerStore, clock: Clock) -> RedisDirectory:
    return RedisDirectory(store, clock=clock, max_failures=4)


async def test_callers_are_identified_by_number_or_account(directory: RedisDirectory) -> None:
    satisfied: CustomerDirectory = directory  # the IVR's protocol
    alice = await satisfied.by_number("+33622222222")
    assert alice is not None
    assert (alice.id, alice.name, alice.tier, alice.account) == (
        "c-alice", "Alice Martin", "standard", "123456")
    assert alice.numbers == ("+33622222222",)
    assert alice.balance == Decimal("1234.56") and alice.currency == "EUR"
    assert dict(alice.attributes) == {"recency_days": "3", "label": "loyal"}
    assert alice.locked_until is None
    vera = await directory.by_number("0611111111")  # as a caller id presents it
    assert vera is not None and vera.tier == "vip"
    vera = await directory.by_account("900001")
    assert vera is not None and vera.id == "c-vip"
    assert await directory.by_number("+33699999999") is None
    assert await directory.by_account("000000") is None


async def test_the_right_pin_passes_and_a_wrong_one_does_not(directory: RedisDirectory) -> None:
    assert await directory.check_pin("c-alice", "4321")
    assert not await directory.check_pin("c-alice", "1234")
    assert not await directory.check_pin("c-nobody", "4321")
    await directory.customers.put(ALICE.model_copy(update={"id": "c-nopin", "phones": [],
                                                           "account": None, "pin_hash": None}))
    assert not await directory.check_pin("c-nopin", "4321")


async def test_a_lock_from_the_ivr_refuses_even_the_right_pin_until_it_ends(
        directory: RedisDirectory, store: CustomerStore, clock: Clock) -> None:
    until = OPEN + timedelta(minutes=30)
    with capture_logs() as logs:
        await directory.lock_self_service("c-alice", until, "3 wrong PINs in the IVR")
    assert [e["event"] for e in logs] == ["customers.self_service_locked"]
    alice = await directory.by_account("123456")
    assert alice is not None and alice.locked_until == until and alice.locked_at(OPEN)
    lock = await directory.self_service_lock("c-alice")
    assert lock is not None and lock.reason == "3 wrong PINs in the IVR"
    # The key expires with the lock: 30 minutes by the IVR's clock.
    ttl = await store.redis.pttl(store.keys.pin_lock("c-alice"))
    assert 29 * 60_000 < ttl <= 30 * 60_000
    clock.now = OPEN + timedelta(minutes=10)
    assert not await directory.check_pin("c-alice", "4321")
    clock.now = OPEN + timedelta(minutes=31)
    assert await directory.check_pin("c-alice", "4321")
    alice = await directory.by_number("+33622222222")
    assert alice is not None and alice.locked_until is None


async def test_the_lock_key_expires_in_redis(directory: RedisDirectory, store: CustomerStore,
                                             clock: Clock) -> None:
    await directory.lock_self_service("c-alice", OPEN + timedelta(milliseconds=50), "test")
    await asyncio.sleep(0.2)
    assert await store.redis.exists(store.keys.pin_lock("c-alice")) == 0
    assert await directory.self_service_lock("c-alice") is None


async def test_a_shorter_lock_does_not_cut_a_longer_one(directory: RedisDirectory) -> None:
    await directory.lock_self_service("c-alice", OPEN + timedelta(hours=2), "long")
    await directory.lock_self_service("c-alice", OPEN + timedelta(minutes=5), "short")
    lock = await directory.self_service_lock("c-alice")
    assert lock is not None and (lock.until, lock.reason) == (OPEN + timedelta(hours=2), "long")


async def test_a_lock_in_the_past_or_for_nobody(directory: RedisDirectory) -> None:
    await directory.lock_self_service("c-alice", OPEN - timedelta(minutes=1), "late")
    assert await directory.self_service_lock("c-alice") is None
    with pytest.raises(UnknownCustomer):
        await directory.lock_self_service("c-nobody", OPEN + timedelta(minutes=5), "x")


async def test_wrong_pins_over_several_calls_lock_self_service(
        directory: RedisDirectory, clock: Clock) -> None:
    # One wrong PIN per call, hanging up each time, dodges the flow's count
    # (3 per call) but not the directory's (4 here, in 15 minutes).
    with capture_logs() as logs:
        for minute in range(4):
            clock.now = OPEN + timedelta(minutes=minute)
            assert not await directory.check_pin("c-alice", f"000{minute}")
    [locked] = [e for e in logs if e["event"] == "customers.pin_locked"]
    assert (locked["customer"], locked["failures"]) == ("c-alice", 4)
    assert not any("0003" in repr(entry) for entry in logs)  # PINs never logged
    lock = await directory.self_service_lock("c-alice")
    assert lock is not None and lock.until == OPEN + timedelta(minutes=3, seconds=1800)
    assert not await directory.check_pin("c-alice", "4321")
    assert await directory.unlock_self_service("c-alice")
    assert await directory.check_pin("c-alice", "4321")


async def test_a_right_pin_forgets_earlier_wrong_ones(directory: RedisDirectory) -> None:
    for _ in range(3):
        assert not await directory.check_pin("c-alice", "0000")
    assert await directory.check_pin("c-alice", "4321")
    for _ in range(3):
        assert not await directory.check_pin("c-alice", "0000")
    assert await directory.self_service_lock("c-alice") is None


@pytest.mark.integration
async def test_pin_lock_on_a_real_redis_server(tmp_path: Path, clock: Clock) -> None:
    with redis_server(tmp_path) as url:
        opened = await open_store(url)
        try:
            store = CustomerStore(opened.redis)
            await store.put(ALICE)
            directory = RedisDirectory(store, clock=clock, max_failures=2)
            assert not await directory.check_pin("c-alice", "0000")
            assert not await directory.check_pin("c-alice", "1111")
            assert not await directory.check_pin("c-alice", "4321")  # locked now
            assert await opened.redis.pttl(store.keys.pin_lock("c-alice")) > 29 * 60_000
            await directory.lock_self_service("c-alice", OPEN + timedelta(milliseconds=100),
                                              "short")
            assert await directory.self_service_lock("c-alice") is not None  # longer kept
            await directory.unlock_self_service("c-alice")
            await directory.lock_self_service("c-alice", OPEN + timedelta(milliseconds=100),
                                              "short")
            await asyncio.sleep(0.3)
            assert await opened.redis.exists(store.keys.pin_lock("c-alice")) == 0
        finally:
            await opened.close()


# -- the balance flow over FastAGI -------------------------------------------


async def run_call(fake: FakeAsterisk, directory: RedisDirectory, now: datetime) -> IvrOutcome:
    library = FlowLibrary(SAMPLES)
    assert library.reload().refused == ()
    outcomes: list[IvrOutcome] = []
    reported = asyncio.Event()

    async def sink(outcome: IvrOutcome) -> None:
        outcomes.append(outcome)
        reported.set()

    server = FastAgiServer(ivr_routes(library, directory, sink, lambda: now), port=0)
    await server.start()
    try:
        await fake.call(server.port)
        await asyncio.wait_for(reported.wait(), 5)
    finally:
        await server.close()
    [outcome] = outcomes
    return outcome


async def test_balance_flow_reads_the_balance_of_a_redis_customer(
        directory: RedisDirectory) -> None:
    fake = FakeAsterisk(["123456", "4321", None], script="ivr?did=0140000020")
    outcome = await run_call(fake, directory, OPEN)
    assert 'SAY NUMBER 1234 ""' in fake.commands and 'SAY NUMBER 56 ""' in fake.commands
    assert outcome.verified and outcome.customer == "c-alice"


async def test_three_wrong_pins_in_the_flow_lock_the_customer_in_redis(
        directory: RedisDirectory, clock: Clock) -> None:
    fake = FakeAsterisk(["123456", "0000", "1111", "2222"], script="ivr?flow=balance")
    outcome = await run_call(fake, directory, OPEN)
    assert 'STREAM FILE cti/self-service-locked ""' in fake.commands
    assert (outcome.ending.kind, outcome.ending.service) == (EndKind.HANDOFF, "accounts")
    lock = await directory.self_service_lock("c-alice")
    assert lock is not None and lock.until == OPEN + timedelta(minutes=30)

    # Another call ten minutes later, the right PIN ready: not even asked.
    clock.now = OPEN + timedelta(minutes=10)
    again = FakeAsterisk(["123456", "4321"], script="ivr?flow=balance")
    outcome = await run_call(again, directory, clock.now)
    assert again.sent("GET DATA cti/enter-pin") == []
    assert not outcome.verified and outcome.ending.service == "accounts"
