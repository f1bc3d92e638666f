"""The callback API's errors, each with a stable code and HTTP status; one
middleware (cti/callbacks/http.py) turns them into JSON."""

from __future__ import annotations

from typing import Any


class CallbackError(Exception):
    code = "callback_error"
    status = 400

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidRequest(CallbackError):
    """`fields`: [{"field": "number", "reason": "..."}]."""

    code = "invalid_request"
    status = 422

    def __init__(self, fields: list[dict[str, str]]) -> None:
        super().__init__("the request is not valid", fields=fields)


class BodyTooLarge(CallbackError):
    code = "body_too_large"
    status = 413


class OriginRefused(CallbackError):
    code = "origin_refused"
    status = 403


class SiteKeyRefused(CallbackError):
    code = "site_key_refused"
    status = 403


class RateLimited(CallbackError):
    code = "rate_limited"
    status = 429


class CannotPromise(CallbackError):
    """ASAP cannot be honoured within the promise: `slots` offered instead."""

    code = "asap_unavailable"
    status = 409


class NotFound(CallbackError):
    code = "not_found"
    status = 404


class AlreadyFinal(CallbackError):
    code = "already_final"
    status = 409
