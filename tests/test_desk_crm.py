"""The CRM client against a real HTTP CRM on loopback (tests/crm_peer.py):
URL encoding of validated values only, one request per question in
flight, the cache and its shorter life for "not found", every kind of bad
answer logged and ignored, the breaker; the template checked at load;
the merge rules of the pop as plain values."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from cti.config import ConfigError, CrmSettings, load_settings
from cti.desk.crm import CrmClient, CrmQuery, CrmResult
from cti.desk.crm_guard import BreakerState, TtlCache
from cti.desk.crm_pop import with_crm
from cti.desk.crm_record import BadAnswer, record_of
from cti.desk.protocol import CustomerView, PopView
from tests.crm_peer import TEMPLATE_PATH, CrmPeer
from tests.servers import free_port

pytestmark = pytest.mark.timeout(30)

SECRET_HEADER = "Authorization: Bearer crm-secret-0123456789"
ALICE = "+33612345678"
RECORD = {"name": "A. Dupont", "tier": "gold", "account": "998877", "notes": "Prefers email",
          "segment": {"churn_risk": "low", "ltv": 1200}, "link": "https://crm.example/c/42",
          "recent_contacts": [{"at": "2024-05-01T10:00:00Z", "channel": "email",
                               "summary": "invoice question", "agent": "Zoe"}],
          "internal_id": 42}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def crm() -> AsyncIterator[CrmPeer]:
    peer = await CrmPeer().start()
    peer.records[ALICE] = RECORD
    try:
        yield peer
    finally:
        await peer.stop()


def client_for(template: str, clock: Clock | None = None, **settings: Any) -> CrmClient:
    return CrmClient(CrmSettings(url_template=template, auth_header=SECRET_HEADER, **settings),
                     region="FR", **({"clock": clock} if clock is not None else {}))


async def ask(client: CrmClient, number: str, account: str | None = None) -> CrmResult:
    query = client.query(number, account)
    assert query is not None
    return await client.lookup(query)


# -- the URL ------------------------------------------------------------------------------


async def test_values_are_url_encoded_into_the_template_and_nothing_else_gets_in(
        crm: CrmPeer) -> None:
    client = client_for(crm.template)
    try:
        # A national number is read in the region and sent in E.164, its +
        # encoded (a bare + would reach the CRM as a space).
        result = await ask(client, "06 12 34 56 78", "123456")
        assert result.status == "found" and result.record is not None
        assert result.record.name == "A. Dupont"
        seen = crm.seen[-1]
        assert seen.raw_path == "/api/customers?phone=%2B33612345678&account=123456"
        assert seen.query == {"phone": ALICE, "account": "123456"}
        assert seen.headers["Authorization"] == "Bearer crm-secret-0123456789"
        # Values that are not a number or an account are not sent at all.
        assert client.query("1234&admin=1", "1/../../admin") is None
        assert client.query("anonymous", None) is None
        assert client.query(ALICE, "12&x=1") == CrmQuery(phone=ALICE, account="")
        assert len(crm.seen) == 1
    finally:
        await client.close()


def test_only_the_placeholders_the_template_uses_make_the_question() -> None:
    by_phone = client_for("https://crm.example/people/{phone}")
    assert by_phone.query(ALICE, "123456") == CrmQuery(phone=ALICE)
    assert str(by_phone.url(CrmQuery(phone=ALICE))) == "https://crm.example/people/%2B33612345678"
    by_account = client_for("https://crm.example/accounts/{account}/owner")
    assert by_account.query(ALICE, None) is None  # nothing it can be asked
    assert by_account.query(ALICE, "123456") == CrmQuery(account="123456")


# -- sharing, caching ---------------------------------------------------------------------


async def test_concurrent_lookups_of_one_caller_share_one_request(crm: CrmPeer) -> None:
    crm.mode = "hold"
    client = client_for(crm.template, timeout_seconds=5)
    try:
        query = client.query(ALICE, None)
        assert query is not None
        answers = [client.lookup(query) for _ in range(5)]
        async with asyncio.timeout(5):
            while not crm.seen:
                await asyncio.sleep(0.01)
        assert not any(answer.done() for answer in answers)
        crm.release.set()
        results = await asyncio.gather(*answers)
        assert {result.status for result in results} == {"found"}
        assert len(crm.seen) == 1 and client.shared == 4
    finally:
        await client.close()


async def test_answers_are_cached_and_not_found_for_a_shorter_time(crm: CrmPeer) -> None:
    clock = Clock()
    client = client_for(crm.template, clock, cache_seconds=300, negative_cache_seconds=30)
    stranger = "+33698765432"
    try:
        assert (await ask(client, ALICE)).status == "found"
        assert (await ask(client, stranger)).status == "not_found"
        assert (await ask(client, ALICE)).status == "found"
        assert (await ask(client, stranger)).status == "not_found"
        assert len(crm.seen) == 2 and client.cache_hits == 2
        clock.now += 31  # "not found" has expired, the record has not
        await ask(client, stranger)
        await ask(client, ALICE)
        assert [seen.query["phone"] for seen in crm.seen] == [ALICE, stranger, stranger]
        clock.now += 300
        await ask(client, ALICE)
        assert len(crm.seen) == 4
    finally:
        await client.close()


def test_the_cache_is_bounded_and_forgets_the_least_recently_used() -> None:
    cache: TtlCache[str, int] = TtlCache(2)
    cache.put("a", 1, now=0, ttl=10)
    cache.put("b", 2, now=0, ttl=10)
    assert cache.get("a", now=1) == 1  # a is now the most recent
    cache.put("c", 3, now=1, ttl=10)
    assert (cache.get("a", 2), cache.get("b", 2), cache.get("c", 2)) == (1, None, 3)
    assert cache.get("a", now=10) is None and len(cache) == 1
    cache.put("d", 4, now=0, ttl=0)
    assert cache.get("d", now=0) is None


# -- bad answers ------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "outcome", "reason"), [
    ("error", "http_error", "HTTP 500"),
    ("not_json", "not_json", "not JSON"),
    ("oversized", "too_large", "over crm.max_response_bytes (65536)"),
    ("oversized_chunked", "too_large", "over crm.max_response_bytes (65536)"),
    ("deep", "not_json", "not JSON"),
    ("wrong_shape", "invalid", "link: must be an http:// or https:// URL"),
    ("redirect", "http_error", "HTTP 302 (redirects are not followed)"),
    ("hold", "timeout", "no answer within 0.3 s"),
])
async def test_a_bad_answer_is_logged_with_its_reason_and_ignored(
        crm: CrmPeer, mode: str, outcome: str, reason: str) -> None:
    crm.mode = mode
    client = client_for(crm.template, timeout_seconds=0.3, pop_wait_seconds=0.1)
    try:
        with capture_logs() as logs:
            result = await ask(client, ALICE)
        assert result.status == "unavailable" and result.record is None
        assert reason in result.reason
        failed = [entry for entry in logs if entry["event"] == "crm.lookup_failed"]
        assert len(failed) == 1 and failed[0]["outcome"] == outcome
        assert reason in failed[0]["reason"] and failed[0]["crm"] == "127.0.0.1"
        assert "crm-secret" not in repr(logs)
        assert client.requests == {outcome: 1}
        # A failure is not cached: the next pop asks again.
        crm.mode = "ok"
        assert (await ask(client, ALICE)).status == "found"
    finally:
        await client.close()


async def test_a_crm_that_is_down_is_unavailable_not_an_error() -> None:
    client = client_for(f"http://127.0.0.1:{free_port()}{TEMPLATE_PATH}")
    try:
        with capture_logs() as logs:
            result = await ask(client, ALICE)
        assert result.status == "unavailable" and "Connect" in result.reason
        assert [entry["outcome"] for entry in logs
                if entry["event"] == "crm.lookup_failed"] == ["unreachable"]
    finally:
        await client.close()


async def test_an_error_quoting_the_url_is_logged_without_the_caller_values() -> None:
    # Not HTTP at all: aiohttp's error names the URL, hence the number.
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n{}")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = client_for(f"http://127.0.0.1:{port}{TEMPLATE_PATH}")
    try:
        with capture_logs() as logs:
            result = await ask(client, ALICE, "123456")
        assert result.status == "unavailable" and "***" in result.reason
        assert client.requests == {"unreachable": 1}
        for secret in ("33612345678", "123456", "crm-secret"):
            assert secret not in repr(logs) and secret not in result.reason
    finally:
        await client.close()
        server.close()
        await server.wait_closed()


async def test_a_failing_crm_is_left_alone_then_tried_again_by_one_request(
        crm: CrmPeer) -> None:
    crm.mode = "error"
    clock = Clock()
    client = client_for(crm.template, clock, breaker_failures=3, breaker_seconds=10)
    numbers = [f"+3361234560{digit}" for digit in range(8)]
    try:
        for number in numbers[:3]:
            assert (await ask(client, number)).status == "unavailable"
        assert client.breaker.state is BreakerState.OPEN and len(crm.seen) == 3
        # Open: pops for other callers get "unavailable" without a request.
        for number in numbers[3:6]:
            result = await ask(client, number)
            assert result.status == "unavailable" and "paused" in result.reason
        assert len(crm.seen) == 3 and client.skipped["circuit_open"] == 3
        clock.now += 10
        # One trial: concurrent lookups do not all go.
        first = client.lookup(client.query(numbers[6], None))  # type: ignore[arg-type]
        second = client.lookup(client.query(numbers[7], None))  # type: ignore[arg-type]
        assert "paused" in (await second).reason
        assert (await first).status == "unavailable"
        assert len(crm.seen) == 4 and client.breaker.state is BreakerState.OPEN
        crm.mode = "ok"
        clock.now += 10
        assert (await ask(client, ALICE)).status == "found"
        assert client.breaker.state is BreakerState.CLOSED
        assert (await ask(client, numbers[0])).status == "not_found"
    finally:
        await client.close()


def test_the_answer_is_read_as_a_record_or_as_nobody() -> None:
    record = record_of(RECORD)
    assert record is not None and record.account == "998877"
    assert record.recent_contacts[0].at.timestamp() == 1714557600.0
    assert record_of([RECORD, {"name": "someone else"}]) == record
    assert record_of({"name": "Epoch", "recent_contacts": [{"at": 1714557600}]}) is not None
    for nobody in (None, [], {}, {"unrelated": 1}):
        assert record_of(nobody) is None
    for bad, where in ((42, "got int"), ({"notes": "n" * 2001}, "notes"),
                       ({"name": "Bob\u202e"}, "name: control or invisible"),
                       ({"segment": {"a b": 1}}, "segment"),
                       ({"recent_contacts": [{"at": "yesterday"}]}, "recent_contacts.0.at")):
        with pytest.raises(BadAnswer, match=where):
            record_of(bad)


# -- the template, at load ----------------------------------------------------------------


@pytest.mark.parametrize(("template", "reason"), [
    ("https://crm.example/c?name={name}", "unknown placeholder {name}"),
    ("https://crm.example/c/{phone.__class__}", "unknown placeholder {phone.__class__}"),
    ("https://crm.example/c/{phone!r}", "no format spec or conversion"),
    ("https://crm.example/c/{phone:>30}", "no format spec or conversion"),
    ("https://crm.example/c/{phone", "unbalanced { or }"),
    ("https://crm.example/customers", "uses neither {phone} nor {account}"),
    ("ftp://crm.example/{phone}", "must be an http:// or https:// URL"),
    ("crm.example/{phone}", "must be an http:// or https:// URL"),
    ("https://{phone}.crm.example/", "must name a fixed host"),
    ("https://crm.example:{account}/", "must name a fixed host"),
    ("https://user:pw@crm.example/{phone}", "must not carry credentials"),
    ("https://crm.example/{phone}#top", "no fragment"),
    ("https://crm.example/{phone} x", "no fragment (#), spaces"),
])
def test_a_bad_url_template_is_refused_at_load_saying_why(template: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, {"CTI_CRM_URL_TEMPLATE": template})
    problems = dict(caught.value.problems)
    assert list(problems) == ["crm.url_template"]
    assert reason in problems["crm.url_template"]


def test_crm_settings_are_checked_together_and_the_auth_header_stays_secret() -> None:
    good = load_settings(None, {
        "CTI_CRM_URL_TEMPLATE": "https://crm.example/api?phone={phone}&acct={account}",
        "CTI_CRM_AUTH_HEADER": SECRET_HEADER})
    assert good.crm.placeholders == ("phone", "account")
    assert "crm-secret" not in " ".join(good.summary())
    assert load_settings(None, {}).crm.url_template is None  # no CRM by default
    with pytest.raises(ConfigError) as caught:
        load_settings(None, {"CTI_CRM_TIMEOUT_SECONDS": "1", "CTI_CRM_POP_WAIT_SECONDS": "2",
                             "CTI_CRM_NEGATIVE_CACHE_SECONDS": "600",
                             "CTI_CRM_AUTH_HEADER": "Bearer crm-secret-no-name\n"})
    problems = dict(caught.value.problems)
    assert "at most timeout_seconds" in problems["crm.pop_wait_seconds"]
    assert "at most cache_seconds" in problems["crm.negative_cache_seconds"]
    assert "Header-Name: value" in problems["crm.auth_header"]
    assert "crm-secret" not in repr(caught.value.problems)


# -- the merge into the pop -----------------------------------------------------------------


def pop(customer: CustomerView | None) -> PopView:
    return PopView(call_id="c1", caller_number=ALICE, caller_name=None,
                   identified_by="unknown" if customer is None else "phone",
                   customer=customer, vip=False, service="support", rule="longest_idle",
                   waited_s=1.0, ivr=None, history=[], previous_notes=[])


def test_the_directory_keeps_the_identity_and_the_crm_fills_what_it_lacks() -> None:
    record = record_of(RECORD)
    found = CrmResult("found", record)
    directory = CustomerView(id="c-vip", name="Alice Dupont", tier="vip", account=None,
                             phones=[ALICE], segment={"ltv": 5000}, notes="")
    merged = with_crm(pop(directory), found)
    assert merged.customer is not None
    assert (merged.customer.id, merged.customer.name, merged.customer.tier) == (
        "c-vip", "Alice Dupont", "vip")
    assert merged.customer.account == "998877" and merged.customer.notes == "Prefers email"
    assert merged.customer.segment == {"ltv": 5000, "churn_risk": "low"}  # directory's ltv
    assert merged.crm is not None and merged.crm.name == "A. Dupont" and merged.crm.tier == "gold"
    assert merged.crm.link == "https://crm.example/c/42" and merged.crm_status == "found"
    assert merged.identified_by == "phone" and merged.vip is False
    full = directory.model_copy(update={"account": "123456", "notes": "VIP since 2019"})
    kept = with_crm(pop(full), found).customer
    assert kept is not None and (kept.account, kept.notes) == ("123456", "VIP since 2019")
    # A caller the directory does not know stays unknown; the CRM's word is in `crm`.
    stranger = with_crm(pop(None), found)
    assert stranger.customer is None and stranger.identified_by == "unknown"
    assert stranger.crm is not None and stranger.crm.name == "A. Dupont"
    gone = with_crm(merged, CrmResult("unavailable", reason="HTTP 500"))
    assert gone.crm is None and gone.crm_status == "unavailable"
