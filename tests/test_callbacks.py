"""The public callback API against a real server, redis-server and the
simulated PBX: validation (injection attempts refused, nothing stored,
nothing dialled), CORS, rate limits, body size, duplicates, admission and
slots, cancel, the OpenAPI document; and the callback's way through the
router to the simulated customer."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from cti.callbacks.sites import site_key
from tests.callback_floor import ORIGIN, eventually, floor

pytestmark = pytest.mark.timeout(90)

BOB = [{"id": "1001", "skills": {"support": 5}}]       # rings 2 s, talks 8 s
SLOW = {"CTI_CALLBACKS_POLL_SECONDS": "60"}              # the dispatcher stays idle


async def test_a_valid_request_is_accepted_stored_and_shown(tmp_path: Path) -> None:
    async with floor(tmp_path, BOB, env=SLOW) as f:
        status, body = await f.post({"number": "06 11 22 33 44", "name": "Zoë Ærø",
                                     "topic": "support", "page": "https://shop.example/p?q=1"})
        assert status == 202, body
        assert body["status"] == "scheduled" and body["asap"] is True
        assert body["number"] == "+336******44" and body["duplicate"] is False
        assert len(body["id"]) == 22
        assert await f.redis.zscore("cti:cb:due", body["id"]) is not None
        status, shown = await f.get(f"/api/v1/callbacks/{body['id']}")
        assert status == 200 and shown["expected_at"] == body["expected_at"]


async def test_a_second_request_for_a_pending_number_returns_the_first(tmp_path: Path) -> None:
    async with floor(tmp_path, BOB, env=SLOW) as f:
        _, first = await f.post({"number": "0611223344"})
        status, second = await f.post({"number": "+33 6 11 22 33 44"})
        assert status == 202 and second["id"] == first["id"] and second["duplicate"] is True
        assert len(await f.stored()) == 1


INJECTIONS: list[tuple[dict[str, Any], str]] = [
    ({"number": "0611223344&PJSIP/evil"}, "number"),
    ({"number": "0611223344,1"}, "number"),
    ({"number": "0611223344\r\nAction: Originate"}, "number"),
    ({"number": "+33611223344;x"}, "number"),
    ({"number": "${SHELL(id)}"}, "number"),
    ({"number": "0" * 5000}, "number"),
    ({"number": "+12025550143"}, "number"),            # valid, but not an allowed country
    ({"number": "0611223344", "name": "Bob\r\nAction: Hangup"}, "name"),
    ({"number": "0611223344", "name": "Bob & Co"}, "name"),
    ({"number": "0611223344", "name": "Bob\u202egnp.exe"}, "name"),
    ({"number": "0611223344", "name": "x" * 81}, "name"),
    ({"number": "0611223344", "topic": "support&x"}, "topic"),
    ({"number": "0611223344", "topic": "sup\nport"}, "topic"),
    ({"number": "0611223344", "topic": "t" * 500}, "topic"),
    ({"number": "0611223344", "topic": "nosuchservice"}, "topic"),
    ({"number": "0611223344", "page": "javascript:alert(1)"}, "page"),
    ({"number": "0611223344", "page": "https://a/\n"}, "page"),
    ({"number": "0611223344", "language": "fr;DROP"}, "language"),
    ({"number": "0611223344", "when": "tomorrow"}, "when"),
    ({"number": "0611223344", "extra": "x"}, "extra"),
]


@pytest.mark.parametrize(("body", "field"), INJECTIONS,
                         ids=[f"{f}-{i}" for i, (_, f) in enumerate(INJECTIONS)])
async def test_injection_attempts_get_422_naming_the_field_and_nothing_is_stored(
        tmp_path: Path, body: dict[str, Any], field: str) -> None:
    async with floor(tmp_path, BOB, env={"CTI_CALLBACKS_MAX_BODY_BYTES": "65536"}) as f:
        sent: list[Any] = []
        original = f.server.link.send

        async def spy(action: Any) -> Any:
            sent.append(action)
            return await original(action)

        f.server.link.send = spy  # type: ignore[method-assign]
        status, answer = await f.post(body)
        assert status == 422, answer
        assert answer["error"] == "invalid_request"
        assert [e["field"] for e in answer["fields"]] == [field]
        assert "\n" not in answer["fields"][0]["reason"]
        await asyncio.sleep(0.5)  # a dispatcher tick or two
        assert await f.stored() == []
        assert await f.redis.zcard("cti:cb:due") == 0
        assert [a for a in sent if a.name == "Originate"] == []


async def test_bodies_that_are_not_json_objects_or_too_large_are_refused(
        tmp_path: Path) -> None:
    async with floor(tmp_path, BOB, env=SLOW) as f:
        assert (await f.post("not json"))[0] == 422
        assert (await f.post("[1, 2]"))[0] == 422
        status, answer = await f.post({"number": "0611223344", "name": "x" * 8000})
        assert status == 413 and answer["error"] == "body_too_large"
        assert await f.stored() == []


async def test_cors_allows_listed_origins_only(tmp_path: Path) -> None:
    async with floor(tmp_path, BOB, env=SLOW) as f:
        status, answer = await f.post({"number": "0611223344"}, origin="https://evil.example")
        assert status == 403 and answer["error"] == "origin_refused"
        assert await f.stored() == []
        async with f.http.options(f"{f.base}/api/v1/callbacks", headers={
                "Origin": ORIGIN, "Access-Control-Request-Method": "POST"}) as response:
            assert response.status == 204
            assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
            assert "POST" in response.headers["Access-Control-Allow-Methods"]
        async with f.http.post(f"{f.base}/api/v1/callbacks", json={"number": "x"},
                               headers={"Origin": ORIGIN}) as response:
            # errors carry the header too, so the page can read the reason
            assert response.status == 422
            assert response.headers["Access-Control-Allow-Origin"] == ORIGIN


async def test_rate_limits_per_address_and_per_number(tmp_path: Path) -> None:
    env = {**SLOW, "CTI_CALLBACKS_PER_ADDRESS_PER_MINUTE": "4",
           "CTI_CALLBACKS_PER_NUMBER_PER_HOUR": "2"}
    async with floor(tmp_path, BOB, env=env) as f:
        assert (await f.post({"number": "0611223344"}))[0] == 202
        assert (await f.post({"number": "0611223344"}))[0] == 202   # the duplicate
        status, answer = await f.post({"number": "0611223344"})
        assert status == 429 and answer["error"] == "rate_limited"
        assert (await f.post({"number": "0699999999"}))[0] == 202
        status, answer = await f.post({"number": "0677777777"})
        assert status == 429   # the fifth request from this address in a minute


async def test_an_overloaded_center_offers_slots_instead_of_asap(tmp_path: Path) -> None:
    # Nobody logged in: no ASAP promise, but the rostered agent gives slots.
    agents = [{"id": "1001", "skills": {"support": 5}, "login_at_start": False}]
    async with floor(tmp_path, agents, env=SLOW) as f:
        status, slots = await f.get("/api/v1/callbacks/slots?topic=support")
        assert status == 200 and slots["asap"] is False and slots["slots"]
        status, answer = await f.post({"number": "0611223344"})
        assert status == 409 and answer["error"] == "asap_unavailable"
        assert answer["slots"] == slots["slots"]
        assert await f.stored() == []
        start = slots["slots"][0]["start"]
        status, body = await f.post({"number": "0611223344", "when": start})
        assert status == 202 and body["asap"] is False and body["expected_at"] == start
        status, answer = await f.post({"number": "0699999999",
                                       "when": "2020-01-01T10:00:00Z"})
        assert status == 422 and answer["fields"][0]["field"] == "when"


async def test_a_scheduled_callback_counts_as_pending_on_the_wallboard(tmp_path: Path) -> None:
    agents = [{"id": "1001", "skills": {"support": 5}, "login_at_start": False}]
    async with floor(tmp_path, agents, env=SLOW) as f:
        _, slots = await f.get("/api/v1/callbacks/slots?topic=support")
        status, _ = await f.post({"number": "0611223344", "when": slots["slots"][0]["start"]})
        assert status == 202
        pending = f.server.callbacks_pending
        assert pending is not None
        await eventually(lambda: pending("support") == 1)
        assert pending(None) == 1 and pending("sales") == 0


async def test_the_requester_can_cancel_a_pending_callback(tmp_path: Path) -> None:
    async with floor(tmp_path, BOB, env=SLOW) as f:
        _, body = await f.post({"number": "0611223344"})
        status, cancelled = await f.delete(f"/api/v1/callbacks/{body['id']}")
        assert status == 200 and cancelled["status"] == "cancelled"
        assert await f.status(body["id"]) == "cancelled"
        assert (await f.delete(f"/api/v1/callbacks/{body['id']}"))[0] == 409
        assert (await f.get("/api/v1/callbacks/AAAAAAAAAAAAAAAAAAAAAA"))[0] == 404
        assert (await f.get("/api/v1/callbacks/..%2f..%2fetc"))[0] == 404
        # the number may ask again
        assert (await f.post({"number": "0611223344"}))[1]["id"] != body["id"]


async def test_a_site_key_is_required_when_configured(tmp_path: Path) -> None:
    env = {**SLOW, "CTI_CALLBACKS_SITE_SECRET": "k" * 32}
    async with floor(tmp_path, BOB, env=env) as f:
        assert (await f.post({"number": "0611223344"}))[0] == 403
        wrong = site_key(b"k" * 32, "shop", "https://other.example")
        assert (await f.post({"number": "0611223344"},
                             headers={"X-CTI-Site-Key": wrong}))[0] == 403
        key = site_key(b"k" * 32, "shop", ORIGIN)
        assert (await f.post({"number": "0611223344"},
                             headers={"X-CTI-Site-Key": key}))[0] == 202


async def test_the_openapi_document_describes_the_callback_api(tmp_path: Path) -> None:
    async with floor(tmp_path, BOB, env=SLOW) as f:
        status, doc = await f.get("/api/v1/openapi.json", origin=None)
        assert status == 200 and doc["openapi"].startswith("3.1")
        post = doc["paths"]["/api/v1/callbacks"]["post"]
        assert {"202", "409", "422", "429"} <= set(post["responses"])
        assert "number" in doc["components"]["schemas"]["CallbackRequest"]["properties"]
        assert set(doc["paths"]["/api/v1/callbacks/{id}"]) == {"get", "delete"}


# -- through the router to the simulated customer -----------------------------------


async def test_an_asap_callback_reaches_an_agent_and_the_customer_answers(
        tmp_path: Path) -> None:
    async with floor(tmp_path, BOB) as f:
        _, body = await f.post({"number": "0611223344", "topic": "support"})
        callback_id = body["id"]
        agents = f.server.switchboard.agents
        await eventually(lambda: agents["1001"].state.value == "on_call", within=20)
        for _ in range(60):
            if await f.status(callback_id) == "completed":
                break
            await asyncio.sleep(0.5)
        _, shown = await f.get(f"/api/v1/callbacks/{callback_id}")
        assert shown["status"] == "completed" and shown["outcome"] == "answered"
        assert [a["outcome"] for a in shown["attempts"]] == ["answered"]
        await eventually(lambda: agents["1001"].state.value in ("wrap_up", "available"))


async def test_a_busy_customer_is_retried_with_backoff_then_fails(tmp_path: Path) -> None:
    env = {"CTI_CALLBACKS_MAX_ATTEMPTS": "2"}
    async with floor(tmp_path, BOB, env=env) as f:
        _, body = await f.post({"number": "0699999999"})
        for _ in range(80):
            if await f.status(body["id"]) == "failed":
                break
            await asyncio.sleep(0.5)
        _, shown = await f.get(f"/api/v1/callbacks/{body['id']}")
        assert shown["status"] == "failed" and shown["outcome"] == "busy"
        assert [a["outcome"] for a in shown["attempts"]] == ["busy", "busy"]
        assert await f.redis.zcard("cti:cb:claimed") == 0
        assert await f.redis.get("cti:cb:number:+33699999999") is None


async def test_an_agent_who_does_not_answer_is_paused_and_the_callback_waits_again(
        tmp_path: Path) -> None:
    # Dave (1003) never answers and ranks first; Bob then takes it.
    agents = [{"id": "1003", "skills": {"support": 9}}, {"id": "1001", "skills": {"support": 2}}]
    async with floor(tmp_path, agents, ring_timeout_seconds=5) as f:
        _, body = await f.post({"number": "0611223344"})
        board = f.server.switchboard.agents
        await eventually(lambda: board["1003"].state.value == "paused", within=20)
        await eventually(lambda: board["1001"].state.value == "on_call", within=20)
        for _ in range(60):
            if await f.status(body["id"]) == "completed":
                break
            await asyncio.sleep(0.5)
        _, shown = await f.get(f"/api/v1/callbacks/{body['id']}")
        assert shown["outcome"] == "answered"
        # Dave's ring-out was no attempt on the customer
        assert len(shown["attempts"]) == 1
