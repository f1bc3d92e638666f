"""Benchmark: the largest steady call rate the simulated PBX plus the server
sustain on this machine, with a floor of 1,000 agents.

Everything runs in one asyncio process on loopback, as `cti demo` does: the
simulated PBX (`demo_population`: the agents' phones, Poisson callers, a
fifth of them VIP customers) and the whole server (`Server` with the demo
center, every agent logged in at start, its features installed, the
in-process store holding demo customers for the VIP lookup). Callers queue
at once, as in the recordings' dialplan (no IVR over FastAGI). For call
rates doubling from 7,200/h, each step starts a fresh sim and server, lets
them warm up, then watches a window. A step is sustained when, over the
window,

- the AMI link's pending queue does not grow: its max over the second half
  is at most 200 events and the median of that half's last third is not
  more than 50 above the median of its first third;
- the event loop keeps up: a task sleeping 0.1 s wakes less than 250 ms
  late at the 99th percentile;
- the link neither dropped events nor reconnected.

A series stops at its first failing step. The baseline, in the same run, at
the same steps and by the same rule: the sim alone, read by the project's
AmiLink with a no-op subscriber (no tracker, no routing: callers wait on
hold; their patience outlasts a step).

Prints one JSON object: the largest rate each sustained, their ratio, the
most live calls the server tracked in a sustained step, and every step
(also written to stderr as each ends). With 60 s of talk a 20 s window sees
calls arrive and connect but hardly any hang up, and the live calls are
bounded by rate x (warm-up + window), not by the floor.

    .venv/bin/python bench/sim_capacity.py [--window 20] [--warmup 3]
        [--max-steps 9] [--agents 1000] [--seed 1] [--talk 60]
        [--profile CALLS_PER_HOUR]

The default run takes about six minutes: the sim alone keeps up to about
a million calls an hour here, nine steps.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import io
import json
import pstats
import socket
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cti.app import Server
from cti.config import load_settings
from cti.customers.demo import demo_customers, load_demo, standard_numbers, vip_numbers
from cti.demo import SALES_DID, SUPPORT_DID, demo_center
from cti.logs import configure_logging
from cti.pbx import events as ev
from cti.pbx.link import AmiLink, LinkState
from cti.sim.population import demo_population
from cti.sim.server import Sim, SimSettings, start_sim
from cti.store.connection import Store, open_store
from cti.switchboard import SwitchboardEvent, TaskQueued

FIRST_RATE = 7_200.0        # calls per hour; each step doubles it
TICK_S = 0.1                # the lag probe's sleep
SAMPLE_EVERY = 5            # ticks: the backlog is read every 0.5 s
QUEUE_BOUND = 200           # events pending in the link, second half of the window
QUEUE_GROWTH = 50           # events: median of the second half's last third over its first
LAG_P99_BOUND_MS = 250.0
STOP_TIMEOUT_S = 20.0       # a consumer's stop; past it the step reports an incident
WRAP_UP_S = 3.0             # as `cti demo`
SECRET = "bench"  # a loopback throw-away credential


@dataclass
class Floor:
    """What every step shares: the store with the demo customers, loaded
    once (building them hashes a PIN each: seconds per thousand), and the
    keys it held then, so that a step starts from the same store."""

    agents: int
    seed: int
    talk_s: float
    patience_s: tuple[float, float]
    store: Store
    vips: tuple[str, ...]
    standards: tuple[str, ...]
    directory_keys: frozenset[str] = frozenset()


@dataclass
class Consumer:
    """Who reads the sim's AMI in a step: the server, or the bare link."""

    link: Callable[[], AmiLink]
    live_calls: Callable[[], int] | None
    decisions: Callable[[], int]
    queued: Callable[[], int]
    close: Callable[[], Awaitable[None]]
    abandon: Callable[[], Awaitable[None]]   # what is left to close after a hung close()


@dataclass
class Trace:
    """What the probe saw during the window."""

    lags_ms: list[float] = field(default_factory=list)
    queue: list[int] = field(default_factory=list)
    unsent_bytes: list[int] = field(default_factory=list)
    live_calls: list[int] = field(default_factory=list)
    pbx_calls: list[int] = field(default_factory=list)


# -- the two consumers -------------------------------------------------------------


async def start_server(floor: Floor, sim: Sim) -> Consumer:
    # Ports of our own: another server on this machine must not collide.
    env = {"CTI_AMI_HOST": "127.0.0.1", "CTI_AMI_PORT": str(sim.port),
           "CTI_AMI_SECRET": SECRET, "CTI_HTTP_HOST": "127.0.0.1",
           "CTI_HTTP_PORT": str(_free_port()), "CTI_AGI_HOST": "127.0.0.1",
           "CTI_AGI_PORT": str(_free_port()), "CTI_AMI_PING_INTERVAL": "5"}
    settings = load_settings(None, env)
    center = demo_center(floor.agents, floor.seed, wrap_up=WRAP_UP_S)
    server = Server(settings, center, floor.store,
                    vip_lookup="directory")
    queued = 0

    def count(event: SwitchboardEvent) -> None:
        nonlocal queued
        if isinstance(event, TaskQueued):
            queued += 1

    server.switchboard.listeners.append(count)
    await server.start()
    await _until_connected(lambda: server.link)

    async def abandon() -> None:
        # Server.stop() stopped somewhere: close each part it may not have
        # reached, each bounded, so that nothing runs into the next step.
        for feature in reversed(server.features):
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await feature.stop()
        await server.link.close()
        runner = server._runner  # the HTTP listener stop() did not reach
        if runner is not None:
            await runner.cleanup()

    return Consumer(link=lambda: server.link, live_calls=lambda: len(server.tracker.calls),
                    decisions=lambda: server.switchboard.decisions, queued=lambda: queued,
                    close=server.stop, abandon=abandon)


async def start_bare(sim: Sim) -> Consumer:
    def ignore(_event: ev.PbxEvent) -> None:
        return None

    link = AmiLink("127.0.0.1", sim.port, "cti", SECRET, subscriber=ignore, ping_interval=5.0)
    await link.start()
    return Consumer(link=lambda: link, live_calls=None, decisions=lambda: 0,
                    queued=lambda: 0, close=link.close, abandon=link.close)


async def _until_connected(link: Callable[[], AmiLink], within: float = 10.0) -> None:
    """The server connects in the background: wait (bounded) for its login."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while link().state is not LinkState.CONNECTED:
        if loop.time() > deadline:
            raise RuntimeError(f"the server did not log in within {within:g} s")
        await asyncio.sleep(0.05)


# -- one step ----------------------------------------------------------------------


async def run_step(floor: Floor, rate: float, *, routing: bool, warmup: float,
                   window: float) -> dict[str, Any]:
    population = demo_population(
        floor.agents, seed=floor.seed, calls_per_hour=rate, vip_share=0.2,
        vip_numbers=floor.vips, standard_numbers=floor.standards, talk_s=floor.talk_s,
        patience_s=floor.patience_s, dids=(SUPPORT_DID, SALES_DID),
    )
    await _reset_store(floor)
    gc.collect()  # not inside the window: the last step left a lot behind
    sim = await start_sim(SimSettings(port=0, secret=SECRET, seed=floor.seed,
                                      population=population))
    consumer: Consumer | None = None
    incidents: list[str] = []
    try:
        consumer = await (start_server(floor, sim) if routing else start_bare(sim))
        await asyncio.sleep(warmup)
        step = await _watch(sim, consumer, window)
    finally:
        if consumer is not None:
            incidents += await _close(consumer)
        try:
            await sim.close()
        except RuntimeError as exc:  # a simulated channel failed
            incidents.append(f"sim: {exc.__cause__!r}")
    step = {"mode": "server" if routing else "sim_only", "calls_per_hour": rate, **step}
    step["why_not"] = _verdict(step)
    step["sustained"] = not step["why_not"]
    # Reported, not judged: they happen after the window.
    step["incidents"] = incidents
    return step


async def _close(consumer: Consumer) -> list[str]:
    try:
        async with asyncio.timeout(STOP_TIMEOUT_S):
            await consumer.close()
    except TimeoutError:
        await consumer.abandon()
        return [f"stop did not finish within {STOP_TIMEOUT_S:g} s"]
    return []


async def _watch(sim: Sim, consumer: Consumer, window: float) -> dict[str, Any]:
    link = consumer.link()
    loop = asyncio.get_running_loop()
    trace = Trace()
    placed, events = sim.callers, link.events_received
    decisions, queued = consumer.decisions(), consumer.queued()
    dropped, reconnects = link.events_dropped, link.reconnects
    started = loop.time()
    probe = asyncio.create_task(_probe(trace, sim, consumer), name="bench-probe")
    try:
        await asyncio.sleep(window)
    finally:
        probe.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await probe
    elapsed = loop.time() - started
    link = consumer.link()
    half = trace.queue[len(trace.queue) // 2:]
    # Medians, not means: one burst the reader clears at once is not a trend.
    third = max(1, len(half) // 3)
    growth = statistics.median(half[-third:]) - statistics.median(half[:third]) if half else 0
    routing = consumer.live_calls is not None
    return {
        "window_s": round(elapsed, 2),
        "placed_per_s": round((sim.callers - placed) / elapsed, 2),
        "queued_per_s": round((consumer.queued() - queued) / elapsed, 2) if routing else None,
        "routing_decisions": consumer.decisions() - decisions,
        "events_per_s": round((link.events_received - events) / elapsed),
        "max_concurrent_calls": max(trace.live_calls, default=0) if routing else None,
        "max_pbx_calls": max(trace.pbx_calls, default=0),
        "queue_max": max(trace.queue, default=0),
        "queue_max_second_half": max(half, default=0),
        "queue_growth": round(growth, 1),
        "lag_p50_ms": round(_percentile(trace.lags_ms, 0.50), 1),
        "lag_p99_ms": round(_percentile(trace.lags_ms, 0.99), 1),
        "lag_max_ms": round(max(trace.lags_ms, default=0.0), 1),
        "unsent_bytes_max": max(trace.unsent_bytes, default=0),
        "events_dropped": link.events_dropped - dropped,
        "reconnects": link.reconnects - reconnects,
        "queue_samples": trace.queue,
    }


async def _probe(trace: Trace, sim: Sim, consumer: Consumer) -> None:
    """Every 0.1 s: how late the loop woke us; every 0.5 s: the backlog."""
    loop = asyncio.get_running_loop()
    tick = 0
    while True:
        before = loop.time()
        await asyncio.sleep(TICK_S)
        trace.lags_ms.append(max(0.0, loop.time() - before - TICK_S) * 1000)
        tick += 1
        if tick % SAMPLE_EVERY:
            continue
        queue = consumer.link()._queue  # private, but the backlog is the figure
        trace.queue.append(queue.qsize() if queue is not None else 0)
        trace.unsent_bytes.append(sum(s.writer.transport.get_write_buffer_size()
                                      for s in list(sim.ami.sessions)))
        trace.pbx_calls.append(_pbx_calls(sim))
        if consumer.live_calls is not None:
            trace.live_calls.append(consumer.live_calls())


def _pbx_calls(sim: Sim) -> int:
    """Callers alive in the PBX: the ;1 half of each generated caller's
    Local/<patience>@sim-caller pair (the half in cti-inbound/cti-wait)."""
    return sum(1 for name in list(sim.switch.channels)
               if "@sim-caller-" in name and name.endswith(";1"))


def _verdict(step: dict[str, Any]) -> list[str]:
    """Why the step is not sustained; empty when it is."""
    why = []
    if step["queue_max_second_half"] > QUEUE_BOUND:
        why.append(f"queue max {step['queue_max_second_half']} > {QUEUE_BOUND}")
    if step["queue_growth"] > QUEUE_GROWTH:
        why.append(f"queue grew by {step['queue_growth']} > {QUEUE_GROWTH}")
    if step["lag_p99_ms"] >= LAG_P99_BOUND_MS:
        why.append(f"loop lag p99 {step['lag_p99_ms']} ms >= {LAG_P99_BOUND_MS:g}")
    if step["events_dropped"] or step["reconnects"]:
        why.append(f"link dropped {step['events_dropped']} events, "
                   f"reconnected {step['reconnects']} times")
    return why


def _percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def _reset_store(floor: Floor) -> None:
    """Remove what the last step wrote (reservations, leases, ...): a
    reservation left behind would make its agent look held elsewhere."""
    stale = [key async for key in floor.store.redis.scan_iter(count=1000)
             if key not in floor.directory_keys]
    if stale:
        await floor.store.redis.delete(*stale)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the run -----------------------------------------------------------------------


async def main(args: argparse.Namespace) -> dict[str, Any]:
    began = time.perf_counter()
    # One customer per agent: the lookup costs the same whatever the size
    # of the directory, and `cti demo`'s three per agent take 13 s to build.
    customers = demo_customers(max(40, args.agents), args.seed)
    store = await open_store(None)
    try:
        await load_demo(store, customers)
        keys = frozenset([key async for key in store.redis.scan_iter(count=1000)])
        low = args.warmup + args.window + 30.0  # nobody abandons during a step
        floor = Floor(args.agents, args.seed, args.talk, (low, low + 120.0), store,
                      tuple(vip_numbers(customers)), tuple(standard_numbers(customers)),
                      keys)
        if args.profile is not None:
            return await _profiled(floor, args)
        steps = await _ramp(floor, args)
    finally:
        await store.close()
    return _result(args, steps, time.perf_counter() - began)


async def _ramp(floor: Floor, args: argparse.Namespace) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    going = {"server": True, "sim_only": True}
    for index in range(args.max_steps):
        rate = FIRST_RATE * 2 ** index
        for mode in ("server", "sim_only"):
            if not going[mode]:
                continue
            step = await run_step(floor, rate, routing=mode == "server",
                                  warmup=args.warmup, window=args.window)
            print(json.dumps(step), file=sys.stderr, flush=True)
            steps.append(step)
            going[mode] = step["sustained"]
        if not any(going.values()):
            break
    return steps


async def _profiled(floor: Floor, args: argparse.Namespace) -> dict[str, Any]:
    """One server step at --profile calls/hour under cProfile (the sim
    included: one process); the top functions go to stderr."""
    profile = cProfile.Profile()
    profile.enable()
    step = await run_step(floor, args.profile, routing=True, warmup=args.warmup,
                          window=args.window)
    profile.disable()
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out).strip_dirs()
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(50)
    print(out.getvalue(), file=sys.stderr)
    return {"benchmark": "sim_capacity", "profiled_step": step}


def _result(args: argparse.Namespace, steps: list[dict[str, Any]],
            elapsed: float) -> dict[str, Any]:
    def best(mode: str) -> tuple[float, bool, list[dict[str, Any]]]:
        ours = [s for s in steps if s["mode"] == mode]
        good = [s for s in ours if s["sustained"]]
        return max((s["calls_per_hour"] for s in good), default=0.0), len(good) == len(ours), good

    server, server_capped, server_good = best("server")
    bare, bare_capped, _ = best("sim_only")
    return {
        "benchmark": "sim_capacity",
        "agents": args.agents,
        "sustained_calls_per_hour": server,
        "max_concurrent_calls": max((s["max_concurrent_calls"] for s in server_good),
                                    default=0),
        "baseline_sim_only_calls_per_hour": bare,
        "ratio": round(server / bare, 3) if bare else None,
        # True: every step tried was sustained, so the figure is a lower bound
        "server_reached_max_steps": server_capped,
        "baseline_reached_max_steps": bare_capped,
        "window_s": args.window,
        "warmup_s": args.warmup,
        "talk_s": args.talk,
        "seed": args.seed,
        "rule": {"queue_max_second_half": QUEUE_BOUND, "queue_growth": QUEUE_GROWTH,
                 "lag_p99_ms_below": LAG_P99_BOUND_MS, "sample_s": TICK_S * SAMPLE_EVERY},
        "elapsed_s": round(elapsed, 1),
        "steps": steps,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=20.0, help="seconds watched per step")
    parser.add_argument("--warmup", type=float, default=3.0,
                        help="seconds between the login and the window")
    parser.add_argument("--max-steps", type=int, default=9,
                        help="rates tried at most, from 7,200/h doubling (9: up to 1,843,200/h)")
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--talk", type=float, default=60.0, help="average talk time, seconds")
    parser.add_argument("--profile", type=float, default=None, metavar="CALLS_PER_HOUR",
                        help="profile one server step at this rate instead of the ramp")
    arguments = parser.parse_args()
    if not 1 <= arguments.max_steps <= 10 or arguments.window < 2 or arguments.agents < 1:
        parser.error("need 1 <= --max-steps <= 10, --window >= 2, --agents >= 1")
    configure_logging("json", "warning")
    print(json.dumps(asyncio.run(main(arguments))))
