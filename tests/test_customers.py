"""The customer directory: the models refuse bad input naming field and
reason, the Redis store keeps records and indexes together (fakeredis, and
a real redis-server once), histories are newest first and capped, and the
demo data is the same for the same seed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import fakeredis
import pytest
from pydantic import ValidationError

from cti.customers import (
    AccountTaken,
    Contact,
    Customer,
    CustomerStore,
    FieldProblem,
    PhoneTaken,
    UnknownCustomer,
    field_problems,
    hash_pin,
    parse_customer,
    pin_matches,
)
from cti.customers.demo import (
    demo_customers,
    demo_history,
    demo_pin,
    load_demo,
    standard_numbers,
    vip_numbers,
)
from cti.customers.pins import InvalidPin
from cti.store import open_store
from tests.servers import redis_server

ALICE = Customer(id="c-alice", name="Alice Martin", phones=["+33140000001", "+33140000002"],
                 account="123456", tier="vip", segment={"recency_days": 3})
BOB = Customer(id="c-bob", name="Bob Dupont", phones=["+33140000003"], account="654321")


@pytest.fixture
async def store() -> AsyncIterator[CustomerStore]:
    redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(), decode_responses=True)
    try:
        yield CustomerStore(redis, history_max=5)
    finally:
        await redis.aclose()


def contact(at: float, agent: str = "1001") -> Contact:
    return Contact(at=at, channel="voice", direction="inbound", service="support",
                   agent_id=agent, agent_name="Bob", duration_s=42.5, outcome="handled",
                   disposition="incident résolu")


def problems(raw: dict[str, object], region: str | None = "FR") -> set[tuple[str, str]]:
    with pytest.raises(ValidationError) as caught:
        parse_customer(raw, region=region)
    return {(problem.field, problem.reason) for problem in field_problems(caught.value)}


# -- models ------------------------------------------------------------------


def test_numbers_are_read_in_the_default_region_and_stored_in_e164() -> None:
    customer = parse_customer({"id": "c-1", "name": "  Léa Petit ", "tier": "VIP",
                               "phones": ["01 40 00 00 01", "+33 1 40 00 00 01", "0140000002"],
                               "account": "", "segment": {"recency_days": 12, "rfm": "545"}},
                              region="FR")
    assert customer.phones == ["+33140000001", "+33140000002"]  # distinct, in order
    assert (customer.name, customer.tier, customer.account) == ("Léa Petit", "vip", None)
    assert customer.vip


def test_each_refused_field_is_named_with_its_reason() -> None:
    found = problems({"id": "c 1", "name": "", "phones": ["0140000001", "12"],
                      "account": "12ab", "tier": "gold",
                      "segment": {"recency_days": [1], "Bad Key": 1, "score": float("nan")},
                      "notes": "x" * 2001, "pin_hash": "1234"})
    fields = {field for field, _ in found}
    assert fields == {"id", "name", "phones.1", "account", "tier", "segment.recency_days",
                      "segment.Bad Key", "segment.score", "notes", "pin_hash"}
    assert ("phones.1", "12 is not a valid number (read in region FR)") in found
    assert ("tier", "Input should be 'vip' or 'standard'") in found
    assert ("segment.score", "must be text (200 characters at most), an integer or a finite"
            " number") in found


def test_a_national_number_needs_a_region() -> None:
    assert problems({"id": "c-1", "name": "X", "phones": ["0140000001"]}, region=None) == {
        ("phones.0", "0140000001 is not international (+...) and no default region was given")}


def test_control_characters_are_refused_in_names_and_kept_out_of_notes() -> None:
    found = problems({"id": "c-1", "name": "Eve\u202eliA", "notes": "ok\nfine\x07"})
    assert {field for field, _ in found} == {"name", "notes"}
    assert parse_customer({"id": "c-1", "name": "X", "notes": "line 1\nline 2\tend"},
                          region="FR").notes == "line 1\nline 2\tend"


def test_unknown_fields_are_refused() -> None:
    assert problems({"id": "c-1", "name": "X", "pin": "1234"}) == {
        ("pin", "Extra inputs are not permitted")}


def test_contact_refuses_unknown_channel_and_bad_duration() -> None:
    with pytest.raises(ValidationError) as caught:
        Contact.model_validate({"at": 1.0, "channel": "fax", "direction": "inbound",
                                "service": "support", "duration_s": -1})
    assert {p.field for p in field_problems(caught.value)} == {"channel", "duration_s"}
    with pytest.raises(ValidationError) as caught:
        Contact.model_validate({"at": 1.0, "channel": "voice", "direction": "inbound",
                                "service": "support", "agent_name": "Bob"})
    assert field_problems(caught.value) == (
        FieldProblem("agent_name", "an agent name needs an agent_id"),)


def test_a_pin_is_stored_as_a_salted_hash_only() -> None:
    stored = hash_pin("4321")
    assert "4321" not in stored and stored != hash_pin("4321")
    assert pin_matches("4321", stored) and not pin_matches("4322", stored)
    customer = Customer(id="c-1", name="X", pin_hash=stored)
    assert customer.pin_hash == stored
    for bad in ("12", "123456789", "12a4", "١٢٣٤"):
        with pytest.raises(InvalidPin):
            hash_pin(bad)


# -- store -------------------------------------------------------------------


async def test_a_customer_is_found_by_id_phone_and_account(store: CustomerStore) -> None:
    await store.put(ALICE)
    assert await store.get("c-alice") == ALICE
    assert await store.by_phone("+33140000002") == ALICE
    assert await store.by_account("123456") == ALICE
    assert await store.get("c-nobody") is None
    assert await store.by_phone("+33140000009") is None
    assert await store.by_account("999999") is None


async def test_by_phone_takes_the_number_as_a_caller_id_presents_it(
        store: CustomerStore) -> None:
    await store.put(ALICE)
    for presented in ("0140000001", "33140000001", "+33 1 40 00 00 01"):
        assert await store.by_phone(presented) == ALICE, presented
    assert await store.by_phone("anonymous") is None
    assert await store.by_phone("1001") is None


async def test_replacing_a_customer_drops_its_old_index_entries(store: CustomerStore) -> None:
    await store.put(ALICE)
    moved = ALICE.model_copy(update={"name": "Alice Bernard", "phones": ["+33140000009"],
                                     "account": "777777"})
    await store.put(moved)
    assert await store.get("c-alice") == moved
    assert await store.by_phone("+33140000001") is None
    assert await store.by_phone("+33140000009") == moved
    assert await store.by_account("123456") is None
    assert await store.by_account("777777") == moved
    assert await store.search("martin") == []
    assert await store.search("bernard") == [moved]
    # The freed number can go to someone else now.
    await store.put(BOB.model_copy(update={"phones": ["+33140000001"]}))


async def test_a_number_owned_by_another_customer_is_refused_and_nothing_is_written(
        store: CustomerStore) -> None:
    await store.put(ALICE)
    thief = Customer(id="c-eve", name="Eve", phones=["+33140000008", "+33140000002"],
                     account="888888")
    with pytest.raises(PhoneTaken) as caught:
        await store.put(thief)
    assert (caught.value.value, caught.value.owner, caught.value.code) == (
        "+33140000002", "c-alice", "phone_taken")
    assert "already belongs to customer 'c-alice'" in str(caught.value)
    assert await store.get("c-eve") is None
    assert await store.by_phone("+33140000008") is None
    assert await store.by_account("888888") is None
    assert await store.search("eve") == []
    assert await store.by_phone("+33140000002") == ALICE


async def test_a_refused_replace_keeps_the_previous_version_whole(store: CustomerStore) -> None:
    await store.put(ALICE)
    await store.put(BOB)
    with pytest.raises(AccountTaken):
        await store.put(BOB.model_copy(update={"phones": ["+33140000007"],
                                               "account": "123456"}))
    assert await store.get("c-bob") == BOB
    assert await store.by_phone("+33140000003") == BOB
    assert await store.by_phone("+33140000007") is None


async def test_a_batch_writes_each_customer_on_its_own(store: CustomerStore) -> None:
    clash = Customer(id="c-clash", name="Clash", phones=list(ALICE.phones[:1]))
    results = await store.put_many([ALICE, clash, BOB])
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], PhoneTaken)
    assert await store.get("c-clash") is None
    assert await store.get("c-bob") == BOB


async def test_history_is_newest_first_and_capped(store: CustomerStore) -> None:
    await store.put(ALICE)
    for at in range(1, 9):
        length = await store.add_contact("c-alice", contact(float(at)))
    assert length == 5  # history_max
    assert [c.at for c in await store.history("c-alice")] == [8.0, 7.0, 6.0, 5.0, 4.0]
    assert [c.at for c in await store.history("c-alice", limit=2)] == [8.0, 7.0]
    assert await store.history("c-alice", limit=0) == []
    [latest] = await store.history("c-alice", limit=1)
    assert latest == contact(8.0)
    assert await store.history("c-bob") == []


async def test_a_contact_for_an_unknown_customer_is_refused(store: CustomerStore) -> None:
    with pytest.raises(UnknownCustomer):
        await store.add_contact("c-nobody", contact(1.0))
    assert await store.history("c-nobody") == []


async def test_search_by_name_prefix_number_and_account(store: CustomerStore) -> None:
    helene = Customer(id="c-helene", name="Marie-Hélène Dupont", phones=["+33140000004"])
    await store.put_many([ALICE, BOB, helene])
    assert [c.id for c in await store.search("dup")] == ["c-bob", "c-helene"]
    assert [c.id for c in await store.search("HELENE")] == ["c-helene"]
    assert [c.id for c in await store.search("marie hél")] == ["c-helene"]
    assert [c.id for c in await store.search("01 40 00 00 03")] == ["c-bob"]
    assert [c.id for c in await store.search("123456")] == ["c-alice"]
    assert [c.id for c in await store.search("dup", limit=1)] == ["c-bob"]
    assert await store.search("   ") == []
    assert await store.search("zzz") == []


async def test_search_is_bounded(store: CustomerStore) -> None:
    await store.put_many([Customer(id=f"c-{n}", name=f"Martin {n}") for n in range(150)])
    assert len(await store.search("martin", limit=1000)) == 100


async def test_remove_clears_the_record_its_indexes_and_history(store: CustomerStore) -> None:
    await store.put(ALICE)
    await store.add_contact("c-alice", contact(1.0))
    assert await store.remove("c-alice")
    assert not await store.remove("c-alice")
    assert await store.get("c-alice") is None
    assert await store.by_phone("+33140000001") is None
    assert await store.by_account("123456") is None
    assert await store.search("alice") == []
    assert await store.history("c-alice") == []


async def test_balance_and_segment_survive_the_round_trip(store: CustomerStore) -> None:
    rich = Customer(id="c-rich", name="Rich", balance=Decimal("1234.56"),
                    segment={"recency_days": 3, "monetary_eur": 4520.5, "label": "champions"})
    await store.put(rich)
    assert await store.get("c-rich") == rich


@pytest.mark.integration
async def test_the_store_behaves_the_same_on_a_real_redis_server(tmp_path: Path) -> None:
    with redis_server(tmp_path) as url:
        opened = await open_store(url)
        try:
            store = CustomerStore(opened.redis, prefix="test:", history_max=3)
            await store.put(ALICE)
            with pytest.raises(PhoneTaken):
                await store.put(Customer(id="c-eve", name="Eve", phones=["+33140000001"]))
            assert await store.get("c-eve") is None
            moved = ALICE.model_copy(update={"phones": ["+33140000009"]})
            await store.put(moved)
            assert await store.by_phone("+33140000001") is None
            assert await store.by_phone("0140000009") == moved
            for at in range(5):
                await store.add_contact("c-alice", contact(float(at)))
            assert [c.at for c in await store.history("c-alice")] == [4.0, 3.0, 2.0]
            assert [c.id for c in await store.search("ali")] == ["c-alice"]
            keys = await opened.redis.keys("*")
            assert keys and all(isinstance(key, str) and key.startswith("test:")
                                for key in keys)
        finally:
            await opened.close()


# -- demo --------------------------------------------------------------------


def test_demo_customers_are_the_same_for_the_same_seed() -> None:
    first = demo_customers(40, seed=7)
    assert first == demo_customers(40, seed=7)
    assert first != demo_customers(40, seed=8)
    assert [demo_history(c, now=1.8e9) for c in first] == [
        demo_history(c, now=1.8e9) for c in demo_customers(40, seed=7)]


def test_demo_customers_look_like_a_french_customer_base() -> None:
    customers = demo_customers(50, seed=1)
    assert len({c.id for c in customers}) == 50
    assert sum(c.vip for c in customers) == 10
    numbers = vip_numbers(customers) + standard_numbers(customers)
    assert len(numbers) == len(set(numbers)) >= 50
    assert all(n.startswith("+33") and len(n) == 12 for n in numbers)
    assert set(vip_numbers(customers)) == {p for c in customers if c.vip for p in c.phones}
    assert all(c.pin_hash is not None for c in customers if c.account)
    with_pin = next(c for c in customers if c.pin_hash is not None)
    pin = demo_pin(with_pin)
    assert pin is not None and with_pin.pin_hash is not None
    assert pin_matches(pin, with_pin.pin_hash)
    assert all({"recency_days", "frequency", "monetary_eur", "rfm"} <= c.segment.keys()
               for c in customers)
    histories = [demo_history(c, now=1.8e9) for c in customers]
    assert all(0 <= len(h) <= 6 for h in histories) and any(len(h) == 6 for h in histories)
    contacts = [contact for history in histories for contact in history]
    assert all(c.at < 1.8e9 for c in contacts)
    assert {c.agent_id for c in contacts} - {None} <= {str(n) for n in range(1001, 1009)}
    for history in histories:
        assert [c.at for c in history] == sorted(c.at for c in history)


async def test_load_demo_fills_the_store_and_can_run_again(store: CustomerStore) -> None:
    customers = demo_customers(40, seed=3)
    await load_demo(store, customers, now=1.8e9)
    await load_demo(store, customers, now=1.8e9)  # same data, histories not doubled
    vip = next(c for c in customers if c.vip)
    assert await store.by_phone(vip.phones[0]) == vip
    for customer in customers:
        expected = list(reversed(demo_history(customer, now=1.8e9)))[: store.history_max]
        assert await store.history(customer.id) == expected
    # Another seed on the same Redis: the earlier demo customers give way.
    others = demo_customers(60, seed=4)
    await load_demo(store, others, now=1.8e9)
    for customer in others:
        assert await store.get(customer.id) == customer
        assert all([await store.by_phone(p) == customer for p in customer.phones])


async def test_load_demo_takes_the_server_store_too() -> None:
    opened = await open_store(None)
    try:
        customers = demo_customers(10, seed=1)
        await load_demo(opened, customers, now=1.8e9)
        assert await CustomerStore(opened.redis).get(customers[0].id) == customers[0]
    finally:
        await opened.close()


async def test_an_id_that_is_not_an_id_never_reaches_a_key(store: CustomerStore) -> None:
    await store.put(ALICE)
    await store.add_contact("c-alice", contact(1.0))
    assert await store.get("c-alice:contacts") is None
    assert await store.history("c-alice:contacts") == []
    assert not await store.remove("c-alice:contacts")
    with pytest.raises(UnknownCustomer):
        await store.add_contact("c-alice:contacts", contact(2.0))
    assert len(await store.history("c-alice")) == 1
