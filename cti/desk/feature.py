"""Wires the desk into a running server (see cti/features.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.registry import Collector

from cti.desk.crm import CrmClient
from cti.desk.crm_guard import BreakerState
from cti.desk.crm_pop import CrmPops
from cti.desk.http import DeskAuth, DeskHttp
from cti.desk.hub import Hub
from cti.desk.pop import PopBuilder
from cti.desk.service import DeskService

if TYPE_CHECKING:
    from cti.app import Server


class DeskFeature:
    def __init__(self, server: Server) -> None:
        http = server.settings.http
        static = {}
        for entry in http.agent_tokens:
            agent_id, _, token = entry.get_secret_value().partition(":")
            static[token] = agent_id
        self.hub = Hub()
        self.pops = PopBuilder(server.store.redis, server.customers, profiles=server.profiles,
                               memo=server.call_memo)
        self.crm = _crm_pops(server)
        self.service = DeskService(server.center, server.switchboard, server.customers,
                                   self.pops, self.hub, clock=server.clock, crm=self.crm)
        self.auth = DeskAuth(server.center, server.sessions, static, hours=http.session_hours,
                             clock=server.clock)
        self.http = DeskHttp(self.auth, self.hub, self.service)
        self.http.add_routes(server.web)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        await self.http.close()
        await self.service.stop()
        if self.crm is not None:
            await self.crm.client.close()


def _crm_pops(server: Server) -> CrmPops | None:
    """The CRM's part of the pops, when `crm.url_template` is set: asked
    as soon as the directory has looked the caller up."""
    settings = server.settings.crm
    if settings.url_template is None:
        return None
    client = CrmClient(settings, region=server.settings.numbers.default_region)
    crm = CrmPops(client, pop_wait=settings.pop_wait_seconds)
    server.caller_lookups.append(crm.prefetch)
    server.registry.register(_CrmMetrics(crm))
    return crm


def install(server: Server) -> DeskFeature:
    return DeskFeature(server)


class _CrmMetrics(Collector):
    def __init__(self, crm: CrmPops) -> None:
        self._crm = crm

    def collect(self) -> Iterator[Any]:
        client = self._crm.client
        requests = CounterMetricFamily(
            "cti_crm_requests", "Requests to the CRM by outcome (found, not_found, timeout,"
            " http_error, unreachable, not_json, too_large, invalid)", labels=["outcome"])
        for outcome, count in sorted(client.requests.items()):
            requests.add_metric([outcome], float(count))
        yield requests
        yield SummaryMetricFamily("cti_crm_request_seconds", "Time the CRM took to answer",
                                  count_value=client.requests.total(),
                                  sum_value=client.request_seconds)
        hits = CounterMetricFamily("cti_crm_cache_hits", "CRM lookups answered from the cache")
        hits.add_metric([], float(client.cache_hits))
        yield hits
        shared = CounterMetricFamily("cti_crm_shared", "CRM lookups that joined the same"
                                     " question already in flight")
        shared.add_metric([], float(client.shared))
        yield shared
        skipped = CounterMetricFamily("cti_crm_skipped", "CRM lookups not asked (circuit_open,"
                                      " busy)", labels=["reason"])
        for reason, count in sorted(client.skipped.items()):
            skipped.add_metric([reason], float(count))
        yield skipped
        circuit = GaugeMetricFamily("cti_crm_circuit_open", "1 while the CRM is left alone"
                                    " after failures")
        circuit.add_metric([], 0.0 if client.breaker.state is BreakerState.CLOSED else 1.0)
        yield circuit
        in_flight = GaugeMetricFamily("cti_crm_in_flight", "Requests to the CRM in flight")
        in_flight.add_metric([], float(client.in_flight))
        yield in_flight
        first = CounterMetricFamily("cti_crm_first_pops", "Pops by what they said of the CRM"
                                    " when they went out", labels=["crm"])
        for status, count in sorted(self._crm.first_pops.items()):
            first.add_metric([status], float(count))
        yield first
        updates = CounterMetricFamily("cti_crm_pop_updates", "Late CRM answers: sent as"
                                      " pop_update, or dropped (the offer was over)",
                                      labels=["result"])
        for result, count in sorted(self._crm.updates.items()):
            updates.add_metric([result], float(count))
        yield updates
