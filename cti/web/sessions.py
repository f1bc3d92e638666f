"""Who is asking an HTTP route: the signed session token of the request
(`Authorization: Bearer <token>`, or `?token=` where a header cannot be
sent: a websocket, a download link), checked and held to a role. The
wallboard's routes and the supervisors' callback list use it alike."""

from __future__ import annotations

from aiohttp import web

from cti.auth import AuthError, Role, Session, SessionKeys


class SessionRefused(Exception):
    """No valid session (401) or not the role the route needs (403)."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        self.status, self.code, self.detail = status, code, detail
        super().__init__(detail)


def request_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
    return token or request.query.get("token", "")


def session_of(request: web.Request, sessions: SessionKeys, now: float, role: Role) -> Session:
    try:
        session = sessions.check(request_token(request), now)
    except AuthError as exc:
        raise SessionRefused(401, "unauthenticated", f"a {role} session is needed") from exc
    if session.role != role:
        raise SessionRefused(403, "forbidden", f"{role} role required")
    return session
