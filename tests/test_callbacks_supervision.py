"""The supervisors' list of callbacks against a real server, redis-server
and the simulated PBX: only a supervisor session may read it; a callback
busy on its first call and answered on its retry shows both attempts with
their agent and outcome; filters by status and service; pages are bounded
and the cursor walks every callback once; bad queries are refused naming
the field."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cti.auth import hash_password
from cti.callbacks.store import CallbackStore
from cti.sim.population import RECORDED_AGENTS, RECORDED_CUSTOMERS, Phone, Pickup, Population
from tests.callback_floor import Floor, floor

pytestmark = pytest.mark.timeout(90)

PASSWORD = "watch the floor"
SUPERVISORS = [{"id": "sam", "name": "Sam", "password_hash": hash_password(PASSWORD)}]
AGENTS = [{"id": "1001", "skills": {"support": 5}, "password_hash": hash_password("bob")},
          {"id": "1007", "skills": {"sales": 5}}]
SLOW = {"CTI_CALLBACKS_POLL_SECONDS": "60"}              # the dispatcher stays idle
RETRY = Phone("0611000030", "busy, then answers", ring_s=1, talk_s=3,
              script=(Pickup.BUSY, Pickup.ANSWER))


async def login(f: Floor, path: str, username: str, password: str) -> str:
    async with f.http.post(f"{f.base}{path}",
                           json={"username": username, "password": password}) as response:
        assert response.status == 200, await response.text()
        return str((await response.json())["token"])


async def listing(f: Floor, token: str | None, query: str = "") -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with f.http.get(f"{f.base}/api/v1/supervisor/callbacks{query}",
                          headers=headers) as response:
        return response.status, await response.json()


async def test_only_a_supervisor_may_list_callbacks(tmp_path: Path) -> None:
    async with floor(tmp_path, AGENTS, env=SLOW, supervisors=SUPERVISORS) as f:
        assert (await f.post({"number": "0611223344"}))[0] == 202
        status, body = await listing(f, None)
        assert status == 401 and body["error"] == "unauthenticated" and "callbacks" not in body
        assert (await listing(f, "forged.token"))[0] == 401
        agent = await login(f, "/api/v1/login", "1001", "bob")
        status, body = await listing(f, agent)
        assert status == 403 and body["error"] == "forbidden"
        supervisor = await login(f, "/api/v1/supervisor/login", "sam", PASSWORD)
        status, body = await listing(f, supervisor)
        assert status == 200 and [c["number"] for c in body["callbacks"]] == ["+33611223344"]
        # the token may come in the query, as for the wallboard's socket
        assert (await listing(f, None, f"?token={supervisor}"))[0] == 200


@pytest.mark.parametrize("mode", ["agent-first", "customer-first"])
async def test_a_callback_busy_then_answered_lists_both_attempts(
        tmp_path: Path, mode: str) -> None:
    customers = {p.number: p for p in (*RECORDED_CUSTOMERS, RETRY)}
    population = Population(agents={p.number: p for p in RECORDED_AGENTS}, customers=customers)
    env = {"CTI_CALLBACKS_TRUNK": "Local/{number}@sim-customer"}
    async with floor(tmp_path, AGENTS, env=env, population=population,
                     supervisors=SUPERVISORS, callback_mode=mode,
                     caller_id="0140000001") as f:
        token = await login(f, "/api/v1/supervisor/login", "sam", PASSWORD)
        _, body = await f.post({"number": "06 11 00 00 30", "name": "Zoë"})
        store = CallbackStore(f.redis)
        async with asyncio.timeout(40):
            while (record := await store.get(body["id"])) is None or not record.status.final:
                await asyncio.sleep(0.2)
        status, page = await listing(f, token, "?status=completed&service=support")
        assert status == 200 and page["next"] is None
        [shown] = page["callbacks"]
        assert shown["id"] == body["id"] and shown["status"] == "completed"
        assert (shown["number"], shown["name"], shown["service"]) == (
            "+33611000030", "Zoë", "support")
        assert shown["outcome"] == "answered" and shown["finished_at"] is not None
        attempts = shown["attempts"]
        assert [(a["outcome"], a["agent"], a["mode"]) for a in attempts] == [
            ("busy", "1001", mode), ("answered", "1001", mode)]
        assert attempts[0]["dial_status"] == "BUSY"
        assert attempts[0]["at"] < attempts[0]["ended_at"] <= attempts[1]["at"]
        # what the filters leave out
        assert (await listing(f, token, "?status=retry,scheduled"))[1]["callbacks"] == []
        assert (await listing(f, token, "?service=sales"))[1]["callbacks"] == []
        assert [c["id"] for c in (await listing(f, token, "?status=completed"))[1][
            "callbacks"]] == [body["id"]]


async def test_pages_are_bounded_and_the_cursor_walks_every_callback_once(
        tmp_path: Path) -> None:
    async with floor(tmp_path, AGENTS, env=SLOW, supervisors=SUPERVISORS) as f:
        token = await login(f, "/api/v1/supervisor/login", "sam", PASSWORD)
        ids = []
        for n in range(1, 8):
            status, body = await f.post({"number": f"06110000{n:02d}",
                                         "topic": "sales" if n == 7 else "support"})
            assert status == 202, body
            ids.append(body["id"])
        for cancelled in ids[:2]:
            assert (await f.delete(f"/api/v1/callbacks/{cancelled}"))[0] == 200
        seen: list[dict[str, Any]] = []
        cursor = ""
        for _ in range(10):
            status, page = await listing(f, token, f"?limit=3{cursor}")
            assert status == 200 and len(page["callbacks"]) <= 3
            seen += page["callbacks"]
            if page["next"] is None:
                break
            cursor = f"&cursor={page['next']}"
        assert sorted(c["id"] for c in seen) == sorted(ids)
        # the pending first (scheduled, soonest due first), then the finished
        assert [c["status"] for c in seen] == ["scheduled"] * 5 + ["cancelled"] * 2
        assert {c["id"] for c in seen[5:]} == set(ids[:2])
        _, page = await listing(f, token, "?status=cancelled&limit=200")
        assert sorted(c["id"] for c in page["callbacks"]) == sorted(ids[:2])
        _, page = await listing(f, token, "?service=sales&status=scheduled")
        assert [c["id"] for c in page["callbacks"]] == [ids[6]]


async def test_a_cancelled_callback_is_finished_at_the_servers_time(tmp_path: Path) -> None:
    # The server's clock, not the wall clock, says when it became final.
    moment = datetime(2030, 1, 15, 10, 0, tzinfo=UTC)
    offset = moment.timestamp() - time.time()
    async with floor(tmp_path, AGENTS, env=SLOW, supervisors=SUPERVISORS,
                     clock=lambda: time.time() + offset) as f:
        token = await login(f, "/api/v1/supervisor/login", "sam", PASSWORD)
        status, body = await f.post({"number": "0611000001", "topic": "support"})
        assert status == 202, body
        assert (await f.delete(f"/api/v1/callbacks/{body['id']}"))[0] == 200
        _, page = await listing(f, token, "?status=cancelled")
        [shown] = page["callbacks"]
        finished = datetime.fromisoformat(shown["finished_at"])
        assert timedelta(0) <= finished - moment < timedelta(minutes=1)


BAD_QUERIES = [
    ("?status=lost", "status.0"),
    ("?service=nosuch", "service"),
    ("?service=sup%26port", "service"),
    ("?limit=0", "limit"),
    ("?limit=201", "limit"),
    ("?limit=ten", "limit"),
    ("?cursor=due:-1", "cursor"),
    ("?cursor=rec:1", "cursor"),
    ("?since=yesterday", "since"),
]


async def test_a_bad_query_is_refused_naming_the_field(tmp_path: Path) -> None:
    async with floor(tmp_path, AGENTS, env=SLOW, supervisors=SUPERVISORS) as f:
        token = await login(f, "/api/v1/supervisor/login", "sam", PASSWORD)
        for query, field in BAD_QUERIES:
            status, body = await listing(f, token, query)
            assert (status, body["error"], body["fields"]) == (422, "invalid", [field]), query
