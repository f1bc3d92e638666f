"""Benchmark: accepted requests per second for POST /api/v1/callbacks.

One asyncio process on loopback: a real redis-server, the simulated PBX,
and the server with the callback feature (its dispatcher idle, so only the
API is measured: CORS check, per-address and per-number counters, pydantic
validation with phonenumbers, admission against the live staffing, and
the Lua write to Redis). Each request carries a distinct valid French
mobile number. The baseline, in the same run with the same client, is a
bare aiohttp handler that reads the body and answers 202.

Prints one JSON object: requests/s for both, and their ratio.

    .venv/bin/python bench/callback_api.py [--seconds 5] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cti.app import Server
from cti.center import center_from
from cti.config import load_settings
from cti.sim.server import start_sim
from cti.store.connection import open_store
from tests.servers import free_port, redis_server

ORIGIN = "https://shop.example"


async def _load(url: str, seconds: float, concurrency: int, first: int) -> tuple[int, int]:
    """(accepted, other) responses from `concurrency` workers for `seconds`."""
    accepted = other = 0
    counter = first
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        async def worker() -> None:
            nonlocal accepted, other, counter
            while time.perf_counter() < deadline:
                counter += 1
                body = {"number": f"+336{counter % 10**8:08d}", "name": "Bench",
                        "page": "https://shop.example/contact"}
                async with http.post(url, json=body, headers={"Origin": ORIGIN}) as response:
                    await response.read()
                    if response.status == 202:
                        accepted += 1
                    else:
                        other += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return accepted, other


async def _bare(port: int) -> web.AppRunner:
    async def accept(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"status": "scheduled"}, status=202)

    app = web.Application()
    app.router.add_post("/api/v1/callbacks", accept)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def main(args: argparse.Namespace) -> dict[str, Any]:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp)) as redis_url:
        sim = await start_sim(port=0, secret="bench")
        port, bare_port = free_port(), free_port()
        settings = load_settings(None, {
            "CTI_AMI_PORT": str(sim.port), "CTI_AMI_SECRET": "bench",
            "CTI_HTTP_PORT": str(port), "CTI_AGI_PORT": str(free_port()),
            "CTI_REDIS_URL": redis_url, "CTI_LOG_LEVEL": "error",
            "CTI_CALLBACKS_ALLOWED_ORIGINS": ORIGIN, "CTI_CALLBACKS_POLL_SECONDS": "60",
            "CTI_CALLBACKS_PER_ADDRESS_PER_MINUTE": "100000",
            "CTI_CALLBACKS_PROMISE_SECONDS": "86400"})
        center = center_from({
            "services": {"support": {"skills": {"support": 1}}},
            "agents": [{"id": f"{1000 + i}", "name": f"A{i}", "skills": {"support": 5},
                        "device": f"Local/{1000 + i}@sim-agent", "login_at_start": True}
                       for i in range(1, 51)]})
        store = await open_store(redis_url)
        server = Server(settings, center, store)
        await server.start()
        bare = await _bare(bare_port)
        try:
            await _load(f"http://127.0.0.1:{bare_port}/api/v1/callbacks", 1.0,
                        args.concurrency, 0)  # warm-up
            base_ok, base_other = await _load(f"http://127.0.0.1:{bare_port}/api/v1/callbacks",
                                              args.seconds, args.concurrency, 0)
            cti_ok, cti_other = await _load(f"http://127.0.0.1:{port}/api/v1/callbacks",
                                            args.seconds, args.concurrency, 10_000_000)
            stored = await store.redis.zcard("cti:cb:due")
        finally:
            await bare.cleanup()
            await server.stop()
            await sim.close()
            await store.close()
    cti_rps = cti_ok / args.seconds
    base_rps = base_ok / args.seconds
    return {
        "bench": "callback_api", "seconds": args.seconds, "concurrency": args.concurrency,
        "callbacks_accepted_per_s": round(cti_rps, 1),
        "callbacks_not_accepted": cti_other, "callbacks_stored": stored,
        "bare_202_per_s": round(base_rps, 1), "bare_not_accepted": base_other,
        "ratio_bare_over_callbacks": round(base_rps / cti_rps, 2) if cti_rps else None,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=32)
    print(json.dumps(asyncio.run(main(parser.parse_args()))))
