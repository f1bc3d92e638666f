"""The supervisors' view of callbacks: `GET /api/v1/supervisor/callbacks`
lists them (waiting for an agent or dialling, then scheduled or in retry,
soonest first, then finished, newest first), filtered by status and
service, one bounded page at a time, each with every attempt (when, the
agent, the outcome). A supervisor session is required, checked as the
wallboard checks it (cti/web/sessions.py). Thin: the query is parsed by
pydantic, the store is read, the records are shown."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from cti.auth import SessionKeys
from cti.callbacks.models import Callback, Status
from cti.callbacks.store import SOURCES, CallbackStore
from cti.web.sessions import SessionRefused, session_of

log = structlog.get_logger(__name__)

PATH = "/api/v1/supervisor/callbacks"
MAX_LIMIT = 200
# At most this many records are read for one page: with a filter that few
# callbacks match, a page may come back short, with a cursor to go on.
SCAN_MAX = 1000
_BATCH = 100
_CURSOR = re.compile(rf"({'|'.join(SOURCES)}):([0-9]{{1,6}})")
# The statuses each source holds (a record moving between them meanwhile
# is shown as it is now).
_HOLDS = {"claimed": {Status.QUEUED, Status.DIALING},
          "due": {Status.SCHEDULED, Status.RETRY},
          "finished": {Status.COMPLETED, Status.FAILED, Status.CANCELLED}}

Clock = Callable[[], float]


class CallbackListQuery(BaseModel):
    """The query string. `status`: comma separated statuses (or repeated);
    `service`: one of the center's services (validated with
    `context={"services": ...}`); `cursor`: the `next` of the previous page."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: frozenset[Status] = frozenset()
    service: Annotated[str | None, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")] = None
    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT)] = 50
    cursor: Annotated[str | None, Field(pattern=_CURSOR.pattern)] = None

    @field_validator("status", mode="before")
    @classmethod
    def _statuses(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("service")
    @classmethod
    def _service(cls, value: str | None, info: ValidationInfo) -> str | None:
        services = (info.context or {}).get("services")
        if value is not None and services is not None and value not in services:
            raise ValueError("not a service of this center")
        return value

    def wants(self, callback: Callback) -> bool:
        return ((not self.status or callback.status in self.status)
                and (self.service is None or callback.service == self.service))


@dataclass(frozen=True, slots=True)
class Page:
    callbacks: list[Callback]
    next: str | None   # the cursor of the next page; None: nothing more


async def list_callbacks(store: CallbackStore, query: CallbackListQuery) -> Page:
    """One page: at most `query.limit` callbacks, reading at most SCAN_MAX
    records, from the cursor on through the sources in order."""
    start, offset = 0, 0
    if query.cursor is not None:
        match = _CURSOR.fullmatch(query.cursor)
        assert match is not None  # the model's pattern
        start, offset = SOURCES.index(match.group(1)), int(match.group(2))
    found: list[Callback] = []
    scanned = 0
    for source in SOURCES[start:]:
        if query.status and not query.status & _HOLDS[source]:
            offset = 0
            continue
        while True:
            if scanned >= SCAN_MAX:
                return Page(found, f"{source}:{offset}")
            batch = min(_BATCH, SCAN_MAX - scanned)
            ids = await store.ids(source, offset, batch)
            records = await store.get_many(ids)
            for position, record in enumerate(records):
                scanned += 1
                if record is not None and query.wants(record):
                    found.append(record)
                    if len(found) == query.limit:
                        return Page(found, f"{source}:{offset + position + 1}")
            offset += len(ids)
            if len(ids) < batch:
                break
        offset = 0
    return Page(found, None)


class SupervisorCallbackRoutes:
    def __init__(self, store: CallbackStore, services: frozenset[str], sessions: SessionKeys,
                 clock: Clock) -> None:
        self.store = store
        self.services = services
        self.sessions = sessions
        self.clock = clock

    def install(self, app: web.Application) -> None:
        app.router.add_get(PATH, self.listing)

    async def listing(self, request: web.Request) -> web.Response:
        try:
            session = session_of(request, self.sessions, self.clock(), "supervisor")
        except SessionRefused as exc:
            return web.json_response({"error": exc.code, "detail": exc.detail},
                                     status=exc.status)
        raw: dict[str, Any] = {key: ",".join(request.query.getall(key))
                               for key in request.query if key != "token"}
        try:
            query = CallbackListQuery.model_validate(raw, context={"services": self.services})
        except ValidationError as exc:
            errors = exc.errors(include_input=False, include_url=False)
            return web.json_response({
                "error": "invalid",
                "fields": [".".join(str(p) for p in e["loc"]) for e in errors],
                "detail": str(errors[0]["msg"]).removeprefix("Value error, ")}, status=422)
        page = await list_callbacks(self.store, query)
        log.debug("callback.supervisor_list", supervisor=session.subject,
                  status=sorted(s.value for s in query.status), service=query.service,
                  shown=len(page.callbacks), more=page.next is not None)
        return web.json_response({"callbacks": [c.supervisor() for c in page.callbacks],
                                  "next": page.next})
