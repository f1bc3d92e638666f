"""Agent reservations in Redis: the one place that makes "this agent takes
this task" atomic across server nodes.

A reservation is a key per agent holding the task id, with an expiry so a
node that died mid-offer does not hold an agent forever. Taking, extending
and giving back are Lua scripts: check and write happen in one step on the
Redis server, so two nodes can never both reserve the same agent, and a node
can only give back or extend a reservation it holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

_TAKE = """
local held = redis.call('GET', KEYS[1])
if held and held ~= ARGV[1] then return held end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"""
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_GIVE_BACK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True, slots=True)
class Taken:
    """The agent is held by another task (on this node or another)."""

    agent: str
    holder: str


class Reservations:
    def __init__(self, redis: aioredis.Redis, prefix: str = "cti:") -> None:
        self._redis = redis
        self._prefix = prefix
        self._take = redis.register_script(_TAKE)
        self._extend = redis.register_script(_EXTEND)
        self._give_back = redis.register_script(_GIVE_BACK)

    def _key(self, agent: str) -> str:
        return f"{self._prefix}reservation:{agent}"

    async def take(self, agent: str, task: str, seconds: float) -> Taken | None:
        """Reserve `agent` for `task` for `seconds`; None when done (or
        already held by the same task), `Taken` when another task holds it."""
        holder = await self._take(keys=[self._key(agent)],
                                  args=[task, max(1, int(seconds * 1000))])
        return None if not holder else Taken(agent, str(holder))

    async def extend(self, agent: str, task: str, seconds: float) -> bool:
        """Keep the reservation (the agent answered: it lasts the call)."""
        done = await self._extend(keys=[self._key(agent)],
                                  args=[task, max(1, int(seconds * 1000))])
        return bool(done)

    async def give_back(self, agent: str, task: str) -> bool:
        done = await self._give_back(keys=[self._key(agent)], args=[task])
        return bool(done)

    async def holder(self, agent: str) -> str | None:
        value = await self._redis.get(self._key(agent))
        return None if value is None else str(value)
