"""The callback routes: thin, parse -> service -> response. One middleware
for the /api/v1/callbacks paths applies the CORS allow-list (also on
errors, so a page can read the reason), the per-address rate limit, and
maps `CallbackError` to JSON."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

import structlog
from aiohttp import web
from pydantic import ValidationError

from cti.callbacks.errors import (
    BodyTooLarge,
    CallbackError,
    InvalidRequest,
    OriginRefused,
    RateLimited,
    SiteKeyRefused,
)
from cti.callbacks.models import CallbackRequest, iso
from cti.callbacks.openapi import document
from cti.callbacks.service import CallbackService, slot_view
from cti.callbacks.sites import check_site_key
from cti.config import CallbacksSettings, NumbersSettings

log = structlog.get_logger(__name__)

PREFIX = "/api/v1/callbacks"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_SITE_HEADER = "X-CTI-Site-Key"


class CallbackRoutes:
    def __init__(self, service: CallbackService, settings: CallbacksSettings,
                 numbers: NumbersSettings) -> None:
        self.service = service
        self.settings = settings
        self.numbers = numbers
        self._origins = frozenset(o.rstrip("/") for o in settings.allowed_origins)
        self._openapi = json.dumps(document())

    def install(self, app: web.Application) -> None:
        app.middlewares.append(self.edge)
        app.router.add_post(PREFIX, self.create)
        app.router.add_get(f"{PREFIX}/slots", self.slots)
        app.router.add_get(PREFIX + "/{id}", self.status)
        app.router.add_delete(PREFIX + "/{id}", self.cancel)
        for path in (PREFIX, f"{PREFIX}/slots", PREFIX + "/{id}"):
            app.router.add_route("OPTIONS", path, self.preflight)
        app.router.add_get("/api/v1/openapi.json", self.openapi)
        app.router.add_get("/widget/callback.js", self.static("callback.js", "text/javascript"))
        app.router.add_get("/widget/callback.css", self.static("callback.css", "text/css"))

    # -- the edge ----------------------------------------------------------------

    @web.middleware
    async def edge(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(PREFIX):
            return await handler(request)
        origin = request.headers.get("Origin")
        try:
            if origin is not None and origin.rstrip("/") not in self._origins:
                raise OriginRefused("this origin may not use the callback API")
            if request.method != "OPTIONS":
                # Reads (the widget follows its status) get ten times the budget.
                reading = request.method in ("GET", "HEAD")
                count = await self.service.store.count(
                    "read" if reading else "write", request.remote or "unknown", 60)
                budget = self.settings.per_address_per_minute * (10 if reading else 1)
                if count > budget:
                    raise RateLimited("too many requests; try again in a minute",
                                      retry_after=60)
            response = await handler(request)
        except CallbackError as exc:
            response = web.json_response(
                {"error": exc.code, "message": exc.message, **exc.details}, status=exc.status)
            if isinstance(exc, RateLimited):
                response.headers["Retry-After"] = str(exc.details.get("retry_after", 60))
            log.info("callback.refused", code=exc.code, method=request.method,
                     path=request.path, origin=origin, remote=request.remote)
        if origin is not None and origin.rstrip("/") in self._origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
        return response

    async def preflight(self, request: web.Request) -> web.Response:
        return web.Response(status=204, headers={
            "Access-Control-Allow-Methods": "GET, POST, DELETE",
            "Access-Control-Allow-Headers": f"Content-Type, {_SITE_HEADER}",
            "Access-Control-Max-Age": "600"})

    # -- routes ------------------------------------------------------------------

    async def create(self, request: web.Request) -> web.Response:
        self._check_site(request)
        body = await self._json(request)
        try:
            parsed = CallbackRequest.model_validate(body, context={
                "region": self.numbers.default_region,
                "countries": self.numbers.allowed_callback_countries})
        except ValidationError as exc:
            raise InvalidRequest(field_errors(exc)) from None
        callback, created = await self.service.accept(parsed)
        return web.json_response({**callback.public(), "duplicate": not created}, status=202)

    async def slots(self, request: web.Request) -> web.Response:
        topic = request.query.get("topic")
        # Absent: the default topic. Present, it must be a topic name (an
        # empty `?topic=` is a mistake of the page, not the default).
        if topic is not None and (not topic or len(topic) > 32 or not topic.replace("-", "")
                                  .replace("_", "").isalnum() or not topic.isascii()):
            raise InvalidRequest([{"field": "topic", "reason": "not a topic name"}])
        service = self.service.service_of(topic)
        offered = await self.service.slots(topic)
        wait = self.service.asap_wait(service)
        expected = None if wait is None else iso(self.service.now() + wait)
        return web.json_response({"slots": [slot_view(s) for s in offered],
                                  "asap": wait is not None, "expected_at": expected})

    async def status(self, request: web.Request) -> web.Response:
        callback = await self.service.get(request.match_info["id"])
        return web.json_response(callback.public())

    async def cancel(self, request: web.Request) -> web.Response:
        callback = await self.service.cancel(request.match_info["id"])
        return web.json_response(callback.public())

    async def openapi(self, request: web.Request) -> web.Response:
        return web.Response(text=self._openapi, content_type="application/json")

    def static(self, name: str, content_type: str) -> Handler:
        text = resources.files("cti.callbacks").joinpath("static", name).read_text("utf-8")

        async def serve(request: web.Request) -> web.Response:
            return web.Response(text=text, content_type=content_type,
                                headers={"Cache-Control": "public, max-age=300"})

        return serve

    # -- helpers -------------------------------------------------------------------

    def _check_site(self, request: web.Request) -> None:
        secret = self.settings.site_secret
        if secret is None:
            return
        key = request.headers.get(_SITE_HEADER, "")
        origin = request.headers.get("Origin", "")
        if not origin or check_site_key(secret.get_secret_value().encode(), key,
                                        origin.rstrip("/")) is None:
            raise SiteKeyRefused("a valid site key for this origin is required")

    async def _json(self, request: web.Request) -> Any:
        limit = self.settings.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise BodyTooLarge(f"the body is larger than {limit} bytes")
        raw = await request.content.read(limit + 1)
        if len(raw) > limit:
            raise BodyTooLarge(f"the body is larger than {limit} bytes")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise InvalidRequest([{"field": "body", "reason": "not JSON"}]) from None
        if not isinstance(body, dict):
            raise InvalidRequest([{"field": "body", "reason": "must be a JSON object"}])
        return body


def field_errors(exc: ValidationError) -> list[dict[str, str]]:
    """pydantic's errors as [{field, reason}], never echoing the input."""
    out: list[dict[str, str]] = []
    for error in exc.errors(include_input=False, include_url=False):
        parts = [str(p) for p in error["loc"] if not isinstance(p, int)]
        # `when` is "asap" | datetime: report it once, as the field.
        field = parts[0] if parts else "body"
        reason = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            reason = "unknown field"
        if not any(e["field"] == field for e in out):
            out.append({"field": field, "reason": reason})
    return out
