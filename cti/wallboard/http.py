"""The supervisor's HTTP face: login, `/supervisor` (the page), `/ws/supervisor`,
the CSV export, the abandoned calls, and the actions on agents and waiting
tasks. Thin: parse with pydantic, call the switchboard or the PBX, answer.
Every action is logged with the supervisor who did it.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web
from pydantic import ValidationError

from cti.auth import Session, password_matches
from cti.calls.model import interface_of
from cti.pbx.commands import Originate, SpyMode, channel_name
from cti.pbx.errors import InvalidCommand, PbxError
from cti.routing import IllegalTransition
from cti.wallboard.models import (
    LoginRequest,
    PauseRequest,
    PriorityRequest,
    SkillsRequest,
    SpyRequest,
)
from cti.web.sessions import SessionRefused, session_of

if TYPE_CHECKING:
    from cti.app import Server
    from cti.wallboard.floor import Floor
    from cti.wallboard.hub import SupervisorHub

log = structlog.get_logger(__name__)

STATIC = Path(__file__).parent / "static"
_MODES = {"listen": SpyMode.LISTEN, "whisper": SpyMode.WHISPER, "barge": SpyMode.BARGE}


class ActionRefused(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        self.status, self.code, self.detail = status, code, detail
        super().__init__(detail)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json_errors(handler: Handler) -> Handler:
    """Domain errors to JSON (this feature's routes only: the server has
    no shared error middleware yet)."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ValidationError as exc:
            fields = [".".join(str(p) for p in e["loc"]) for e in exc.errors()]
            return web.json_response({"error": "invalid", "fields": fields,
                                      "detail": str(exc.errors()[0]["msg"])}, status=422)
        except ActionRefused as exc:
            return web.json_response({"error": exc.code, "detail": exc.detail},
                                     status=exc.status)
        except KeyError as exc:
            return web.json_response({"error": "not_found", "detail": str(exc.args[0])},
                                     status=404)
        except IllegalTransition as exc:
            return web.json_response({"error": "illegal_transition", "detail": str(exc)},
                                     status=409)

    return guarded


class SupervisorRoutes:
    def __init__(self, server: Server, floor: Floor, hub: SupervisorHub) -> None:
        self._server = server
        self._floor = floor
        self._hub = hub

    def add_to(self, app: web.Application) -> None:
        g = _json_errors
        app.router.add_post("/api/v1/supervisor/login", g(self.login))
        app.router.add_get("/supervisor", self.page)
        app.router.add_static("/supervisor/static", STATIC)
        app.router.add_get("/ws/supervisor", self.socket)
        app.router.add_get("/api/v1/supervisor/board", g(self.board))
        app.router.add_get("/api/v1/supervisor/intervals.csv", g(self.intervals_csv))
        app.router.add_get("/api/v1/supervisor/abandoned", g(self.abandoned))
        app.router.add_post("/api/v1/supervisor/agents/{agent}/pause", g(self.pause))
        app.router.add_post("/api/v1/supervisor/agents/{agent}/logout", g(self.logout))
        app.router.add_put("/api/v1/supervisor/agents/{agent}/skills", g(self.skills))
        app.router.add_post("/api/v1/supervisor/agents/{agent}/spy", g(self.spy))
        app.router.add_post("/api/v1/supervisor/tasks/{task}/priority", g(self.priority))

    # -- who -----------------------------------------------------------------------

    def _session(self, request: web.Request) -> Session:
        try:
            return session_of(request, self._server.sessions, self._server.clock(),
                              "supervisor")
        except SessionRefused as exc:
            raise ActionRefused(exc.status, exc.code, exc.detail) from exc

    async def login(self, request: web.Request) -> web.Response:
        body = LoginRequest.model_validate(await _body(request))
        known = self._server.center.credentials.get(body.username)
        ok = known is not None and known[0] == "supervisor" and await asyncio.to_thread(
            password_matches, body.password, known[1])
        if not ok:
            log.info("supervisor.login_refused", supervisor=body.username)
            raise ActionRefused(401, "invalid_credentials", "invalid credentials")
        hours = self._server.settings.http.session_hours
        token = self._server.sessions.issue(body.username, "supervisor", self._server.clock(),
                                            hours)
        person = self._server.center.supervisors.get(body.username)
        log.info("supervisor.login", supervisor=body.username)
        return web.json_response({"token": token, "supervisor": {
            "id": body.username, "name": person.name if person else body.username,
            "device": person.device if person else None}})

    # -- views -----------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "supervisor.html")

    async def socket(self, request: web.Request) -> web.StreamResponse:
        try:
            session = self._session(request)
        except ActionRefused as exc:
            return web.json_response({"error": exc.code, "detail": exc.detail},
                                     status=exc.status)
        # One text goes to every supervisor: no per-socket deflate of it.
        ws = web.WebSocketResponse(heartbeat=30.0, compress=False)
        await ws.prepare(request)
        log.info("wallboard.connected", supervisor=session.subject)
        await self._hub.serve(ws, session.subject)
        return ws

    async def board(self, request: web.Request) -> web.Response:
        self._session(request)
        return web.json_response(self._floor.board())

    async def intervals_csv(self, request: web.Request) -> web.Response:
        self._session(request)
        out = io.StringIO()
        csv.writer(out).writerows(self._floor.csv())
        return web.Response(text=out.getvalue(), content_type="text/csv", headers={
            "Content-Disposition": 'attachment; filename="intervals.csv"'})

    async def abandoned(self, request: web.Request) -> web.Response:
        self._session(request)
        return web.json_response({"abandoned": list(self._floor.abandoned)})

    # -- actions ---------------------------------------------------------------------

    async def pause(self, request: web.Request) -> web.Response:
        who = self._session(request).subject
        agent_id = request.match_info["agent"]
        body = PauseRequest.model_validate(await _body(request))
        if body.reason not in self._server.center.pause_reasons:
            raise ActionRefused(422, "invalid", f"unknown pause reason {body.reason!r}")
        agent = self._server.switchboard.pause(agent_id, body.reason)
        self._done(who, "pause", agent_id=agent_id, reason=body.reason)
        return web.json_response({"agent": agent_id, "state": agent.state.value})

    async def logout(self, request: web.Request) -> web.Response:
        who = self._session(request).subject
        agent_id = request.match_info["agent"]
        agent = self._server.switchboard.logout(agent_id)
        self._done(who, "logout", agent_id=agent_id)
        return web.json_response({"agent": agent_id, "state": agent.state.value})

    async def skills(self, request: web.Request) -> web.Response:
        who = self._session(request).subject
        agent_id = request.match_info["agent"]
        body = SkillsRequest.model_validate(await _body(request))
        agent = self._server.switchboard.set_skills(agent_id, dict(body.skills))
        self._done(who, "skills", agent_id=agent_id, skills=dict(agent.skills))
        return web.json_response({"agent": agent_id, "skills": dict(agent.skills)})

    async def priority(self, request: web.Request) -> web.Response:
        who = self._session(request).subject
        task_id = request.match_info["task"]
        body = PriorityRequest.model_validate(await _body(request))
        try:
            task = self._server.switchboard.raise_priority(task_id, body.priority_class)
        except ValueError as exc:
            raise ActionRefused(422, "invalid", str(exc)) from None
        self._done(who, "priority", call_id=task_id, priority=task.priority)
        return web.json_response({"task": task_id, "priority": task.priority})

    async def spy(self, request: web.Request) -> web.Response:
        session = self._session(request)
        agent_id = request.match_info["agent"]
        body = SpyRequest.model_validate(await _body(request))
        server = self._server
        person = server.center.supervisors.get(session.subject)
        if person is None or person.device is None:
            raise ActionRefused(409, "no_device", "this supervisor has no device to ring")
        target = self._agent_channel(agent_id)
        try:
            channel_name("target", target)
            command = Originate(person.device, server.settings.dialplan.spy, "s", variables=(
                ("CTI_SPY_TARGET", target), ("CTI_SPY_MODE", _MODES[body.mode].value)))
            await server.link.send(command.to_action())
        except InvalidCommand as exc:
            raise ActionRefused(422, "invalid", str(exc)) from None
        except PbxError as exc:
            log.warning("supervisor.spy_failed", supervisor=session.subject,
                        agent_id=agent_id, reason=str(exc))
            raise ActionRefused(502, "pbx_refused", f"Originate failed: {exc}") from None
        self._done(session.subject, body.mode, agent_id=agent_id, channel=target)
        return web.json_response({"agent": agent_id, "mode": body.mode, "channel": target})

    def _done(self, who: str, action: str, **fields: Any) -> None:
        log.info("supervisor.action", supervisor=who, action=action, **fields)
        self._hub.mark_dirty()  # a priority change emits no switchboard event

    def _agent_channel(self, agent_id: str) -> str:
        """The agent's leg of the call they are on (a channel name)."""
        switchboard = self._server.switchboard
        agent = switchboard.agents.get(agent_id)
        if agent is None:
            raise KeyError(f"no agent {agent_id!r}")
        call_id = next((c for c, a in switchboard.offers.items() if a == agent_id), None)
        tracker = self._server.tracker
        call = tracker.calls.get(call_id) if call_id is not None else None
        if call is None:
            raise ActionRefused(409, "not_on_call", f"agent {agent_id} is not on a call")
        legs = [tracker.channels[u] for u in sorted(call.channels) if u in tracker.channels]
        mine = [c for c in legs if interface_of(c.name) == agent.interface]
        mine.sort(key=lambda c: (c.bridge is None, c.name))
        if not mine:
            raise ActionRefused(409, "not_on_call", f"agent {agent_id} has no channel")
        # ChanSpy takes a channel-name prefix; a Local channel's `;1`/`;2`
        # half marker cannot go through an Originate variable, and the
        # prefix without it still names this one call's agent leg.
        return mine[0].name.partition(";")[0]


async def _body(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise ActionRefused(400, "bad_json", "the body is not JSON") from None
