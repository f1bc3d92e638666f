"""A CRM for tests: a real aiohttp server on a free loopback port that
answers customer records by phone number, and can be told to misbehave
(error, not JSON, too large, wrong shape, redirect, hold its answers)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

TEMPLATE_PATH = "/api/customers?phone={phone}&account={account}"


@dataclass(frozen=True)
class Seen:
    raw_path: str            # as it came on the wire, still URL-encoded
    query: dict[str, str]    # decoded
    headers: dict[str, str]


class CrmPeer:
    """`records` maps an E.164 number to the JSON object answered for it;
    other numbers get 404. `mode`: ok, error, not_json, oversized,
    oversized_chunked, deep, wrong_shape, redirect, or hold (answers wait
    for `release`)."""

    def __init__(self) -> None:
        self.records: dict[str, Any] = {}
        self.mode = "ok"
        self.release = asyncio.Event()
        self.seen: list[Seen] = []
        self.answered = 0
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def template(self) -> str:
        return f"http://127.0.0.1:{self.port}{TEMPLATE_PATH}"

    async def start(self) -> CrmPeer:
        app = web.Application()
        app.router.add_get("/api/customers", self._answer)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(Seen(request.raw_path, dict(request.query), dict(request.headers)))
        mode = self.mode
        if mode == "hold":
            await self.release.wait()
        try:
            return await self._reply(request, mode)
        finally:
            self.answered += 1

    async def _reply(self, request: web.Request, mode: str) -> web.StreamResponse:
        if mode == "error":
            return web.json_response({"error": "database on fire"}, status=500)
        if mode == "not_json":
            return web.Response(text="<html>maintenance</html>", content_type="text/html")
        if mode == "oversized":
            return web.json_response({"name": "Big", "notes": "x" * 200_000})
        if mode == "oversized_chunked":
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            await response.write(b'{"name": "Big", "notes": "')
            for _ in range(50):
                await response.write(b"x" * 4096)
            await response.write(b'"}')
            await response.write_eof()
            return response
        if mode == "deep":  # valid JSON syntax, nested past any parser's recursion
            return web.Response(text="[" * 30_000 + "]" * 30_000,
                                content_type="application/json")
        if mode == "wrong_shape":
            return web.json_response({"name": "Eve", "link": "javascript:alert(1)"})
        if mode == "redirect":
            raise web.HTTPFound("http://127.0.0.1:9/elsewhere")
        record = self.records.get(request.query.get("phone", ""))
        if record is None:
            return web.json_response({"error": "no such customer"}, status=404)
        return web.Response(text=json.dumps(record), content_type="application/json")
