"""The IVR feature: the FastAGI server running the flows of
`settings.center.flows` on every call [cti-inbound] sends it, the flow files
watched for changes, and each call's outcome kept for the screen pop.

Routing needs nothing from here: the flow hands the call over with AGI
SET VARIABLE CTI_SERVICE / CTI_PRIORITY, Asterisk reports them as VarSet,
and the tracker puts them on the call the switchboard reads. The outcome
(what the caller chose, who they are, how the IVR ended) is written to
Redis at `cti:call:{call id}:ivr` for a day.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from cti.customers.directory import RedisDirectory
from cti.ivr.flows import FlowLibrary, IvrOutcome, ReloadReport, ivr_routes
from cti.ivr.http import add_admin_routes
from cti.ivr.server import FastAgiServer

if TYPE_CHECKING:
    from cti.app import Server

log = structlog.get_logger(__name__)

OUTCOME_TTL_S = 24 * 3600
WATCH_INTERVAL_S = 3.0


def outcome_key(call_id: str) -> str:
    return f"cti:call:{call_id}:ivr"


def pop_of(outcome: IvrOutcome) -> dict[str, Any]:
    """What the screen pop shows of the IVR part of a call."""
    ending = outcome.ending
    return {
        "flow": outcome.flow,
        "choices": [{"step": choice.step, "digit": choice.digit} for choice in outcome.choices],
        "customer_id": outcome.customer,
        "verified": outcome.verified,
        "service": ending.service,
        "priority": ending.priority,
        "language": outcome.language,
        "ended": ending.kind.value,
    }


class IvrFeature:
    """Owns the FastAGI server and the watch task; `start()` loads the flows
    and listens, `stop()` cancels the calls in their flow and closes."""

    def __init__(self, server: Server, *, watch_interval: float = WATCH_INTERVAL_S) -> None:
        self._server = server
        settings = server.settings
        self.library = FlowLibrary(settings.center.flows)
        clock = self.clock
        directory = RedisDirectory(server.customers, clock=clock)
        server.agi_routes.update(ivr_routes(self.library, directory, self._on_outcome, clock,
                                            default_service=server.center.default_service))
        # The server's table itself: features installed later add theirs.
        self.agi = FastAgiServer(server.agi_routes, host=settings.agi.host,
                                 port=settings.agi.port)
        self._watch_interval = watch_interval
        self._watching: asyncio.Task[None] | None = None
        self.ended: Counter[tuple[str, str]] = Counter()  # (flow, ending kind) -> calls
        self.reloads = 0
        self.not_stored = 0
        add_admin_routes(server.web, sessions=server.sessions, clock=server.clock,
                         reload=self.reload)
        server.registry.register(_IvrMetrics(self))

    def clock(self) -> datetime:
        """The server's clock as the flows need it: aware, for business
        hours in their own zone and PIN lock deadlines."""
        return datetime.fromtimestamp(self._server.clock(), UTC)

    async def start(self) -> None:
        self.reload()
        await self.agi.start()
        self._watching = asyncio.create_task(self._watch(), name="ivr-flow-watch")

    async def stop(self) -> None:
        if self._watching is not None:
            self._watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watching
            self._watching = None
        await self.agi.close()

    def reload(self) -> ReloadReport:
        """Load new and changed flow files now (the admin endpoint)."""
        report = self.library.reload()
        self.reloads += 1
        _log_report(report)
        return report

    async def _watch(self) -> None:
        """Poll the flow files' mtimes: a refused file keeps the running
        version, a call in progress keeps the version it started with."""
        while True:
            await asyncio.sleep(self._watch_interval)
            try:
                report = self.library.poll()
            except OSError as exc:
                log.error("ivr.flow_watch_failed", directory=str(self.library.directory),
                          reason=str(exc))
                continue
            if report is not None:
                self.reloads += 1
                _log_report(report)

    async def _on_outcome(self, outcome: IvrOutcome) -> None:
        self.ended[(outcome.flow, outcome.ending.kind.value)] += 1
        # The AGI runs on the caller's channel: for an inbound call its
        # uniqueid is the Linkedid, the call id; the tracker knows for sure.
        call = self._server.tracker.call_of(outcome.call)
        call_id = call.id if call is not None else outcome.call
        text = json.dumps(pop_of(outcome))
        # In memory first: the pop of a call this process ran the IVR of
        # needs no read (and has it even when Redis refuses the write).
        self._server.call_memo.put_ivr(call_id, text)
        try:
            await self._server.store.redis.set(outcome_key(call_id), text, ex=OUTCOME_TTL_S)
        except (RedisError, OSError) as exc:
            # Other nodes' pops go without it: routing has the variables.
            self.not_stored += 1
            log.error("ivr.outcome_not_stored", call=call_id, reason=str(exc))
        if outcome.customer is not None:
            # Read ahead the profile of the customer the caller proved to
            # be; without it the pop reads it when the call is offered.
            try:
                await self._server.profiles.by_id(outcome.customer)
            except (RedisError, OSError) as exc:
                log.warning("ivr.profile_not_read", call=call_id, reason=str(exc))
        for consumer in self._server.ivr_outcomes:
            # One error boundary per consumer: one failing does not keep
            # the outcome from the others.
            try:
                await consumer(outcome)
            except Exception:
                log.exception("ivr.outcome_consumer_failed", call=call_id,
                              consumer=getattr(consumer, "__qualname__", repr(consumer)))


def _log_report(report: ReloadReport) -> None:
    if report.loaded or report.refused or report.removed:
        log.info("ivr.flows_reloaded", loaded=list(report.loaded), removed=list(report.removed),
                 refused=[str(error.first) for error in report.refused])


def install(server: Server) -> IvrFeature:
    return IvrFeature(server)


class _IvrMetrics(Collector):
    def __init__(self, feature: IvrFeature) -> None:
        self._feature = feature

    def collect(self) -> Iterator[Any]:
        feature = self._feature
        active = GaugeMetricFamily("cti_ivr_sessions_active", "Calls in an IVR flow now")
        active.add_metric([], float(feature.agi.active))
        yield active
        ended = CounterMetricFamily("cti_ivr_sessions", "IVR calls ended, by flow and ending",
                                    labels=["flow", "ended"])
        for (flow, kind), count in sorted(feature.ended.items()):
            ended.add_metric([flow, kind], float(count))
        yield ended
        failed = CounterMetricFamily("cti_ivr_sessions_failed",
                                     "FastAGI connections refused or broken before a flow ended")
        failed.add_metric([], float(feature.agi.failed))
        yield failed
        flows = GaugeMetricFamily("cti_ivr_flows_loaded", "IVR flows running")
        flows.add_metric([], float(len(feature.library.flows)))
        yield flows
        refused = GaugeMetricFamily("cti_ivr_flows_refused",
                                    "IVR flow files refused at the last reload")
        refused.add_metric([], float(len(feature.library.errors)))
        yield refused
        reloads = CounterMetricFamily("cti_ivr_reloads", "IVR flow reloads that changed something"
                                      " or were asked for")
        reloads.add_metric([], float(feature.reloads))
        yield reloads
        lost = CounterMetricFamily("cti_ivr_outcomes_not_stored",
                                   "IVR outcomes the store refused")
        lost.add_metric([], float(feature.not_stored))
        yield lost

