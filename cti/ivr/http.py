"""The IVR's admin route: POST /api/v1/admin/ivr/reload, for a supervisor
(Authorization: Bearer <session token>), answers the reload report: the
flows now running, the files refused with file, line and reason (the
previous version of each keeps running), the flows whose file is gone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web

from cti.auth import SessionKeys
from cti.ivr.flows import FlowError, ReloadReport
from cti.web.sessions import SessionRefused, session_of

log = structlog.get_logger(__name__)

RELOAD_PATH = "/api/v1/admin/ivr/reload"


def report_body(report: ReloadReport) -> dict[str, Any]:
    return {
        "loaded": list(report.loaded),
        "refused": [_refusal(error) for error in report.refused],
        "removed": list(report.removed),
    }


def _refusal(error: FlowError) -> dict[str, Any]:
    first = error.first
    return {"file": first.file, "line": first.line, "column": first.column,
            "reason": first.message,
            "problems": [{"line": p.line, "column": p.column, "reason": p.message}
                         for p in error.problems]}


def add_admin_routes(app: web.Application, *, sessions: SessionKeys,
                     clock: Callable[[], float], reload: Callable[[], ReloadReport]) -> None:
    async def reload_flows(request: web.Request) -> web.Response:
        try:
            session = session_of(request, sessions, clock(), "supervisor")
        except SessionRefused as refused:
            log.info("ivr.reload_refused", reason=refused.detail)
            return _error(refused.status, refused.code, refused.detail)
        report = reload()
        log.info("ivr.reload_requested", by=session.subject, loaded=list(report.loaded),
                 refused=len(report.refused), removed=list(report.removed))
        return web.json_response(report_body(report))

    app.router.add_post(RELOAD_PATH, reload_flows)


def _error(status: int, code: str, message: str) -> web.Response:
    # No error middleware on the server yet: the body has its shape.
    return web.json_response({"error": {"code": code, "message": message}}, status=status)
