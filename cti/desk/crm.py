"""The CRM client: asks an optional HTTP CRM (settings `[crm]`) about a
caller and keeps the answers in a bounded cache, found ones for
`cache_seconds`, "not found" for the shorter `negative_cache_seconds`.

A question in flight is asked once: every pop of the same caller shares
its answer. A CRM that keeps failing is left alone for a while (`Breaker`),
and at most `MAX_IN_FLIGHT` requests run at once, so a CRM that is down or
slow never sees a storm. A lookup never raises: a timeout, an HTTP error,
an answer that is not JSON, too large, or not a record, is logged with its
reason and comes back as `unavailable`.

The URL is the validated template (`cti.config.crm_placeholders`) filled
with validated values only, each URL-encoded: an E.164 number and an
account token, so nothing a caller sends can change the URL's shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, urlsplit

import aiohttp
import structlog
from yarl import URL

from cti.config import CrmSettings
from cti.customers.models import caller_e164
from cti.desk.crm_guard import Breaker, TtlCache
from cti.desk.crm_record import BadAnswer, CrmRecord, record_of

log = structlog.get_logger(__name__)

# Requests to the CRM at once; past it a lookup is answered `unavailable`
# at once rather than queued behind a slow CRM.
MAX_IN_FLIGHT = 64
_ACCOUNT = re.compile(r"[0-9]{4,20}")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")


@dataclass(frozen=True, slots=True)
class CrmQuery:
    """What the CRM is asked: the values of the template's placeholders
    ("" for one the template does not use or we do not know)."""

    phone: str = ""
    account: str = ""


@dataclass(frozen=True, slots=True)
class CrmResult:
    status: Literal["found", "not_found", "unavailable"]
    record: CrmRecord | None = None
    reason: str = ""  # why unavailable


class _Failed(Exception):
    def __init__(self, outcome: str, reason: str) -> None:
        self.outcome = outcome  # metric label: timeout, http_error, unreachable...
        self.reason = reason
        super().__init__(reason)


class CrmClient:
    """`lookup(query)` -> a future of the CRM's answer; `close()` cancels
    the requests in flight and closes the HTTP session."""

    def __init__(self, settings: CrmSettings, *, region: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if settings.url_template is None:
            raise ValueError("no crm.url_template: there is no CRM to ask")
        self._template = settings.url_template
        self._uses = frozenset(settings.placeholders)
        self._region = region
        self._clock = clock
        self._timeout = settings.timeout_seconds
        self._found_ttl = settings.cache_seconds
        self._not_found_ttl = settings.negative_cache_seconds
        self._max_bytes = settings.max_response_bytes
        self._headers = {"Accept": "application/json", "User-Agent": "cti-crm-lookup"}
        if settings.auth_header is not None:
            name, _, value = settings.auth_header.get_secret_value().partition(":")
            self._headers[name.strip()] = value.strip()
        self.host = urlsplit(self._template).hostname or ""
        self._cache: TtlCache[CrmQuery, CrmResult] = TtlCache(settings.cache_size)
        self.breaker = Breaker(settings.breaker_failures, settings.breaker_seconds)
        self._in_flight: dict[CrmQuery, asyncio.Task[CrmResult]] = {}
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        # For metrics: requests by outcome, and the lookups that asked nothing.
        self.requests: Counter[str] = Counter()
        self.request_seconds = 0.0
        self.cache_hits = 0
        self.shared = 0
        self.skipped: Counter[str] = Counter()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def query(self, caller_number: str | None, account: str | None) -> CrmQuery | None:
        """The question for a caller: their number in E.164 (as a caller id
        presents it, national form read in the region) and their account
        number (digits), each kept only if the template uses it and it is
        valid; None when that leaves nothing to ask."""
        phone = caller_e164(caller_number, self._region) if caller_number else None
        phone = phone if phone is not None and _E164.fullmatch(phone) else ""
        account = account.strip() if account else ""
        account = account if _ACCOUNT.fullmatch(account) else ""
        query = CrmQuery(phone=phone if "phone" in self._uses else "",
                         account=account if "account" in self._uses else "")
        return None if query == CrmQuery() else query

    def url(self, query: CrmQuery) -> URL:
        filled = self._template.format_map({"phone": quote(query.phone, safe=""),
                                            "account": quote(query.account, safe="")})
        # encoded=True: yarl must not re-quote what quote() made safe.
        return URL(filled, encoded=True)

    def lookup(self, query: CrmQuery) -> asyncio.Future[CrmResult]:
        """The CRM's answer to `query`: from the cache, shared with the same
        question in flight, or asked now. The future never fails; it is
        cancelled only by `close()`. Never cancel it: others may share it."""
        now = self._clock()
        cached = self._cache.get(query, now)
        if cached is not None:
            self.cache_hits += 1
            return _done(cached)
        running = self._in_flight.get(query)
        if running is not None:
            self.shared += 1
            return running
        if self._closed:
            return _done(CrmResult("unavailable", reason="shutting down"))
        if len(self._in_flight) >= MAX_IN_FLIGHT:
            self.skipped["busy"] += 1
            return _done(CrmResult("unavailable",
                                   reason=f"{MAX_IN_FLIGHT} requests already in flight"))
        if not self.breaker.allow(now):
            self.skipped["circuit_open"] += 1
            return _done(CrmResult("unavailable", reason="the CRM keeps failing; paused"))
        task = asyncio.ensure_future(self._ask(query))
        task.set_name("crm-lookup")
        self._in_flight[query] = task
        task.add_done_callback(lambda done: self._settled(query, done))
        return task

    def _settled(self, query: CrmQuery, task: asyncio.Task[CrmResult]) -> None:
        if self._in_flight.get(query) is task:
            del self._in_flight[query]

    async def close(self) -> None:
        self._closed = True
        running = list(self._in_flight.values())
        for task in running:
            task.cancel()
        for task in running:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- one request -----------------------------------------------------------------

    async def _ask(self, query: CrmQuery) -> CrmResult:
        started = self._clock()
        try:
            record = await self._fetch(query)
        except _Failed as failure:
            now = self._clock()
            self._count(failure.outcome, now - started)
            self.breaker.failed(now)
            log.warning("crm.lookup_failed", crm=self.host, outcome=failure.outcome,
                        reason=failure.reason, elapsed_ms=round((now - started) * 1000, 1),
                        circuit=self.breaker.state.value)
            return CrmResult("unavailable", reason=failure.reason)
        now = self._clock()
        self.breaker.succeeded()
        if record is None:
            result = CrmResult("not_found")
            self._cache.put(query, result, now, self._not_found_ttl)
        else:
            result = CrmResult("found", record)
            self._cache.put(query, result, now, self._found_ttl)
        self._count(result.status, now - started)
        log.debug("crm.answered", crm=self.host, status=result.status,
                  elapsed_ms=round((now - started) * 1000, 1))
        return result

    def _count(self, outcome: str, seconds: float) -> None:
        self.requests[outcome] += 1
        self.request_seconds += seconds

    async def _fetch(self, query: CrmQuery) -> CrmRecord | None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                connector=aiohttp.TCPConnector(limit=MAX_IN_FLIGHT))
        try:
            async with asyncio.timeout(self._timeout):
                # No redirects: the auth header goes to the configured host only.
                async with self._session.get(self.url(query), allow_redirects=False) as response:
                    if response.status in (204, 404):
                        return None
                    if response.status != 200:
                        raise _Failed("http_error", f"HTTP {response.status}"
                                      + (" (redirects are not followed)"
                                         if 300 <= response.status < 400 else ""))
                    body = await self._read(response)
        except TimeoutError:
            raise _Failed("timeout", f"no answer within {self._timeout} s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise _Failed("unreachable", _without(query, f"{type(exc).__name__}: {exc}")
                          ) from None
        try:
            answer = json.loads(body)
        except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
            raise _Failed("not_json", f"not JSON ({str(exc)[:80]})") from None
        try:
            return record_of(answer)
        except BadAnswer as exc:
            raise _Failed("invalid", f"not a customer record: {exc}"[:300]) from None

    async def _read(self, response: aiohttp.ClientResponse) -> bytes:
        limit = self._max_bytes
        too_large = _Failed("too_large", f"answer over crm.max_response_bytes ({limit})")
        if response.content_length is not None and response.content_length > limit:
            raise too_large
        body = bytearray()
        # Counted as it comes (after any decompression), so a lying or
        # missing Content-Length cannot make us hold more than the cap.
        async for chunk in response.content.iter_chunked(16_384):
            body += chunk
            if len(body) > limit:
                raise too_large
        return bytes(body)


def _without(query: CrmQuery, text: str) -> str:
    """`text` (an error that may quote the URL) without the values asked:
    callers' numbers and accounts stay out of the logs."""
    for value in (query.phone, quote(query.phone, safe=""), query.account):
        if value:
            text = text.replace(value, "***")
    return text[:200]


def _done(result: CrmResult) -> asyncio.Future[CrmResult]:
    future: asyncio.Future[CrmResult] = asyncio.get_running_loop().create_future()
    future.set_result(result)
    return future

