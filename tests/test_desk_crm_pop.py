"""The CRM in the screen pop, end to end: `cti.sim` over TCP, the Server
with the desk, a real CRM on loopback (tests/crm_peer.py), desks over the
websocket. A fast CRM is in the first pop; a slow one gives the pop first
and a `pop_update` in the agent's stream; a CRM that fails leaves the pop
as the directory makes it; a late answer never reaches a withdrawn pop;
one caller costs the CRM one request however many pops they get."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cti.desk import DeskFeature
from cti.desk.crm_pop import CrmPops
from cti.desk.pop import ivr_key
from cti.switchboard import TaskQueued
from tests.crm_peer import CrmPeer
from tests.desk_kit import VIP_NUMBER, DeskClient, Rig, login, rig

pytestmark = [pytest.mark.timeout(60), pytest.mark.integration]

CRM_RECORD = {"name": "A. Dupont (CRM)", "tier": "gold", "account": "998877",
              "notes": "Prefers email", "segment": {"churn_risk": "low"},
              "link": "https://crm.example/c/42",
              "recent_contacts": [{"at": 1714557600, "channel": "email",
                                   "summary": "invoice question", "agent": "Zoe"}]}
# What the directory says of the caller (tests/desk_kit.py add_customers).
DIRECTORY = {"id": "c-vip", "name": "Alice Dupont", "tier": "vip", "account": "123456",
             "phones": [VIP_NUMBER], "segment": {}, "notes": ""}


@asynccontextmanager
async def crm_rig(tmp_path: Path, agents: list[tuple[str, str]],
                  **settings: str) -> AsyncIterator[tuple[Rig, CrmPeer]]:
    crm = await CrmPeer().start()
    crm.records[VIP_NUMBER] = CRM_RECORD
    env = {"CTI_CRM_URL_TEMPLATE": crm.template, "CTI_CRM_TIMEOUT_SECONDS": "5",
           "CTI_CRM_POP_WAIT_SECONDS": "0.1",
           **{f"CTI_CRM_{name.upper()}": value for name, value in settings.items()}}
    try:
        async with rig(tmp_path, agents, extra_env=env) as r:
            yield r, crm
    finally:
        await crm.stop()


def crm_of(r: Rig) -> CrmPops:
    feature = next(feature for feature in r.server.features if isinstance(feature, DeskFeature))
    assert feature.crm is not None
    return feature.crm


async def ready_desk(http: aiohttp.ClientSession, r: Rig, agent_id: str) -> DeskClient:
    desk = await DeskClient.open(http, r.base, await login(http, r.base, agent_id))
    await desk.of_type("snapshot")
    assert (await desk.command("ready"))["result"]["state"] == "available"
    return desk


def customer_of(pop: Mapping[str, Any]) -> dict[str, Any]:
    return {key: pop["customer"][key] for key in DIRECTORY}


async def test_a_fast_crm_is_in_the_first_pop_and_one_request_serves_two_pops(
        tmp_path: Path) -> None:
    async with crm_rig(tmp_path, [("1005", "Frank"), ("1006", "Grace")]) as (r, crm), \
            aiohttp.ClientSession() as http:
        desks = [await ready_desk(http, r, "1005"), await ready_desk(http, r, "1006")]
        pops = []
        for _ in range(2):
            await r.call(VIP_NUMBER, name="Alice")
            taken = {pop["pop"]["call_id"] for pop in pops}
            pops.append(await first_of(desks, lambda m, taken=taken: m["type"] == "pop"
                                       and m["pop"]["call_id"] not in taken))
        for message in pops:
            pop = message["pop"]
            assert pop["crm_status"] == "found"
            assert pop["crm"]["name"] == "A. Dupont (CRM)" and pop["crm"]["tier"] == "gold"
            assert pop["crm"]["recent_contacts"][0]["summary"] == "invoice question"
            # The directory keeps the identity; the CRM fills what it left empty.
            assert customer_of(pop) == {**DIRECTORY, "notes": "Prefers email",
                                        "segment": {"churn_risk": "low"}}
            assert pop["identified_by"] == "phone" and pop["vip"] is True
            assert pop["history"][0]["agent_name"] == "Carol"
        # Asked when the first call started; its pop, and the second call's
        # prefetch and pop, all had that answer.
        assert len(crm.seen) == 1
        client = crm_of(r).client
        assert client.cache_hits + client.shared >= 3
        assert not any(m["type"] == "pop_update" for desk in desks for m in desk.messages)
        async with http.get(f"{r.base}/metrics") as response:
            metrics = await response.text()
        assert 'cti_crm_requests_total{outcome="found"} 1.0' in metrics
        assert 'cti_crm_first_pops_total{crm="found"} 2.0' in metrics
        assert "cti_crm_circuit_open 0.0" in metrics
        for desk in desks:
            await desk.close()


async def first_of(desks: list[DeskClient], predicate: Any,
                   within: float = 15.0) -> dict[str, Any]:
    waits = [asyncio.ensure_future(desk.wait(predicate, within)) for desk in desks]
    try:
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        return next(iter(done)).result()
    finally:
        for wait in waits:
            wait.cancel()
        await asyncio.gather(*waits, return_exceptions=True)


async def test_the_crm_is_asked_when_the_call_starts_so_the_first_pop_has_its_answer(
        tmp_path: Path) -> None:
    async with crm_rig(tmp_path, [("1005", "Frank")]) as (r, crm), \
            aiohttp.ClientSession() as http:
        crm.mode = "hold"
        desk = await DeskClient.open(http, r.base, await login(http, r.base, "1005"))
        await desk.of_type("snapshot")
        await r.call(VIP_NUMBER, name="Alice")
        # Nobody is ready, so nothing is offered: the request is the
        # prefetch, made as the directory looked the caller up.
        async with asyncio.timeout(5):
            while not crm.seen:
                await asyncio.sleep(0.02)
        assert r.server.switchboard.offers == {}
        crm.release.set()
        client = crm_of(r).client
        async with asyncio.timeout(5):
            while client.requests.total() < 1:  # the answer is in the cache
                await asyncio.sleep(0.02)
        await desk.command("ready")
        pop = (await desk.of_type("pop"))["pop"]
        assert pop["crm_status"] == "found" and pop["crm"]["name"] == "A. Dupont (CRM)"
        assert len(crm.seen) == 1
        await desk.close()


async def test_a_pop_from_memory_updated_from_redis_keeps_what_the_crm_filled_in(
        tmp_path: Path) -> None:
    async with crm_rig(tmp_path, [("1005", "Frank")]) as (r, crm), \
            aiohttp.ClientSession() as http:
        queued: list[str] = []
        r.server.switchboard.listeners.append(
            lambda event: queued.append(event.call) if isinstance(event, TaskQueued) else None)
        desk = await DeskClient.open(http, r.base, await login(http, r.base, "1005"))
        await desk.of_type("snapshot")
        await r.call(VIP_NUMBER, name="Alice")
        client = crm_of(r).client
        async with asyncio.timeout(5):
            while client.requests.total() < 1 or not queued:  # profile and CRM answer read
                await asyncio.sleep(0.02)
        # Another node ran this caller's IVR: only Redis has its outcome, so
        # the pop sent from memory is followed by one read from Redis.
        await r.server.store.redis.set(ivr_key(queued[0]), json.dumps(
            {"flow": "main", "choices": ["2"], "customer_id": "c-vip", "verified": True}))
        await desk.command("ready")
        first = (await desk.of_type("pop"))["pop"]
        assert first["crm_status"] == "found" and first["ivr"] is None
        updated = (await desk.of_type("pop_update"))["pop"]
        assert updated["ivr"]["flow"] == "main" and updated["identified_by"] == "ivr"
        assert updated["crm_status"] == "found" and updated["crm"] == first["crm"]
        assert customer_of(updated) == customer_of(first) == {
            **DIRECTORY, "notes": "Prefers email", "segment": {"churn_risk": "low"}}
        assert len(crm.seen) == 1
        await desk.close()


async def test_a_slow_crm_gives_the_pop_first_then_a_pop_update_in_the_stream(
        tmp_path: Path) -> None:
    async with crm_rig(tmp_path, [("1005", "Frank")]) as (r, crm), \
            aiohttp.ClientSession() as http:
        crm.mode = "hold"
        desk = await ready_desk(http, r, "1005")
        welcome = await desk.of_type("welcome")
        await r.call(VIP_NUMBER, name="Alice")
        message = await desk.of_type("pop")
        pop = message["pop"]
        assert pop["crm_status"] == "pending" and pop["crm"] is None
        assert customer_of(pop) == DIRECTORY  # the directory's pop, not held for the CRM
        crm.release.set()
        update = await desk.of_type("pop_update")
        assert update["seq"] > message["seq"]
        updated = update["pop"]
        assert updated["call_id"] == pop["call_id"] and updated["crm_status"] == "found"
        assert updated["crm"]["name"] == "A. Dupont (CRM)"
        assert customer_of(updated) == {**DIRECTORY, "notes": "Prefers email",
                                        "segment": {"churn_risk": "low"}}
        assert desk.stream_seqs == list(range(1, len(desk.stream_seqs) + 1))
        assert len(crm.seen) == 1  # the pop waited on the request the call's start made
        # A tab that resumes from the pop gets the update replayed...
        resumed = await DeskClient.open(http, r.base, await login(http, r.base, "1005"),
                                        stream=welcome["stream"], last_seq=message["seq"])
        assert (await resumed.of_type("pop_update"))["seq"] == update["seq"]
        # ...and a new one a snapshot whose pop has the CRM's answer.
        fresh = await DeskClient.open(http, r.base, await login(http, r.base, "1005"))
        snapshot = await fresh.of_type("snapshot")
        assert snapshot["pop"]["crm"]["name"] == "A. Dupont (CRM)"
        assert snapshot["pop"]["progress"] in ("ringing", "connected")
        for each in (desk, resumed, fresh):
            await each.close()


async def test_a_crm_slower_than_its_timeout_never_holds_the_pop(tmp_path: Path) -> None:
    async with crm_rig(tmp_path, [("1005", "Frank")], timeout_seconds="0.8") as (r, crm), \
            aiohttp.ClientSession() as http:
        crm.mode = "hold"  # never released: the CRM does not answer in time
        desk = await ready_desk(http, r, "1005")
        await r.call(VIP_NUMBER, name="Alice")
        pop = (await desk.of_type("pop"))["pop"]
        assert pop["crm_status"] == "pending" and customer_of(pop) == DIRECTORY
        update = (await desk.of_type("pop_update", within=5.0))["pop"]
        assert update["crm_status"] == "unavailable" and update["crm"] is None
        assert customer_of(update) == DIRECTORY
        await desk.close()


async def test_a_failing_crm_leaves_the_pop_as_the_directory_makes_it(tmp_path: Path) -> None:
    agents = [("1001", "Bob"), ("1002", "Carol"), ("1005", "Frank"), ("1006", "Grace"),
              ("1007", "Heidi")]
    async with crm_rig(tmp_path, agents, pop_wait_seconds="1",
                       breaker_failures="100") as (r, crm), \
            aiohttp.ClientSession() as http:
        desks = [await ready_desk(http, r, agent_id) for agent_id, _ in agents]
        seen: set[str] = set()
        for mode in ("error", "not_json", "oversized", "wrong_shape", "down"):
            if mode == "down":
                await crm.stop()
            crm.mode = mode
            await r.call(VIP_NUMBER, name="Alice")
            message = await first_of(desks, lambda m: m["type"] == "pop"
                                     and m["pop"]["call_id"] not in seen)
            pop = message["pop"]
            seen.add(pop["call_id"])
            assert pop["crm_status"] == "unavailable" and pop["crm"] is None, mode
            assert customer_of(pop) == DIRECTORY, mode
            assert pop["history"][0]["agent_name"] == "Carol", mode
        client = crm_of(r).client
        assert {"http_error", "not_json", "too_large", "invalid", "unreachable"} <= set(
            client.requests)
        for desk in desks:
            await desk.close()


async def test_a_late_crm_answer_never_reaches_an_agent_whose_pop_was_withdrawn(
        tmp_path: Path) -> None:
    # Dave's phone never answers; the caller gives up after 3 s of ringing.
    async with crm_rig(tmp_path, [("1003", "Dave")]) as (r, crm), \
            aiohttp.ClientSession() as http:
        crm.mode = "hold"
        desk = await ready_desk(http, r, "1003")
        await r.call(VIP_NUMBER, name="Alice", patience=3)
        pop = (await desk.of_type("pop"))["pop"]
        assert pop["crm_status"] == "pending"
        withdrawn = await desk.of_type("pop_withdrawn", call_id=pop["call_id"])
        assert withdrawn["reason"] == "caller_gone"
        crm.release.set()
        updates = crm_of(r).updates
        async with asyncio.timeout(5):
            while updates["dropped"] < 1:
                await asyncio.sleep(0.02)
        assert updates["sent"] == 0
        assert (await desk.command("ping"))["type"] == "ack"
        assert not any(m["type"] == "pop_update" for m in desk.messages)
        fresh = await DeskClient.open(http, r.base, await login(http, r.base, "1003"))
        assert (await fresh.of_type("snapshot"))["pop"] is None
        await desk.close()
        await fresh.close()
