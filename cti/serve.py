"""`cti serve`: the production entry point. Reads the settings and the
center file, opens the store, runs the `Server` until SIGTERM or SIGINT,
then shuts down gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import structlog

from cti.app import Server
from cti.center import Center, CenterError, load_center
from cti.config import ConfigError, Settings, load_settings
from cti.logs import configure_logging
from cti.store.connection import open_store

log = structlog.get_logger(__name__)



def load(config: Path | None) -> tuple[Settings, Center] | int:
    """Settings and center, or exit code 2 after printing every problem."""
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        for key, reason in exc.problems:
            print(f"{key}: {reason}", file=sys.stderr)
        return 2
    if settings.center.file is None:
        print("center.file: not set; point it (or CTI_CENTER_FILE) at the YAML file "
              "that defines services and agents", file=sys.stderr)
        return 2
    try:
        center = load_center(settings.center.file)
    except CenterError as exc:
        for path, reason in exc.problems:
            print(f"{exc.source}: {path}: {reason}", file=sys.stderr)
        return 2
    return settings, center


async def run_until_signalled(server: Server, stop: asyncio.Event | None = None,
                              on_started: Callable[[], None] | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await server.start()
    # What start-up allocated lives as long as the process: keep it out of
    # the collector's full passes, which otherwise grow with it.
    gc.freeze()
    if on_started is not None:
        on_started()
    try:
        await stop.wait()
    finally:
        await server.stop()


def main(config: Path | None) -> int:
    loaded = load(config)
    if isinstance(loaded, int):
        return loaded
    settings, center = loaded
    configure_logging(settings.log.format, settings.log.level)

    async def run() -> None:
        url = settings.redis.url.get_secret_value() if settings.redis.url else None
        store = await open_store(url)
        try:
            server = Server(settings, center, store, vip_lookup="directory")
            log.info("server.starting", services=sorted(center.policy.services),
                     agents=len(center.agents), store=store.description)
            await run_until_signalled(server)
        finally:
            await store.close()

    asyncio.run(run())
    return 0
