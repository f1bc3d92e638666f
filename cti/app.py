"""The composition root of `cti serve`: builds every part from the settings
and wires the one flow of data

    Asterisk --AMI--> AmiLink --typed events--> Tracker --call changes-->
    Switchboard (routing shell) --Setvar/Redirect--> AmiLink --> Asterisk

beside the FastAGI server (IVR flows) and the aiohttp app (health,
readiness, metrics, and the pages and APIs of the later features). It owns
start-up order and graceful shutdown: on stop it takes no new work, lets
the assignments in flight finish, then closes the links.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from cti.auth import SessionKeys
from cti.calls.memo import CallMemo
from cti.calls.model import CallEnded, CallState
from cti.calls.tracker import DialplanContexts, Tracker
from cti.center import Center
from cti.config import Settings
from cti.customers.models import Customer
from cti.customers.profiles import CallerProfiles
from cti.customers.store import CustomerStore
from cti.features import Feature, installers
from cti.kpi.run import RunStats
from cti.pbx import events as ev
from cti.pbx.actions import AmiAction
from cti.pbx.errors import AmiDisconnected, AmiLoginFailed, AmiTimeout
from cti.pbx.link import AmiLink, LinkState
from cti.pbx.wire import AmiMessage
from cti.routing import AgentState
from cti.store.connection import Store
from cti.store.reservations import Reservations
from cti.switchboard import CallFinished, Switchboard, SwitchboardEvent, VipLookup
from cti.web import health

if TYPE_CHECKING:
    from cti.ivr.flows import IvrOutcome
    from cti.ivr.server import AgiHandler

log = structlog.get_logger(__name__)

Clock = Callable[[], float]
_FEATURE_STOP_S = 10.0


@dataclass
class Counters:
    calls_ended: dict[str, int] = field(default_factory=dict)


class Server:
    """One running CTI server. `await start()`, then `await stop()`."""

    def __init__(self, settings: Settings, center: Center, store: Store, *,
                 clock: Clock = time.time,
                 vip_lookup: VipLookup | Literal["directory"] | None = None) -> None:
        self.settings = settings
        self.center = center
        self.store = store
        self.clock = clock
        dialplan = settings.dialplan
        self.tracker = Tracker(DialplanContexts(inbound=dialplan.inbound, wait=dialplan.wait,
                                                connect=dialplan.connect,
                                                callback=dialplan.callback,
                                                callback_customer=dialplan.callback_customer))
        self.link = self._new_link()
        self.customers = CustomerStore(store.redis, region=settings.numbers.default_region)
        # Read ahead for the screen pop (the caller's profile while they are
        # in the IVR; the IVR outcome and transfer notes this process wrote).
        self.profiles = CallerProfiles(self.customers, clock=clock)
        self.call_memo = CallMemo()
        # Told of each lookup of a caller's number in the directory as it
        # answers (with `vip_lookup="directory"`, when the call starts,
        # before the IVR): the desk asks its CRM there. Must not block.
        self.caller_lookups: list[Callable[[str, Customer | None], None]] = []
        self.switchboard = Switchboard(
            center, self.tracker, self._send, Reservations(store.redis), clock=clock,
            vip_lookup=self._directory_vip if vip_lookup == "directory" else vip_lookup)
        self.stats = RunStats()
        self.counters = Counters()
        self.switchboard.observers.append(self._on_switchboard)
        self.registry = CollectorRegistry()
        self.registry.register(_Metrics(self))
        self.web = web.Application()
        self.web[health.READINESS] = health.Readiness({"ami": self._ami_ready,
                                                        "store": self._store_ready})
        self.web[health.REGISTRY] = self.registry
        health.add_routes(self.web)
        secret = settings.http.session_secret
        self.sessions = (SessionKeys(secret.get_secret_value().encode()) if secret is not None
                         else SessionKeys.random())
        # Set by the callback feature: pending callbacks per service (None: all).
        self.callbacks_pending: Callable[[str | None], int] | None = None
        # The FastAGI scripts (by name) the IVR feature's server answers:
        # its own "ivr" and those of other features ("callback-offer").
        self.agi_routes: dict[str, AgiHandler] = {}
        # Told each IVR outcome once the flow ended (the callback feature
        # takes the callbacks asked for in a flow).
        self.ivr_outcomes: list[Callable[[IvrOutcome], Awaitable[None]]] = []
        self.features: list[Feature] = [install(self) for install in installers()]
        self._runner: web.AppRunner | None = None
        self._site_port = 0
        self._linking: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()

    async def _directory_vip(self, number: str) -> tuple[str | None, bool]:
        """The VIP test the router uses with `vip_lookup="directory"`: the
        caller's number in the customer directory, tier vip."""
        profile = await self.profiles.by_phone(number)
        customer = None if profile is None else profile.customer
        for listener in self.caller_lookups:
            try:
                listener(number, customer)
            except Exception:  # a listener's failure must not cost the call its VIP class
                log.exception("directory.listener_failed", listener=repr(listener))
        return (None, False) if customer is None else (customer.id, customer.tier == "vip")

    @property
    def http_port(self) -> int:
        return self._site_port

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Serve HTTP at once (readiness says what is missing), then connect
        to Asterisk in the background, retrying until it answers."""
        http = self.settings.http
        for feature in self.features:
            await feature.start()
        self._runner = web.AppRunner(self.web, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, http.host, http.port)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self._site_port = sockets[0].getsockname()[1] if sockets else http.port
        log.info("http.listening", host=http.host, port=self._site_port)
        self.switchboard.start()
        self._linking = asyncio.create_task(self._connect(), name="ami-connect")

    async def _connect(self) -> None:
        """The first connection: AmiLink reconnects by itself once logged in
        once; before that, a PBX that is not up yet is waited for here."""
        delay = self.settings.ami.reconnect_backoff_min
        while True:
            try:
                await self.link.start()
                return
            except AmiLoginFailed as exc:
                log.error("ami.login_refused", reason=str(exc),
                          fix="check ami.username and CTI_AMI_SECRET against manager.conf")
                return
            except (AmiDisconnected, AmiTimeout, OSError) as exc:
                log.warning("ami.unreachable", reason=str(exc), retry_in_s=delay)
                if self.link.state is LinkState.CLOSED:
                    self._renew_link()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.settings.ami.reconnect_backoff_max)

    def _new_link(self) -> AmiLink:
        ami = self.settings.ami
        return AmiLink(
            ami.host, ami.port, ami.username,
            ami.secret.get_secret_value() if ami.secret is not None else "",
            subscriber=self._on_pbx, clock=self.clock, action_timeout=ami.action_timeout,
            ping_interval=ami.ping_interval, pong_timeout=ami.pong_timeout,
            backoff_initial=ami.reconnect_backoff_min, backoff_max=ami.reconnect_backoff_max,
        )

    def _renew_link(self) -> None:
        """A link whose first start failed is closed for good: a new one."""
        self.link = self._new_link()

    async def _send(self, action: AmiAction) -> list[AmiMessage]:
        return await self.link.send(action)

    async def stop(self) -> None:
        """Graceful: no new work, finish the writes in flight, close links."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        log.info("server.stopping")
        await self.switchboard.drain()
        for feature in reversed(self.features):
            # A feature that does not stop in time is left behind, logged:
            # shutdown must not hang on it.
            stopping = asyncio.ensure_future(feature.stop())
            done, _ = await asyncio.wait({stopping}, timeout=_FEATURE_STOP_S)
            if not done:
                log.error("server.feature_stop_timeout", feature=type(feature).__name__,
                          timeout_s=_FEATURE_STOP_S)
            elif not stopping.cancelled() and stopping.exception() is not None:
                log.error("server.feature_stop_failed", feature=type(feature).__name__,
                          exc_info=stopping.exception())
        if self._linking is not None:
            self._linking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._linking
        await self.link.close()
        if self._runner is not None:
            await self._runner.cleanup()
        log.info("server.stopped")

    # -- the flow of data -----------------------------------------------------------

    async def _on_pbx(self, event: ev.PbxEvent) -> None:
        changes = self.tracker.apply(event)
        await self.switchboard.on_event(event, list(changes))

    def _on_switchboard(self, event: SwitchboardEvent) -> None:
        if isinstance(event, CallFinished):
            self._call_finished(event.event, event.info is not None and event.info.vip,
                                routed=event.info is not None)

    def _call_finished(self, ended: CallEnded, vip: bool, *, routed: bool) -> None:
        outcome = ended.record.outcome.value
        self.counters.calls_ended[outcome] = self.counters.calls_ended.get(outcome, 0) + 1
        if routed:
            self.stats.add(ended.record, vip)
        log.info("call.ended", call_id=ended.record.call, outcome=outcome,
                 agent_id=ended.record.agent, wait_ms=ended.record.wait_ms,
                 talk_ms=ended.record.talk_ms, vip=vip)

    # -- readiness --------------------------------------------------------------------

    async def _ami_ready(self) -> tuple[bool, str]:
        state = self.link.state
        return state is LinkState.CONNECTED, state.value

    async def _store_ready(self) -> tuple[bool, str]:
        ok = await self.store.ping()
        return ok, self.store.description if ok else f"{self.store.description}: no answer"


class _Metrics(Collector):
    """Prometheus view of the live state, read at scrape time."""

    def __init__(self, server: Server) -> None:
        self._server = server

    def collect(self) -> Iterator[Any]:
        server = self._server
        link = server.link
        up = GaugeMetricFamily("cti_ami_connected", "1 when the AMI link is logged in")
        up.add_metric([], 1.0 if link.state is LinkState.CONNECTED else 0.0)
        yield up
        events = CounterMetricFamily("cti_ami_events", "AMI events received")
        events.add_metric([], float(link.events_received))
        yield events
        reconnects = CounterMetricFamily("cti_ami_reconnects", "AMI reconnections")
        reconnects.add_metric([], float(link.reconnects))
        yield reconnects
        calls = GaugeMetricFamily("cti_calls", "Live calls by state", labels=["state"])
        by_state: dict[str, int] = {state.value: 0 for state in CallState
                                    if state is not CallState.ENDED}
        for call in server.tracker.calls.values():
            if call.state is not CallState.ENDED:
                by_state[call.state.value] += 1
        for state, count in by_state.items():
            calls.add_metric([state], float(count))
        yield calls
        waiting = GaugeMetricFamily("cti_tasks_waiting", "Tasks waiting for an agent",
                                    labels=["service"])
        per_service = dict.fromkeys(server.center.policy.services, 0)
        for task in server.switchboard.index.waiting():
            per_service[task.service] = per_service.get(task.service, 0) + 1
        for service, count in per_service.items():
            waiting.add_metric([service], float(count))
        yield waiting
        agents = GaugeMetricFamily("cti_agents", "Agents by state", labels=["state"])
        agent_states = {state.value: 0 for state in AgentState}
        for agent in server.switchboard.agents.values():
            agent_states[agent.state.value] += 1
        for state, count in agent_states.items():
            agents.add_metric([state], float(count))
        yield agents
        decisions = CounterMetricFamily("cti_routing_decisions", "Routing assignments made")
        decisions.add_metric([], float(server.switchboard.decisions))
        yield decisions
        ended = CounterMetricFamily("cti_calls_ended", "Ended calls by outcome",
                                    labels=["outcome"])
        for outcome, count in server.counters.calls_ended.items():
            ended.add_metric([outcome], float(count))
        yield ended
