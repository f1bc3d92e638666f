"""The screen pop of an offered call: who the caller is (IVR-identified
customer, then the owner of the account or the caller number, else an
unknown caller), VIP or not, what they did in the IVR, the service and why
the router chose this agent, their last contacts, and the notes earlier
agents left on this very call (transfer, escalation).

Redis keys read and written here (beside the customer directory):

    cti:call:{call_id}:ivr     JSON object the IVR writes; may be absent
    cti:call:{call_id}:notes   list of NoteView JSON, oldest first (TTL 1 day)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import redis.asyncio as aioredis
import structlog
from pydantic import ValidationError

from cti.calls.memo import CallMemo
from cti.customers.models import Contact, Customer, is_customer_id
from cti.customers.profiles import CallerProfiles, Profile
from cti.customers.store import CustomerStore
from cti.desk.protocol import (
    ContactView,
    CustomerView,
    IvrView,
    NoteView,
    PopView,
    render_parts,
)

log = structlog.get_logger(__name__)

HISTORY = 5
NOTES_TTL_S = 86_400
MAX_NOTES = 20


Identified = Literal["ivr", "account", "phone", "unknown"]


def ivr_key(call_id: str) -> str:
    return f"cti:call:{call_id}:ivr"


def notes_key(call_id: str) -> str:
    return f"cti:call:{call_id}:notes"


@dataclass(frozen=True, slots=True)
class Offer:
    """What the switchboard knows of an offered call, in plain values."""

    call_id: str
    caller_number: str | None
    caller_name: str | None
    service: str
    rule: str
    waited_s: float
    vip: bool
    customer_id: str | None  # from the switchboard's lookup by caller number


@dataclass(frozen=True, slots=True)
class _Card:
    """A profile as the pop shows it, built and rendered once per profile
    read (while the caller is in the IVR), not per pop."""

    customer: CustomerView
    history: list[ContactView]  # shared by the pops of this profile: never changed
    rendered: str

    @classmethod
    def of(cls, profile: Profile, history: int) -> _Card:
        customer = _customer_view(profile.customer)
        contacts = [ContactView.model_validate(contact.model_dump())
                    for contact in profile.history[:history]]
        return cls(customer, contacts, render_parts(customer, contacts))


_CARD = "desk.pop"
_IVR = "desk.ivr"


class PopBuilder:
    """Builds pops. `build_now` uses only memory (the profile read while the
    caller was in the IVR, what this process wrote about the call) and
    gives None when that is not enough; `build` reads Redis."""

    def __init__(self, redis: aioredis.Redis, customers: CustomerStore, *,
                 profiles: CallerProfiles | None = None, memo: CallMemo | None = None,
                 history: int = HISTORY) -> None:
        self._redis = redis
        self._customers = customers
        self._profiles = profiles
        self._memo = memo if memo is not None else CallMemo()
        self._history = history if profiles is None else min(history, profiles.history)
        if profiles is not None:
            profiles.on_profile.append(self._card)
        self._memo.on_ivr.append(self._ivr_of)

    def _ivr_of(self, call_id: str) -> IvrView | None:
        """The IVR part of the call's pop, from this process's memo."""
        return self._memo.ivr_as(call_id, _IVR, lambda raw: _ivr(call_id, raw))

    def _card(self, profile: Profile) -> _Card:
        card = profile.derived.get(_CARD)
        if not isinstance(card, _Card):
            card = profile.derived[_CARD] = _Card.of(profile, self._history)
        return card

    def build_now(self, offer: Offer) -> PopView | None:
        """The pop from memory alone, or None when a part of it is only in
        Redis (a caller whose profile was not read ahead, an IVR that
        identified someone not read ahead)."""
        profiles = self._profiles
        if profiles is None:
            return None
        ivr = self._ivr_of(offer.call_id)
        profile: Profile | None
        identified_by: Identified
        if ivr is not None and ivr.customer_id:
            known, profile = profiles.known_id(ivr.customer_id)
            if not known:
                return None
            identified_by = "ivr"
        else:
            profile = None
        if profile is None:
            if offer.caller_number:
                known, profile = profiles.known_phone(offer.caller_number)
                if not known:
                    return None
            identified_by = "unknown" if profile is None else "phone"
        return self._assemble(offer, ivr, profile, identified_by,
                              self._memo.notes(offer.call_id))

    async def build(self, offer: Offer) -> PopView:
        # One round trip in the common case: the IVR outcome, the notes, and
        # the record and history of the customer the switchboard already
        # found by the caller's number, pipelined. Only an IVR that names
        # another customer costs more reads.
        known = offer.customer_id if offer.customer_id and is_customer_id(
            offer.customer_id) else None
        keys = self._customers.keys
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(ivr_key(offer.call_id))
            pipe.lrange(notes_key(offer.call_id), 0, MAX_NOTES - 1)
            if known is not None:
                pipe.hget(keys.record(known), "record")
                pipe.lrange(keys.contacts(known), 0, self._history - 1)
            replies = await pipe.execute()
        raw_ivr, raw_notes = replies[0], replies[1]
        ivr = _ivr(offer.call_id, raw_ivr)
        prefetched: Profile | None = None
        if known is not None and replies[2] is not None:
            prefetched = Profile(Customer.model_validate_json(replies[2]),
                                 tuple(Contact.model_validate_json(entry)
                                       for entry in replies[3]))
        customer, identified_by = await self._identify(offer, ivr, prefetched)
        if customer is None:
            profile = None
        elif prefetched is not None and prefetched.customer.id == customer.id:
            profile = prefetched
        else:
            profile = Profile(customer, tuple(
                await self._customers.history(customer.id, self._history)))
        return self._assemble(offer, ivr, profile, identified_by, raw_notes)

    def _assemble(self, offer: Offer, ivr: IvrView | None, profile: Profile | None,
                  identified_by: Identified, raw_notes: list[Any]) -> PopView:
        # Every part is a checked value already (the offer's from the
        # tracker, the views from validated models): constructed, not
        # validated again, on the pop's path.
        card = None if profile is None else self._card(profile)
        pop = PopView.model_construct(
            call_id=offer.call_id, caller_number=offer.caller_number,
            caller_name=offer.caller_name, identified_by=identified_by,
            customer=None if card is None else card.customer,
            vip=offer.vip or (profile is not None and profile.customer.vip),
            service=offer.service, rule=offer.rule, waited_s=round(offer.waited_s, 1),
            ivr=ivr, history=_NO_HISTORY if card is None else card.history,
            previous_notes=_notes(offer.call_id, raw_notes),
            progress="ringing", crm=None, crm_status="off")
        if card is not None:
            pop.with_rendered((card.customer, card.history, card.rendered))
        return pop

    async def _identify(self, offer: Offer, ivr: IvrView | None,
                        prefetched: Profile | None) -> tuple[Customer | None, Identified]:
        if ivr is not None and ivr.customer_id:
            if prefetched is not None and prefetched.customer.id == ivr.customer_id:
                return prefetched.customer, "ivr"
            customer = await self._customers.get(ivr.customer_id)
            if customer is not None:
                return customer, "ivr"
        if prefetched is not None:
            return prefetched.customer, "phone"
        if offer.caller_number:
            customer = await self._customers.by_phone(offer.caller_number)
            if customer is not None:
                return customer, "phone"
        return None, "unknown"

    def contact_added(self, customer_id: str, contact: Contact) -> None:
        if self._profiles is not None:
            self._profiles.contact_added(customer_id, contact)

    def forget(self, call_id: str) -> None:
        """The call ended: what memory held for its pop can go."""
        self._memo.forget(call_id)

    async def add_note(self, call_id: str, note: NoteView) -> None:
        """Keep an agent's notes with the call, for the next agent's pop."""
        key = notes_key(call_id)
        text = note.model_dump_json()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.rpush(key, text)
            pipe.ltrim(key, -MAX_NOTES, -1)
            pipe.expire(key, NOTES_TTL_S)
            await pipe.execute()
        self._memo.add_note(call_id, text, keep=MAX_NOTES)

    async def remove_note(self, call_id: str, note: NoteView) -> None:
        """Take back a note whose transfer did not happen."""
        self._memo.remove_note(call_id, note.model_dump_json())
        await self._redis.lrem(notes_key(call_id), -1, note.model_dump_json())


_NO_HISTORY: list[ContactView] = []  # shared by the pops of unknown callers: never changed


def _customer_view(customer: Customer) -> CustomerView:
    return CustomerView(id=customer.id, name=customer.name, tier=customer.tier,
                        account=customer.account, phones=list(customer.phones),
                        segment=dict(customer.segment), notes=customer.notes)


def _ivr(call_id: str, raw: Any) -> IvrView | None:
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise TypeError("not an object")
        known = {key: data[key] for key in IvrView.model_fields if data.get(key) is not None}
        if "choices" in known:
            known["choices"] = [str(choice) for choice in known["choices"]][:50]
        return IvrView.model_validate(known)
    except (ValueError, TypeError, ValidationError) as exc:
        # The pop goes out without the IVR part rather than not at all.
        log.warning("desk.ivr_unreadable", call_id=call_id, reason=str(exc)[:200])
        return None


def _notes(call_id: str, raw: list[Any]) -> list[NoteView]:
    notes = []
    for entry in raw:
        try:
            notes.append(NoteView.model_validate_json(entry))
        except ValidationError:
            log.warning("desk.note_unreadable", call_id=call_id)
    return notes
