"""CustomerStore: customers in Redis with their phone, account and name
indexes, and each customer's contact history.

Keys, under a prefix (`cti:` by default):

    customer:{id}             hash: record (Customer JSON) and the index
                              entries it owns (phones, account, names)
    customers:by-phone        hash: E.164 number -> customer id
    customers:by-account      hash: account number -> customer id
    customers:by-name         sorted set of `name words\\0id`, for prefix search
    customer:{id}:contacts    list of Contact JSON, newest first, capped

A write and its index entries are one Lua script: it checks that no phone
or account belongs to another customer, drops the entries the previous
version owned, then writes; a refused write changes nothing. The client
must decode responses (`decode_responses=True`, as `cti.store.open_store`
makes it).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
import structlog

from cti.customers.errors import AccountTaken, CustomerConflict, PhoneTaken, UnknownCustomer
from cti.customers.models import Contact, Customer, caller_e164, is_customer_id

log = structlog.get_logger(__name__)

DEFAULT_HISTORY = 200
MAX_SEARCH = 100
MAX_NAME_KEYS = 8
# Upper bound of a prefix range in the name index: above any character a
# name can hold once encoded in UTF-8.
_PREFIX_END = "\U0010ffff"
_SEPARATOR = "\x00"

# KEYS: record, by-phone, by-account, by-name
# ARGV: id, record JSON, account ('' for none), phone count, phones..., names...
_PUT = """
local id = ARGV[1]
local nphones = tonumber(ARGV[4])
for i = 5, 4 + nphones do
  local owner = redis.call('HGET', KEYS[2], ARGV[i])
  if owner and owner ~= id then return {'phones', ARGV[i], owner} end
end
if ARGV[3] ~= '' then
  local owner = redis.call('HGET', KEYS[3], ARGV[3])
  if owner and owner ~= id then return {'account', ARGV[3], owner} end
end
local old = redis.call('HMGET', KEYS[1], 'phones', 'account', 'names')
if old[1] then
  for phone in string.gmatch(old[1], '[^\\n]+') do
    if redis.call('HGET', KEYS[2], phone) == id then redis.call('HDEL', KEYS[2], phone) end
  end
end
if old[2] and old[2] ~= '' and redis.call('HGET', KEYS[3], old[2]) == id then
  redis.call('HDEL', KEYS[3], old[2])
end
if old[3] then
  for entry in string.gmatch(old[3], '[^\\n]+') do redis.call('ZREM', KEYS[4], entry) end
end
local phones, names = {}, {}
for i = 5, 4 + nphones do
  phones[#phones + 1] = ARGV[i]
  redis.call('HSET', KEYS[2], ARGV[i], id)
end
for i = 5 + nphones, #ARGV do
  names[#names + 1] = ARGV[i]
  redis.call('ZADD', KEYS[4], 0, ARGV[i])
end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[3], ARGV[3], id) end
redis.call('HSET', KEYS[1], 'record', ARGV[2], 'phones', table.concat(phones, '\\n'),
           'account', ARGV[3], 'names', table.concat(names, '\\n'))
return {'ok'}
"""

# KEYS: record, by-phone, by-account, by-name, then the customer's own keys
# ARGV: id
_REMOVE = """
local id = ARGV[1]
local old = redis.call('HMGET', KEYS[1], 'phones', 'account', 'names')
if not old[1] and not old[2] and not old[3] then return 0 end
for phone in string.gmatch(old[1] or '', '[^\\n]+') do
  if redis.call('HGET', KEYS[2], phone) == id then redis.call('HDEL', KEYS[2], phone) end
end
if old[2] and old[2] ~= '' and redis.call('HGET', KEYS[3], old[2]) == id then
  redis.call('HDEL', KEYS[3], old[2])
end
for entry in string.gmatch(old[3] or '', '[^\\n]+') do redis.call('ZREM', KEYS[4], entry) end
redis.call('DEL', KEYS[1])
for i = 5, #KEYS do redis.call('DEL', KEYS[i]) end
return 1
"""

# KEYS: record, contacts; ARGV: contact JSON, cap
_ADD_CONTACT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('LPUSH', KEYS[2], ARGV[1])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[2]) - 1)
return redis.call('LLEN', KEYS[2])
"""


@dataclass(frozen=True, slots=True)
class CustomerKeys:
    """Where each piece of customer state lives (ids cannot hold `:`, so
    `customer:{id}` never collides with `customer:{id}:contacts`)."""

    prefix: str = "cti:"

    def record(self, customer_id: str) -> str:
        return f"{self.prefix}customer:{customer_id}"

    def contacts(self, customer_id: str) -> str:
        return f"{self.prefix}customer:{customer_id}:contacts"

    def pin_lock(self, customer_id: str) -> str:
        return f"{self.prefix}customer:{customer_id}:pin-lock"

    def pin_failures(self, customer_id: str) -> str:
        return f"{self.prefix}customer:{customer_id}:pin-failures"

    @property
    def phones(self) -> str:
        return f"{self.prefix}customers:by-phone"

    @property
    def accounts(self) -> str:
        return f"{self.prefix}customers:by-account"

    @property
    def names(self) -> str:
        return f"{self.prefix}customers:by-name"

    def owned(self, customer_id: str) -> list[str]:
        """The keys that belong to one customer alone."""
        return [self.contacts(customer_id), self.pin_lock(customer_id),
                self.pin_failures(customer_id)]


def name_words(text: str) -> str:
    """`text` as the name index compares it: accents and case folded,
    punctuation as spaces (`Marie-Hélène  D'Arc` -> `marie helene d arc`)."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(char for char in decomposed if not unicodedata.combining(char)).casefold()
    return " ".join("".join(char if char.isalnum() else " " for char in bare).split())


def name_entries(customer: Customer) -> list[str]:
    """The name index entries of a customer: the name from each of its
    words on, so a search finds `Marie Dupont` by `mar` and by `dup`."""
    words = name_words(customer.name).split()
    suffixes = dict.fromkeys(" ".join(words[i:]) for i in range(len(words)))
    return [f"{suffix}{_SEPARATOR}{customer.id}" for suffix in list(suffixes)[:MAX_NAME_KEYS]]


# redis-py types each command for its sync and async clients at once; on
# the async client every reply is awaitable.


async def _text(reply: Awaitable[bytes | str | None] | bytes | str | None) -> str | None:
    value = await reply if isinstance(reply, Awaitable) else reply
    return value.decode() if isinstance(value, bytes) else value


async def _texts(reply: Awaitable[list[bytes | str]] | list[bytes | str]) -> list[str]:
    values = await reply if isinstance(reply, Awaitable) else reply
    return [value.decode() if isinstance(value, bytes) else value for value in values]


class CustomerStore:
    """Customers and their contact history in Redis.

    `history_max` caps each history (oldest dropped first); `region` reads
    national numbers typed into `search`.
    """

    def __init__(self, redis: aioredis.Redis, *, prefix: str = "cti:",
                 history_max: int = DEFAULT_HISTORY, region: str | None = "FR") -> None:
        if history_max < 1:
            raise ValueError("history_max must be at least 1")
        self.redis = redis
        self.keys = CustomerKeys(prefix)
        self.history_max = history_max
        self.region = region
        self._put = redis.register_script(_PUT)
        self._remove = redis.register_script(_REMOVE)
        self._add_contact = redis.register_script(_ADD_CONTACT)

    # -- writes ---------------------------------------------------------------

    async def put(self, customer: Customer) -> None:
        """Create or replace `customer` with its index entries, atomically.
        `PhoneTaken` / `AccountTaken` when another customer owns one of its
        numbers or its account; then nothing was written."""
        [conflict] = await self.put_many([customer])
        if conflict is not None:
            raise conflict

    async def put_many(self, customers: Sequence[Customer]) -> list[CustomerConflict | None]:
        """`put` for several customers in one round trip. Each write is
        atomic on its own and they apply in order; the result says, for
        each, None (written) or the conflict that refused it."""
        if not customers:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for customer in customers:
                await self._put(keys=self._index_keys(customer.id),
                                args=self._put_args(customer), client=pipe)
            replies = await pipe.execute()
        results: list[CustomerConflict | None] = []
        for customer, reply in zip(customers, replies, strict=True):
            results.append(_conflict(customer.id, reply))
            if results[-1] is None:
                log.debug("customers.put", customer=customer.id, tier=customer.tier)
        return results

    async def remove(self, customer_id: str) -> bool:
        """Remove a customer, its index entries, history and PIN state;
        False when there was no such customer."""
        if not is_customer_id(customer_id):
            return False
        done = await self._remove(
            keys=[*self._index_keys(customer_id), *self.keys.owned(customer_id)],
            args=[customer_id])
        return bool(done)

    async def add_contact(self, customer_id: str, contact: Contact) -> int:
        """Record a contact at the head of the customer's history; the
        history length after it. `UnknownCustomer` if there is no such
        customer (nothing is recorded)."""
        if not is_customer_id(customer_id):
            raise UnknownCustomer(customer_id)
        length = int(await self._add_contact(
            keys=[self.keys.record(customer_id), self.keys.contacts(customer_id)],
            args=[contact.model_dump_json(), self.history_max]))
        if length < 0:
            raise UnknownCustomer(customer_id)
        return length

    # -- reads ----------------------------------------------------------------

    async def get(self, customer_id: str) -> Customer | None:
        if not is_customer_id(customer_id):
            return None
        record = await _text(self.redis.hget(self.keys.record(customer_id), "record"))
        return None if record is None else Customer.model_validate_json(record)

    async def get_many(self, customer_ids: Iterable[str]) -> list[Customer]:
        """The customers that exist among `customer_ids`, in that order."""
        ids = [customer_id for customer_id in customer_ids if is_customer_id(customer_id)]
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for customer_id in ids:
                pipe.hget(self.keys.record(customer_id), "record")
            records = await pipe.execute()
        return [Customer.model_validate_json(record) for record in records if record is not None]

    async def by_phone(self, number: str) -> Customer | None:
        """The customer who owns `number`: E.164, or as a caller id presents
        it (national form read in `region`, international without its +)."""
        e164_number = caller_e164(number, self.region)
        if e164_number is None:
            return None
        customer_id = await _text(self.redis.hget(self.keys.phones, e164_number))
        if customer_id is None:
            return None
        customer = await self.get(customer_id)
        # Replaced or removed between the two reads: the index no longer
        # says this customer.
        return customer if customer is not None and e164_number in customer.phones else None

    async def with_history(self, customer_id: str | None, *, phone: str | None = None,
                           limit: int) -> tuple[Customer, list[Contact]] | None:
        """A customer and their last `limit` contacts in one round trip
        (two when found by `phone`, an E.164 number, instead of by id)."""
        if customer_id is None and phone is not None:
            customer_id = await _text(self.redis.hget(self.keys.phones, phone))
        if customer_id is None or not is_customer_id(customer_id):
            return None
        count = max(0, min(limit, self.history_max))
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(self.keys.record(customer_id), "record")
            pipe.lrange(self.keys.contacts(customer_id), 0, count - 1)
            record, entries = await pipe.execute()
        if record is None:
            return None
        customer = Customer.model_validate_json(record)
        if phone is not None and phone not in customer.phones:
            return None  # replaced between the two reads
        return customer, [Contact.model_validate_json(entry) for entry in entries][:count]

    async def by_account(self, account: str) -> Customer | None:
        customer_id = await _text(self.redis.hget(self.keys.accounts, account))
        if customer_id is None:
            return None
        customer = await self.get(customer_id)
        return customer if customer is not None and customer.account == account else None

    async def history(self, customer_id: str, limit: int | None = None) -> list[Contact]:
        """The customer's contacts, newest first, at most `limit`."""
        count = self.history_max if limit is None else max(0, min(limit, self.history_max))
        if count == 0 or not is_customer_id(customer_id):
            return []
        entries = await _texts(self.redis.lrange(self.keys.contacts(customer_id), 0, count - 1))
        return [Contact.model_validate_json(entry) for entry in entries]

    async def search(self, text: str, limit: int = 20) -> list[Customer]:
        """Customers matching `text`: the owner of the number (in any form
        `region` reads), the owner of the account, then customers whose
        name, or a word of it onwards, starts with `text`. At most `limit`
        (and never more than 100)."""
        limit = max(0, min(limit, MAX_SEARCH))
        text = text.strip()[:MAX_SEARCH]
        if not text or limit == 0:
            return []
        ids: list[str] = []
        number = caller_e164(text, self.region)
        if number is not None:
            owner = await _text(self.redis.hget(self.keys.phones, number))
            if owner is not None:
                ids.append(owner)
        if text.isdigit():
            owner = await _text(self.redis.hget(self.keys.accounts, text))
            if owner is not None:
                ids.append(owner)
        prefix = name_words(text)
        if prefix:
            # A customer can own several entries under one prefix: read a
            # few more than asked, bounded all the same.
            entries = await _texts(self.redis.zrangebylex(
                self.keys.names, f"[{prefix}", f"[{prefix}{_PREFIX_END}", 0, limit * 4))
            ids.extend(entry.rpartition(_SEPARATOR)[2] for entry in entries)
        return await self.get_many(list(dict.fromkeys(ids))[:limit])

    # -- helpers --------------------------------------------------------------

    def _index_keys(self, customer_id: str) -> list[str]:
        return [self.keys.record(customer_id), self.keys.phones, self.keys.accounts,
                self.keys.names]

    @staticmethod
    def _put_args(customer: Customer) -> list[str | int]:
        return [customer.id, customer.model_dump_json(), customer.account or "",
                len(customer.phones), *customer.phones, *name_entries(customer)]


def _conflict(customer_id: str, reply: list[str]) -> CustomerConflict | None:
    kind, *rest = reply
    if kind == "ok":
        return None
    value, owner = rest
    if kind == "phones":
        return PhoneTaken(customer_id, value, owner)
    return AccountTaken(customer_id, value, owner)
