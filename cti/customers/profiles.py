"""Caller profiles read ahead of the pop: a customer's record and last
contacts, fetched from the directory while the caller is still in the IVR
(the switchboard's early lookup) and kept in memory, so the pop for the
offered agent is built without a round trip to Redis.

Each lookup at the start of a call reads Redis again and replaces the
entry: the profile a pop uses is as fresh as the caller's arrival. The
contacts this process records (a desk's disposition) update the entry in
place. Entries are bounded (least recently used out) and expire, so a
profile never outlives a long wait by much; a missing entry only means the
pop reads Redis as before.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from cti.customers.models import Contact, Customer, caller_e164
from cti.customers.store import CustomerStore

HISTORY = 5
SIZE = 20_000
TTL_S = 3600.0


@dataclass(frozen=True, slots=True)
class Profile:
    customer: Customer
    history: tuple[Contact, ...]
    # What a consumer derives from this profile once (the desk's rendered
    # card), by consumer: it lives and goes with the profile.
    derived: dict[str, object] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class _Entry:
    profile: Profile | None  # None: nobody owns this number
    read_at: float


class CallerProfiles:
    def __init__(self, store: CustomerStore, *, clock: Callable[[], float],
                 history: int = HISTORY, size: int = SIZE, ttl_s: float = TTL_S) -> None:
        self._store = store
        self._clock = clock
        self.history = history
        self._size = size
        self._ttl = ttl_s
        self._by_phone: OrderedDict[str, _Entry] = OrderedDict()
        self._by_id: OrderedDict[str, _Entry] = OrderedDict()
        self._keys: dict[str, str | None] = {}  # caller id as given -> E.164
        # Told of each profile read or changed, to derive what they need
        # from it now, off the pop's path. Must not block.
        self.on_profile: list[Callable[[Profile], object]] = []

    # -- reads from the directory (IO) ----------------------------------------------

    def _key(self, number: str) -> str | None:
        """`number` as the directory indexes it (E.164), remembered: the
        pop asks again for the same caller id, and parsing is not cheap."""
        try:
            return self._keys[number]
        except KeyError:
            key = self._keys[number] = caller_e164(number, self._store.region)
            if len(self._keys) > self._size:
                del self._keys[next(iter(self._keys))]
            return key

    async def by_phone(self, number: str) -> Profile | None:
        """The profile of the owner of `number`, read now and kept."""
        key = self._key(number)
        if key is None:
            return None
        profile = self._kept(await self._store.with_history(None, phone=key,
                                                            limit=self.history))
        self._keep(self._by_phone, key, profile)
        return profile

    async def by_id(self, customer_id: str) -> Profile | None:
        """The profile of customer `customer_id` (an IVR identification),
        read now and kept."""
        return self._kept(await self._store.with_history(customer_id, limit=self.history))

    def _kept(self, found: tuple[Customer, list[Contact]] | None) -> Profile | None:
        if found is None:
            return None
        profile = self._told(Profile(found[0], tuple(found[1])))
        self._keep(self._by_id, profile.customer.id, profile)
        return profile

    def _told(self, profile: Profile) -> Profile:
        for listener in self.on_profile:
            listener(profile)
        return profile

    # -- what is in memory (no IO) ------------------------------------------------------

    def known_phone(self, number: str) -> tuple[bool, Profile | None]:
        """(known, profile): whether `number` was read recently, and whose."""
        key = self._key(number)
        if key is None:
            return True, None  # not a number anyone can own
        return self._peek(self._by_phone, key)

    def known_id(self, customer_id: str) -> tuple[bool, Profile | None]:
        return self._peek(self._by_id, customer_id)

    def contact_added(self, customer_id: str, contact: Contact) -> None:
        """A contact this process recorded: kept profiles show it at once."""
        entry = self._by_id.get(customer_id)
        if entry is None or entry.profile is None:
            return
        profile = entry.profile
        changed = self._told(Profile(profile.customer,
                                     ((contact, *profile.history))[:self.history]))
        self._by_id[customer_id] = _Entry(changed, entry.read_at)
        for number in profile.customer.phones:
            held = self._by_phone.get(number)
            if held is not None and held.profile is not None \
                    and held.profile.customer.id == customer_id:
                self._by_phone[number] = _Entry(changed, held.read_at)

    def _peek(self, table: OrderedDict[str, _Entry], key: str) -> tuple[bool, Profile | None]:
        entry = table.get(key)
        if entry is None:
            return False, None
        if self._clock() - entry.read_at > self._ttl:
            del table[key]
            return False, None
        table.move_to_end(key)
        return True, entry.profile

    def _keep(self, table: OrderedDict[str, _Entry], key: str, profile: Profile | None) -> None:
        table[key] = _Entry(profile, self._clock())
        table.move_to_end(key)
        while len(table) > self._size:
            table.popitem(last=False)
