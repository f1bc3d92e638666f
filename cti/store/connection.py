"""The Redis connection the server keeps, or an in-process stand-in.

Redis is the source of truth for what must survive a restart. With no
`CTI_REDIS_URL` (the demo), an in-process store with the same redis client
API (fakeredis, with Lua for the atomic scripts) takes its place, and the
log says so: nothing in it survives the process.
"""

from __future__ import annotations

from dataclasses import dataclass

import fakeredis
import redis.asyncio as aioredis
import structlog

log = structlog.get_logger(__name__)


@dataclass
class Store:
    redis: aioredis.Redis
    durable: bool
    description: str

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except (aioredis.ConnectionError, aioredis.TimeoutError, OSError):
            return False

    async def close(self) -> None:
        await self.redis.aclose()


async def open_store(url: str | None) -> Store:
    if url:
        client = aioredis.from_url(
            url, decode_responses=True, socket_connect_timeout=5, health_check_interval=30
        )
        return Store(client, durable=True, description=_safe_url(url))
    log.warning(
        "store.in_process",
        reason="no CTI_REDIS_URL set",
        consequence="nothing survives a restart; use Redis in production",
    )
    return Store(fakeredis.FakeAsyncRedis(decode_responses=True), durable=False,
                 description="in-process")


def _safe_url(url: str) -> str:
    """The URL without its password, for logs and /readyz."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
