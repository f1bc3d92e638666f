"""The pop built from memory: the caller's profile read ahead while they
are in the IVR (cti/customers/profiles.py), the IVR outcome and notes this
process wrote (cti/calls/memo.py). When memory is not enough the pop reads
Redis as before; when Redis knows more than memory (another node wrote
it), the desk gets the pop again, updated."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp
import pytest

from cti.calls.memo import CallMemo
from cti.customers.models import Contact, parse_customer
from cti.customers.profiles import CallerProfiles
from cti.customers.store import CustomerStore
from cti.desk.pop import Offer, PopBuilder, ivr_key
from cti.desk.protocol import NoteView
from cti.store.connection import open_store
from cti.switchboard import SwitchboardEvent, TaskQueued
from tests.desk_kit import VIP_NUMBER, DeskClient, login, rig

NUMBER = "+33611223344"


def _offer(call_id: str = "call-1", number: str | None = NUMBER) -> Offer:
    return Offer(call_id=call_id, caller_number=number, caller_name="Bob", service="support",
                 rule="longest idle", waited_s=3.0, vip=False, customer_id=None)


def _contact(at: float, notes: str) -> Contact:
    return Contact(at=at, channel="voice", direction="inbound", service="support",
                   agent_id="1002", agent_name="Carol", duration_s=60, outcome="handled",
                   disposition="resolved", notes=notes)


@pytest.mark.timeout(30)
async def test_memory_alone_builds_the_pop_only_when_it_holds_every_part() -> None:
    store = await open_store(None)
    try:
        customers = CustomerStore(store.redis, region="FR")
        await customers.put(parse_customer({"id": "c-bob", "name": "Bob Martin",
                                            "phones": [NUMBER], "account": "7777"},
                                           region="FR"))
        await customers.put(parse_customer({"id": "c-eve", "name": "Eve Durand",
                                            "tier": "vip", "phones": ["+33699887766"]},
                                           region="FR"))
        await customers.add_contact("c-bob", _contact(time.time() - 60, "first"))
        now = [1000.0]
        profiles = CallerProfiles(customers, clock=lambda: now[0], ttl_s=600)
        memo = CallMemo()
        pops = PopBuilder(store.redis, customers, profiles=profiles, memo=memo)

        assert pops.build_now(_offer()) is None  # nothing read ahead: Redis is needed
        await profiles.by_phone(NUMBER)
        pop = pops.build_now(_offer())
        assert pop is not None and pop.identified_by == "phone"
        assert pop.customer is not None and pop.customer.name == "Bob Martin"
        assert [c.notes for c in pop.history] == ["first"]
        assert pop == await pops.build(_offer())  # memory and Redis agree

        # A number nobody owns is known too, once read: the unknown-caller pop.
        await profiles.by_phone("+33600000001")
        unknown = pops.build_now(_offer(number="+33600000001"))
        assert unknown is not None and unknown.identified_by == "unknown"
        assert unknown.customer is None

        # The IVR identified someone else, not read ahead: memory says no.
        memo.put_ivr("call-1", json.dumps({"flow": "main", "customer_id": "c-eve",
                                           "verified": True}))
        assert pops.build_now(_offer()) is None
        await profiles.by_id("c-eve")
        by_ivr = pops.build_now(_offer())
        assert by_ivr is not None and by_ivr.identified_by == "ivr"
        assert by_ivr.customer is not None and by_ivr.customer.id == "c-eve"
        assert by_ivr.vip is True and by_ivr.ivr is not None and by_ivr.ivr.verified

        # Notes this process wrote are in the pop; a taken-back one is not.
        note = NoteView(at=1.0, agent_id="1001", agent_name="Ann", service="support",
                        notes="wants a refund")
        await pops.add_note("call-2", note)
        with_note = pops.build_now(_offer("call-2"))
        assert with_note is not None
        assert [n.notes for n in with_note.previous_notes] == ["wants a refund"]
        await pops.remove_note("call-2", note)
        after = pops.build_now(_offer("call-2"))
        assert after is not None and after.previous_notes == []

        # A contact recorded here shows at once; an old read expires.
        pops.contact_added("c-bob", _contact(time.time(), "second"))
        fresh = pops.build_now(_offer("call-3"))
        assert fresh is not None and [c.notes for c in fresh.history] == ["second", "first"]
        now[0] += 601
        assert pops.build_now(_offer("call-3")) is None
    finally:
        await store.close()


@pytest.mark.timeout(60)
@pytest.mark.integration
async def test_a_pop_sent_from_memory_is_updated_with_what_another_node_wrote(
        tmp_path: Path) -> None:
    async with rig(tmp_path, [("1007", "Heidi")]) as r, aiohttp.ClientSession() as http:
        queued: list[str] = []

        def on_event(event: SwitchboardEvent) -> None:
            if isinstance(event, TaskQueued):
                queued.append(event.call)

        r.server.switchboard.listeners.append(on_event)
        desk = await DeskClient.open(http, r.base, await login(http, r.base, "1007"))
        await desk.of_type("snapshot")
        await r.call(VIP_NUMBER, name="Alice")
        async with asyncio.timeout(15):
            while not queued:
                await asyncio.sleep(0.02)
        call_id = queued[0]
        # The profile was read while the caller was on their way in.
        known, profile = r.server.profiles.known_phone(VIP_NUMBER)
        assert known and profile is not None and profile.customer.id == "c-vip"
        # Another node ran this caller's IVR: only Redis has its outcome.
        await r.server.store.redis.set(ivr_key(call_id), json.dumps(
            {"flow": "main", "choices": ["2"], "customer_id": "c-vip", "verified": True}))

        assert (await desk.command("ready"))["type"] == "ack"
        first = await desk.of_type("pop")
        assert first["pop"]["call_id"] == call_id and first["pop"]["ivr"] is None
        assert first["pop"]["customer"]["name"] == "Alice Dupont"
        assert first["pop"]["history"][0]["agent_name"] == "Carol"
        second = await desk.of_type("pop_update")
        assert second["seq"] > first["seq"]
        assert second["pop"]["ivr"]["flow"] == "main" and second["pop"]["ivr"]["verified"]
        assert second["pop"]["identified_by"] == "ivr"
        # A tab opened now gets the updated pop in its snapshot.
        other = await DeskClient.open(http, r.base, await login(http, r.base, "1007"))
        snapshot = await other.of_type("snapshot")
        assert snapshot["pop"]["ivr"]["flow"] == "main"
        await other.close()
        await desk.close()


@pytest.mark.timeout(60)
@pytest.mark.integration
async def test_a_ringall_queue_call_pops_on_every_rung_desk_and_stays_with_the_answerer(
        tmp_path: Path) -> None:
    """Asterisk's own queue (app_queue `helpdesk`, strategy ringall, as in
    recording 05) rings Frank (answers after 1 s) and Heidi (2 s) at once:
    both desks get the pop, Heidi's is withdrawn when Frank answers, and
    the router never takes the call out of Asterisk's queue."""
    async with rig(tmp_path, [("1005", "Frank"), ("1007", "Heidi")]) as r, \
            aiohttp.ClientSession() as http:
        frank = await DeskClient.open(http, r.base, await login(http, r.base, "1005"))
        heidi = await DeskClient.open(http, r.base, await login(http, r.base, "1007"))
        for desk in (frank, heidi):
            await desk.of_type("snapshot")
            assert (await desk.command("ready"))["type"] == "ack"
        for agent in ("1005", "1007"):
            added = await r.ami.action("QueueAdd", ("Queue", "helpdesk"),
                                       ("Interface", f"Local/{agent}@sim-agent"))
            assert added.response == "Success", added
        decisions = r.server.switchboard.decisions
        answer = await r.ami.action(
            "Originate", ("Channel", "Local/60@sim-caller"), ("Context", "queue-inbound"),
            ("Exten", "helpdesk"), ("Priority", "1"),
            ("CallerID", f'"Alice" <{VIP_NUMBER}>'), ("Async", "true"))
        assert answer.response == "Success", answer

        on_frank = (await frank.of_type("pop"))["pop"]
        on_heidi = (await heidi.of_type("pop"))["pop"]
        assert on_frank["call_id"] == on_heidi["call_id"]
        assert on_frank["customer"]["name"] == "Alice Dupont" and on_frank["vip"] is True
        assert on_frank["service"] == "helpdesk"
        call_id = on_frank["call_id"]
        await frank.of_type("call_progress", call_id=call_id, progress="connected")
        withdrawn = await heidi.of_type("pop_withdrawn", call_id=call_id)
        assert withdrawn["reason"] == "answered_elsewhere"
        assert not [m for m in frank.messages if m["type"] == "pop_withdrawn"]
        # Frank's call: he can record its disposition once it ends.
        tracker = r.server.tracker
        caller = tracker.channels[tracker.calls[call_id].customer or ""].name
        hangup = await r.ami.action("Hangup", ("Channel", caller))
        assert hangup.response == "Success", hangup
        await frank.of_type("call_progress", call_id=call_id, progress="ended")
        ack = await frank.command("disposition", call_id=call_id, disposition="resolved")
        assert ack["type"] == "ack" and ack["result"]["customer_id"] == "c-vip"
        refused = await heidi.command("disposition", call_id=call_id, disposition="resolved")
        assert refused["type"] == "error" and refused["code"] == "unknown_call"
        assert r.server.switchboard.decisions == decisions  # app_queue's call, not routed
        for desk in (frank, heidi):
            await desk.close()
