"""Callbacks in Redis: the records, a sorted set by due time, the claims
and the rate counters. Every step two nodes could race on is one Lua
script: accepting (a number with a pending callback gets the existing
one), claiming due callbacks (a lease: a node that dies loses them when it
lapses, and a live node renews it), writing a claimed record (only its
holder can) and cancelling.

Keys (prefix `cti:cb:`): `rec:<id>` JSON record, `due` zset id -> due time,
`claimed` zset id -> lease end, `owner` hash id -> holder token,
`finished` zset id -> when it became final (kept as long as the records,
at most `FINISHED_KEPT`), `number:<e164>` -> the pending id, `cancel:<id>`
a cancel request for a claimed one, `rate:<kind>:<who>` counters.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from cti.callbacks.models import Callback

FINAL_TTL_S = 30 * 86_400  # a finished record stays visible this long
FINISHED_KEPT = 10_000     # finished callbacks listed for supervisors, newest

# Where the supervisor view reads, in its order: claimed (waiting for an
# agent or dialling), due (scheduled or in retry, soonest first), finished
# (newest first).
SOURCES = ("claimed", "due", "finished")

# Index a callback that became final at ARGV[1]; forget those whose record
# expired and the oldest beyond ARGV[3] entries.
_FINISHED = """
local function finished(key, id, at, ttl, kept)
  redis.call('ZADD', key, at, id)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. (tonumber(at) - tonumber(ttl)))
  local extra = redis.call('ZCARD', key) - tonumber(kept)
  if extra > 0 then redis.call('ZREMRANGEBYRANK', key, 0, extra - 1) end
end
"""

_ACCEPT = """
local existing = redis.call('GET', KEYS[1])
if existing then
  local rec = redis.call('GET', ARGV[4] .. existing)
  if rec then return {0, rec} end
end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
redis.call('SET', KEYS[1], ARGV[1])
return {1, ARGV[2]}
"""
# Expired leases first (a dead node's callbacks), then due ones, oldest first.
_CLAIM = """
local out = {}
local limit = tonumber(ARGV[4])
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, limit)) do
  out[#out + 1] = id
end
if #out < limit then
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, limit - #out)
  for _, id in ipairs(due) do
    redis.call('ZREM', KEYS[1], id)
    out[#out + 1] = id
  end
end
for _, id in ipairs(out) do
  redis.call('ZADD', KEYS[2], ARGV[2], id)
  redis.call('HSET', KEYS[3], id, ARGV[3])
end
return out
"""
_RENEW = """
local lost = {}
for i = 3, #ARGV do
  if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[1] then
    redis.call('ZADD', KEYS[1], 'XX', ARGV[2], ARGV[i])
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
"""
_WRITE = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[2], ARGV[3])
return 1
"""
# Let go of a claim: due again at ARGV[4], or final ('' : the number may
# ask again, the record expires, it is indexed as finished at ARGV[6]).
_SETTLE = _FINISHED + """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[6])
if ARGV[4] ~= '' then
  redis.call('SET', KEYS[4], ARGV[3])
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
else
  redis.call('SET', KEYS[4], ARGV[3], 'EX', ARGV[5])
  if redis.call('GET', KEYS[5]) == ARGV[1] then redis.call('DEL', KEYS[5]) end
  finished(KEYS[7], ARGV[1], ARGV[6], ARGV[5], ARGV[7])
end
return 1
"""
# 1: cancelled here; 2: claimed, cancel requested from the holder; 0: unknown.
_CANCEL = _FINISHED + """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
  if redis.call('GET', KEYS[3]) == ARGV[1] then redis.call('DEL', KEYS[3]) end
  finished(KEYS[6], ARGV[1], ARGV[4], ARGV[3], ARGV[5])
  return 1
end
if redis.call('HEXISTS', KEYS[5], ARGV[1]) == 1 then
  redis.call('SET', KEYS[4], '1', 'EX', ARGV[3])
  return 2
end
return 0
"""
_COUNT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"""


@dataclass(frozen=True, slots=True)
class Accepted:
    callback: Callback
    created: bool   # False: the number already had this one pending


class CallbackStore:
    def __init__(self, redis: aioredis.Redis, prefix: str = "cti:cb:") -> None:
        self._redis = redis
        self._p = prefix
        self._accept = redis.register_script(_ACCEPT)
        self._claim = redis.register_script(_CLAIM)
        self._renew = redis.register_script(_RENEW)
        self._write = redis.register_script(_WRITE)
        self._settle = redis.register_script(_SETTLE)
        self._cancel = redis.register_script(_CANCEL)
        self._count = redis.register_script(_COUNT)

    def _rec(self, callback_id: str) -> str:
        return f"{self._p}rec:{callback_id}"

    def _number(self, number: str) -> str:
        return f"{self._p}number:{number}"

    @property
    def _due(self) -> str:
        return f"{self._p}due"

    @property
    def _claimed(self) -> str:
        return f"{self._p}claimed"

    @property
    def _owner(self) -> str:
        return f"{self._p}owner"

    @property
    def _finished(self) -> str:
        return f"{self._p}finished"

    async def accept(self, callback: Callback) -> Accepted:
        answer = await self._accept(
            keys=[self._number(callback.number), self._rec(callback.id), self._due],
            args=[callback.id, callback.model_dump_json(), callback.due_at, f"{self._p}rec:"])
        created, raw = answer[0], answer[1]
        return Accepted(Callback.model_validate_json(raw), bool(created))

    async def get(self, callback_id: str) -> Callback | None:
        raw = await self._redis.get(self._rec(callback_id))
        return None if raw is None else Callback.model_validate_json(raw)

    async def get_many(self, ids: list[str]) -> list[Callback | None]:
        if not ids:
            return []
        raws = await self._redis.mget([self._rec(i) for i in ids])
        return [None if raw is None else Callback.model_validate_json(raw) for raw in raws]

    async def claim(self, now: float, lease_s: float, token: str, limit: int) -> list[str]:
        ids = await self._claim(keys=[self._due, self._claimed, self._owner],
                                args=[now, now + lease_s, token, limit])
        return [str(i) for i in ids]

    async def renew(self, ids: list[str], until: float, token: str) -> list[str]:
        """Extend the leases held; returns the ids no longer held."""
        if not ids:
            return []
        lost = await self._renew(keys=[self._claimed, self._owner], args=[token, until, *ids])
        return [str(i) for i in lost]

    async def write(self, callback: Callback, token: str) -> bool:
        """Store a claimed record; False if this holder lost the claim."""
        done = await self._write(keys=[self._owner, self._rec(callback.id)],
                                 args=[callback.id, token, callback.model_dump_json()])
        return bool(done)

    async def settle(self, callback: Callback, token: str, next_due: float | None) -> bool:
        """Give the claim back: due again at `next_due`, or final (listed
        as finished at its `finished_at`, else its last attempt's end)."""
        done = await self._settle(
            keys=[self._claimed, self._owner, self._due, self._rec(callback.id),
                  self._number(callback.number), f"{self._p}cancel:{callback.id}",
                  self._finished],
            args=[callback.id, token, callback.model_dump_json(),
                  "" if next_due is None else next_due, FINAL_TTL_S,
                  _finished_at(callback), FINISHED_KEPT])
        return bool(done)

    async def cancel(self, cancelled: Callback) -> int:
        """1 cancelled, 2 claimed (its holder will cancel it), 0 neither.
        Listed as finished at its `finished_at`, stamped by the caller."""
        return int(await self._cancel(
            keys=[self._due, self._rec(cancelled.id), self._number(cancelled.number),
                  f"{self._p}cancel:{cancelled.id}", self._owner, self._finished],
            args=[cancelled.id, cancelled.model_dump_json(), FINAL_TTL_S,
                  _finished_at(cancelled), FINISHED_KEPT]))

    async def cancel_requested(self, ids: list[str]) -> set[str]:
        if not ids:
            return set()
        flags = await self._redis.mget([f"{self._p}cancel:{i}" for i in ids])
        return {i for i, flag in zip(ids, flags, strict=True) if flag}

    async def booked(self, start: float, end: float) -> list[float]:
        """Due times of the callbacks due in [start, end)."""
        pairs = await self._redis.zrangebyscore(self._due, start, f"({end}", withscores=True)
        return [float(pair[1]) for pair in pairs if isinstance(pair, tuple | list)]

    async def count(self, kind: str, who: str, window_s: int) -> int:
        """Add one to a fixed-window counter and return it."""
        bucket = f"{self._p}rate:{kind}:{who}"
        return int(await self._count(keys=[bucket], args=[window_s]))

    async def due_count(self) -> int:
        return int(await self._redis.zcard(self._due))

    async def pending_by_service(self, limit: int = 10_000) -> dict[str, int]:
        """Callbacks not settled yet (waiting for their time, for a retry,
        or claimed and waiting for an agent), counted per service."""
        ids = [*await self._redis.zrange(self._due, 0, limit - 1),
               *await self._redis.zrange(self._claimed, 0, limit - 1)]
        counts: dict[str, int] = {}
        for callback in await self.get_many([str(i) for i in dict.fromkeys(ids)]):
            if callback is not None and not callback.status.final:
                counts[callback.service] = counts.get(callback.service, 0) + 1
        return counts

    async def ids(self, source: str, start: int, count: int) -> list[str]:
        """A slice of one of `SOURCES` in its order: `count` ids from
        position `start`."""
        if source not in SOURCES:
            raise ValueError(f"no source {source!r}")
        key = f"{self._p}{source}"
        stop = start + count - 1
        raw = (await self._redis.zrevrange(key, start, stop) if source == "finished"
               else await self._redis.zrange(key, start, stop))
        return [str(i) for i in raw]


def _finished_at(callback: Callback) -> float:
    if callback.finished_at is not None:
        return callback.finished_at
    ends = [a.ended_at for a in callback.attempts if a.ended_at is not None]
    return max(ends) if ends else callback.requested_at
