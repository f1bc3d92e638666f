"""`/healthz`, `/readyz` and `/metrics`.

`/healthz` says the process serves HTTP. `/readyz` says whether the server
can do its job: the AMI link is logged in and the store answers; it is 503
otherwise, with the reason, so a load balancer or compose stops sending
work. `/metrics` is the Prometheus text exposition of the server's registry.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

ReadinessCheck = Callable[[], Awaitable[tuple[bool, str]]]


@dataclass(frozen=True)
class Readiness:
    """Named checks, each answering (ready, detail)."""

    checks: dict[str, ReadinessCheck]


READINESS = web.AppKey("readiness", Readiness)
REGISTRY = web.AppKey("registry", CollectorRegistry)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    results: dict[str, dict[str, object]] = {}
    ready = True
    for name, check in request.app[READINESS].checks.items():
        ok, detail = await check()
        results[name] = {"ready": ok, "detail": detail}
        ready = ready and ok
    return web.json_response(
        {"status": "ready" if ready else "not ready", "checks": results},
        status=200 if ready else 503,
    )


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[REGISTRY])
    response = web.Response(body=body)
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    response.charset = "utf-8"
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
