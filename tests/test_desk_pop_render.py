"""What the pop's fast path prepares ahead and how it is kept honest: the
customer card and history rendered when the profile is read
(cti/customers/profiles.py `on_profile`), the IVR outcome parsed when it is
written (cti/calls/memo.py `ivr_as`), a pop message assembled from those
parts (cti/desk/protocol.py) that reads back exactly as the generic
serialisation, and a part never used once the pop no longer holds what it
rendered."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cti.calls.memo import CallMemo
from cti.customers.models import Contact, parse_customer
from cti.customers.profiles import CallerProfiles
from cti.customers.store import CustomerStore
from cti.desk.crm import CrmResult
from cti.desk.crm_pop import with_crm
from cti.desk.crm_record import CrmRecord
from cti.desk.pop import Offer, PopBuilder
from cti.desk.protocol import (
    ContactView,
    CustomerView,
    IvrView,
    NoteView,
    PopMessage,
    PopUpdate,
    PopView,
    render_parts,
)
from cti.store.connection import open_store

NUMBER = "+33611223344"


def _generic(message: PopMessage | PopUpdate, seq: int) -> object:
    return json.loads(message.model_copy(update={"seq": seq}).model_dump_json())


def _contact(notes: str, at: float = 1_700_000_000.0) -> Contact:
    return Contact(at=at, channel="voice", direction="inbound", service="support",
                   agent_id="1002", agent_name="Carol", duration_s=60, outcome="handled",
                   disposition="resolved", notes=notes)


def _pop(notes: str = "called about the bill", name: str = "Bob Martin") -> PopView:
    customer = CustomerView(id="c-bob", name=name, tier="vip", account="7777",
                            phones=[NUMBER], segment={"recency": 3, "rfm": "A"},
                            notes="prefers mornings")
    history = [ContactView.model_validate(_contact(notes).model_dump())]
    pop = PopView(call_id="call-1", caller_number=NUMBER, caller_name="Bob",
                  identified_by="phone", customer=customer, vip=True, service="support",
                  rule="longest idle", waited_s=3.2,
                  ivr=IvrView(flow="main", choices=["1", "2"], verified=True),
                  history=history,
                  previous_notes=[NoteView(at=1.0, agent_id="1001", agent_name="Ann",
                                           service="support", notes="wants a refund")])
    return pop.with_rendered((customer, history, render_parts(customer, history)))


def test_a_rendered_pop_reads_back_as_the_generic_serialisation() -> None:
    pop = _pop()
    for message in (PopMessage(pop=pop), PopUpdate(pop=pop)):
        assert json.loads(message.text(41)) == _generic(message, 41)
    unknown = PopView(call_id="call-2", caller_number=None, caller_name=None,
                      identified_by="unknown", customer=None, vip=False, service="support",
                      rule="longest idle", waited_s=0.0, ivr=None, history=[],
                      previous_notes=[])
    assert json.loads(PopMessage(pop=unknown).text(1)) == _generic(PopMessage(pop=unknown), 1)


# What a validated record may hold: quotes, backslashes, any script, emoji.
_TEXT = st.characters(whitelist_categories=("L", "N", "P", "S", "Zs"))


@settings(max_examples=60, deadline=None)
@given(notes=st.text(_TEXT, max_size=200), name=st.text(_TEXT, min_size=1, max_size=60))
def test_any_text_in_the_rendered_parts_reads_back_the_same(notes: str, name: str) -> None:
    message = PopMessage(pop=_pop(notes, name))
    assert json.loads(message.text(7)) == _generic(message, 7)


def test_a_copy_that_changes_other_fields_keeps_the_parts_and_one_that_changes_them_does_not(
) -> None:
    pop = _pop()
    connected = pop.model_copy(update={"progress": "connected"})
    assert json.loads(connected.to_json())["progress"] == "connected"
    assert json.loads(connected.to_json()) == json.loads(connected.model_dump_json())
    # The CRM's answer replaces the customer card: the parts rendered for
    # the old one must not be sent.
    record = CrmRecord(name="Robert Martin", tier="vip", account="7777", notes="",
                       segment={}, link=None, recent_contacts=[])
    merged = with_crm(pop, CrmResult("found", record))
    assert merged.customer is not pop.customer
    sent = json.loads(PopUpdate(pop=merged).text(3))
    assert sent == _generic(PopUpdate(pop=merged), 3)
    assert sent["pop"]["crm_status"] == "found"


def test_the_same_pop_rendered_or_not_is_the_same_pop_on_screen() -> None:
    pop = _pop()
    plain = PopView.model_validate(pop.model_dump())
    assert pop.same_as(plain)
    assert not pop.same_as(pop.model_copy(update={"progress": "connected"}))


def test_the_ivr_outcome_is_parsed_once_per_outcome_written() -> None:
    memo = CallMemo()
    parsed: list[str] = []

    def parse(raw: str) -> dict[str, object]:
        parsed.append(raw)
        return dict(json.loads(raw))

    told: list[str] = []
    memo.on_ivr.append(told.append)
    assert memo.ivr_as("call-1", "k", parse) is None  # nothing written
    memo.put_ivr("call-1", '{"flow": "main"}')
    assert told == ["call-1"]
    assert memo.ivr_as("call-1", "k", parse) == {"flow": "main"}
    assert memo.ivr_as("call-1", "k", parse) == {"flow": "main"}
    assert parsed == ['{"flow": "main"}']
    memo.put_ivr("call-1", '{"flow": "billing"}')  # a new outcome is parsed again
    assert memo.ivr_as("call-1", "k", parse) == {"flow": "billing"}
    assert len(parsed) == 2
    memo.forget("call-1")
    assert memo.ivr_as("call-1", "k", parse) is None


@pytest.mark.timeout(30)
async def test_the_card_is_ready_when_the_profile_is_read_and_follows_new_contacts() -> None:
    store = await open_store(None)
    try:
        customers = CustomerStore(store.redis, region="FR")
        await customers.put(parse_customer({"id": "c-bob", "name": "Bob Martin",
                                            "tier": "vip", "phones": [NUMBER]}, region="FR"))
        await customers.add_contact("c-bob", _contact("first", time.time() - 60))
        profiles = CallerProfiles(customers, clock=time.monotonic, ttl_s=600)
        memo = CallMemo()
        pops = PopBuilder(store.redis, customers, profiles=profiles, memo=memo)
        profile = await profiles.by_phone(NUMBER)
        assert profile is not None and "desk.pop" in profile.derived  # rendered on read
        memo.put_ivr("call-1", json.dumps({"flow": "main", "choices": ["2"]}))
        offer = Offer(call_id="call-1", caller_number=NUMBER, caller_name="Bob",
                      service="support", rule="longest idle", waited_s=1.0, vip=False,
                      customer_id="c-bob")
        pop = pops.build_now(offer)
        assert pop is not None and pop.customer is not None and pop.ivr is not None
        assert pop.ivr.choices == ["2"] and pop.vip
        assert [c.notes for c in pop.history] == ["first"]
        sent = json.loads(PopMessage(pop=pop).text(1))
        assert sent == _generic(PopMessage(pop=pop), 1)
        assert sent["pop"]["customer"]["name"] == "Bob Martin"

        # A contact recorded here: a new profile, a new card, the new pop shows it.
        pops.contact_added("c-bob", _contact("second", time.time()))
        again = pops.build_now(offer)
        assert again is not None
        assert [c.notes for c in again.history] == ["second", "first"]
        assert [c["notes"] for c in json.loads(PopMessage(pop=again).text(2))["pop"]
                ["history"]] == ["second", "first"]
    finally:
        await store.close()
