"""The OpenAPI 3.1 document of the callback API, served at
/api/v1/openapi.json: the request schema comes from the pydantic model,
the rest is written here as data."""

from __future__ import annotations

from typing import Any

from cti.callbacks.models import CallbackRequest, Outcome, Status

_ERROR = {
    "type": "object", "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "stable code"},
        "message": {"type": "string"},
        "fields": {"type": "array", "items": {
            "type": "object", "required": ["field", "reason"],
            "properties": {"field": {"type": "string"}, "reason": {"type": "string"}}}},
        "slots": {"type": "array", "items": {"$ref": "#/components/schemas/Slot"}},
        "retry_after": {"type": "integer"},
    },
}
_SLOT = {"type": "object", "required": ["start", "end", "free"], "properties": {
    "start": {"type": "string", "format": "date-time"},
    "end": {"type": "string", "format": "date-time"},
    "free": {"type": "integer", "minimum": 1}}}
_CALLBACK = {
    "type": "object", "required": ["id", "status", "expected_at", "asap", "attempts"],
    "properties": {
        "id": {"type": "string", "pattern": "^[A-Za-z0-9_-]{22}$"},
        "status": {"enum": [s.value for s in Status]},
        "expected_at": {"type": "string", "format": "date-time"},
        "asap": {"type": "boolean"},
        "number": {"type": "string", "description": "masked"},
        "topic": {"type": ["string", "null"]},
        "attempts": {"type": "array", "items": {"type": "object", "properties": {
            "at": {"type": "string", "format": "date-time"},
            "outcome": {"enum": [*(o.value for o in Outcome), None]}}}},
        "outcome": {"enum": [*(o.value for o in Outcome), None]},
        "duplicate": {"type": "boolean"},
    },
}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}}


def _ok(description: str, ref: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{ref}"}}}}


_ID = {"name": "id", "in": "path", "required": True,
       "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{22}$"}}


def document() -> dict[str, Any]:
    request = CallbackRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = request.pop("$defs", {})
    return {
        "openapi": "3.1.0",
        "info": {"title": "CTI callback API", "version": "1",
                 "description": "Click-to-callback: the only unauthenticated write. "
                                "CORS-restricted and rate-limited."},
        "paths": {
            "/api/v1/callbacks": {"post": {
                "summary": "Ask to be called back (as soon as possible or in a slot)",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/CallbackRequest"}}}},
                "responses": {
                    "202": _ok("accepted (or the pending one for this number)", "Callback"),
                    "403": _error("origin not allowed or site key refused"),
                    "409": _error("ASAP cannot be honoured (the center is overloaded, "
                                  "nobody with the skills is logged in, or the service "
                                  "is outside its business hours): slots offered "
                                  "instead"),
                    "413": _error("body too large"),
                    "422": _error("a field is not valid; `fields` says which and why"),
                    "429": _error("too many requests from this address or for this number"),
                }}},
            "/api/v1/callbacks/slots": {"get": {
                "summary": "The slots that can still be honoured",
                "description": "Slots start inside the service's business hours "
                               "(none at night, on a closed day or a holiday); "
                               "`asap` is false outside them.",
                "parameters": [{"name": "topic", "in": "query", "required": False,
                                "schema": {"type": "string",
                                           "pattern": "^[A-Za-z0-9_-]{1,32}$"}}],
                "responses": {
                    "200": _ok("the slots and whether ASAP is possible", "Slots"),
                    "403": _error("origin not allowed"),
                    "422": _error("unknown topic"),
                    "429": _error("too many requests from this address"),
                }}},
            "/api/v1/callbacks/{id}": {
                "get": {"summary": "The status of a callback", "parameters": [_ID],
                        "responses": {"200": _ok("the callback", "Callback"),
                                      "403": _error("origin not allowed"),
                                      "404": _error("no such callback"),
                                      "429": _error("too many requests")}},
                "delete": {"summary": "Cancel a callback", "parameters": [_ID],
                           "responses": {"200": _ok("cancelled (or being cancelled)",
                                                    "Callback"),
                                         "403": _error("origin not allowed"),
                                         "404": _error("no such callback"),
                                         "409": _error("already completed, failed or "
                                                       "cancelled"),
                                         "429": _error("too many requests")}},
            },
        },
        "components": {"schemas": {
            **defs, "CallbackRequest": request, "Callback": _CALLBACK, "Slot": _SLOT,
            "Error": _ERROR,
            "Slots": {"type": "object", "required": ["slots", "asap"], "properties": {
                "slots": {"type": "array", "items": {"$ref": "#/components/schemas/Slot"}},
                "asap": {"type": "boolean"},
                "expected_at": {"type": ["string", "null"], "format": "date-time"}}},
        }},
    }
