"""The store opens on a real redis-server, or in process for the demo."""

from __future__ import annotations

from pathlib import Path

from cti.store import open_store
from cti.store.connection import _safe_url
from tests.servers import redis_server


async def test_store_talks_to_a_real_redis_server(tmp_path: Path) -> None:
    with redis_server(tmp_path) as url:
        store = await open_store(url)
        try:
            assert store.durable
            assert await store.ping()
            await store.redis.set("cti:test", "1")
            assert await store.redis.get("cti:test") == "1"
        finally:
            await store.close()


async def test_without_url_the_store_is_in_process_and_runs_lua() -> None:
    store = await open_store(None)
    try:
        assert not store.durable
        assert await store.redis.eval("return ARGV[1]", 0, "ok") == "ok"
    finally:
        await store.close()


async def test_store_reports_a_dead_redis_as_not_ready(tmp_path: Path) -> None:
    with redis_server(tmp_path) as url:
        pass
    store = await open_store(url)
    try:
        assert not await store.ping()
    finally:
        await store.close()


def test_password_never_shows_in_the_description() -> None:
    assert _safe_url("redis://:hunter2@redis:6379/0") == "redis://***@redis:6379/0"
