"""Who may use the desk and the wallboard: password hashes and signed,
expiring session tokens.

Passwords are stored as scrypt hashes (`scrypt$n$r$p$salt$hash`, the
standard library's memory-hard KDF: no extra dependency); a check takes
constant time. A session token is `base64url(payload).base64url(hmac)`,
the payload holding the subject (agent or supervisor id), the role and the
expiry; it is checked with the server's session key, so any node with the
same `http.session_secret` accepts it. No IO, no clock reads: `now` is
passed in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Literal

Role = Literal["agent", "supervisor"]

_N, _R, _P = 2**14, 8, 1
_MAX_PASSWORD = 1024


class AuthError(ValueError):
    """A credential or token that is refused; `reason` says why (for logs,
    never shown to the client beyond "invalid credentials")."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    if not password or len(password) > _MAX_PASSWORD:
        raise AuthError("a password has 1 to 1024 characters")
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def password_matches(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt" or len(password) > _MAX_PASSWORD:
            return False
        expected = _unb64(digest)
        actual = hashlib.scrypt(password.encode(), salt=_unb64(salt), n=int(n), r=int(r),
                                p=int(p), dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def is_password_hash(text: str) -> bool:
    parts = text.split("$")
    return len(parts) == 6 and parts[0] == "scrypt" and all(parts[1:])


@dataclass(frozen=True, slots=True)
class Session:
    subject: str
    role: Role
    expires_at: float


class SessionKeys:
    """Issues and checks session tokens with one HMAC key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise AuthError("the session key needs at least 16 bytes")
        self._key = key

    @classmethod
    def random(cls) -> SessionKeys:
        return cls(secrets.token_bytes(32))

    def issue(self, subject: str, role: Role, now: float, hours: float) -> str:
        payload = json.dumps({"sub": subject, "role": role, "exp": round(now + hours * 3600)},
                             separators=(",", ":")).encode()
        return f"{_b64(payload)}.{_b64(self._sign(payload))}"

    def check(self, token: str, now: float) -> Session:
        head, sep, signature = token.partition(".")
        if not sep or len(token) > 2048:
            raise AuthError("malformed token")
        try:
            payload = _unb64(head)
            given = _unb64(signature)
        except ValueError:
            raise AuthError("malformed token") from None
        if not hmac.compare_digest(given, self._sign(payload)):
            raise AuthError("bad signature")
        try:
            data = json.loads(payload)
            session = Session(str(data["sub"]), data["role"], float(data["exp"]))
        except (ValueError, KeyError, TypeError):
            raise AuthError("malformed token") from None
        if session.role not in ("agent", "supervisor"):
            raise AuthError("unknown role")
        if session.expires_at <= now:
            raise AuthError("expired")
        return session

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError("not base64url") from exc
