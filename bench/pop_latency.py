"""Benchmark: screen-pop latency with 1,000 agent desks connected.

Three processes and a redis-server on loopback, as in production: the
simulated PBX in its own process (`demo_population` of 1,000 agent phones,
no generated traffic; callers come in through [cti-inbound] and the
server's IVR over FastAGI, a greeting then support, as dialplans/cti.conf
sends them), the server with the desk feature (every agent logged in at
start) holding a VIP customer with a contact history, and 1,000 websocket
desks (aiohttp clients, each signed in as its agent) in a third process,
as browsers would be. With two CPUs or more the desks' process gets the
last CPU to itself (browsers run on the agents' own PCs) and the server,
the sim and Redis share the others (`--no-pin`: no placement).

`--calls` callers are placed through the sim's AMI, `--gap` apart so that
each finds free agents. Every time is a `time.perf_counter()` stamp (the
system-wide monotonic clock on Linux, the same in every process); a PBX
event's arrival is when the server's AMI reader received the bytes that
carried it. For each pop:

- `pop_ms`, the issue's measure: from the arrival of the ringing event
  (the PBX's DialBegin from the caller to the offered agent's phone) to the
  desk having parsed the pop. The server sends the pop with its routing
  decision, before it moves the caller to the agent's phone, so this is
  negative when the pop was on the desk before the phone rang.
- `from_routing_event_ms`, stricter: from the arrival of the event that
  made the server route the call (the caller entering the waiting context)
  to the desk having parsed the pop; also from the moment the server's call
  tracker took that event (the events the PBX sent before it in the same
  burst are handled first, in order: `arrival_to_tracker_ms`).

The baseline is a bare aiohttp websocket server's `send_str` of a message
of the pops' size, to a client in the desks' process having parsed it:
measured during the run (`baseline_ms`: one message per call, between two
callers, from a bare server on the server's event loop to a client beside
the desks), and after it on an idle machine (`baseline_idle_ms`: a
dedicated client process on the desks' CPU, 2 ms apart).

Prints one JSON object. Target: `ratio.p99` (pop_ms p99 / baseline_ms p99)
<= 2.

    .venv/bin/python bench/pop_latency.py [--agents 1000] [--calls 200] [--gap 0.02]
                                          [--no-pin] [--sim-in-process]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cti.app import Server
from cti.center import center_from
from cti.config import load_settings
from cti.customers.models import Contact, parse_customer
from cti.desk.hub import Hub
from cti.logs import configure_logging
from cti.pbx import events as ev
from cti.sim.population import demo_population
from cti.sim.server import SimSettings, start_sim
from cti.store.connection import open_store
from cti.switchboard import TaskOffered
from tests.ami_client import AmiClient

SECRET = "bench-secret"
GREETING_FLOW = """\
description: Bench greeting, then support
language: en
fallback_service: support
dids: ["0140000001"]
start: identify
steps:
  - id: identify
    type: identify
    by: caller
    next: welcome
    on_not_found: welcome
  - id: welcome
    type: play
    prompt: {en: cti/welcome}
    next: handoff
  - id: handoff
    type: handoff
    service: support
"""
VIP = "+33612345678"
POP_BYTES = 1280  # the baseline's message size until the first pop is seen


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _place(pin: bool) -> int | None:
    """The desks' CPU (the last one this process may use), this process
    (and the sim and Redis it starts) moved to the others; None: no
    placement (asked, or fewer than two CPUs)."""
    if not pin or not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    os.sched_setaffinity(0, set(cpus[:-1]))
    return cpus[-1]


def _pin_to(cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


@contextlib.asynccontextmanager
async def _redis() -> AsyncIterator[str | None]:
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save",
                                 "", "--appendonly", "no", "--dir", tmp],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                with contextlib.suppress(OSError), socket.create_connection(
                        ("127.0.0.1", port), timeout=0.1):
                    break
                await asyncio.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def _center(agents: int) -> Any:
    return center_from({
        "services": {"support": {"skills": {"support": 1}, "numbers": ["0140000001"],
                                 "wrap_up_seconds": 600, "ring_timeout_seconds": 30}},
        "agents": [{"id": str(1001 + i), "name": f"Agent {1001 + i}",
                    "device": f"Local/{1001 + i}@sim-agent", "skills": {"support": 5},
                    "login_at_start": True} for i in range(agents)],
    }, "bench center")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class _Run:
    """The stamps of one run, by call id (and by baseline message number)."""

    routed_arrival: dict[str, float] = field(default_factory=dict)
    routed_tracker: dict[str, float] = field(default_factory=dict)
    agent: dict[str, str] = field(default_factory=dict)
    ringing_arrival: dict[str, float] = field(default_factory=dict)
    received: dict[str, float] = field(default_factory=dict)  # pops, and "bare:<n>"
    bare_sent: dict[str, float] = field(default_factory=dict)
    pop_bytes: int = POP_BYTES


async def _pops(args: argparse.Namespace, url: str | None, desks_cpu: int | None) -> _Run:
    run = _Run()
    sim: Any = None
    agi_port = _free_port()
    if args.sim_in_process:
        sim = await start_sim(_sim_settings(args.agents, agi_port))
        sim_port = sim.port
    else:
        sim = await _child(["--sim-for", str(args.agents), "--agi-port", str(agi_port)], b"")
        sim_port = int(sim.first_line)
    store = await open_store(url)
    env = {"CTI_AMI_PORT": str(sim_port), "CTI_AMI_SECRET": SECRET,
           "CTI_HTTP_PORT": str(_free_port()), "CTI_AGI_PORT": str(agi_port),
           "CTI_AMI_PING_INTERVAL": "5", "CTI_LOG_LEVEL": "warning", "CTI_LOG_FORMAT": "json"}
    flows = Path(tempfile.mkdtemp())
    # Callers come in through [cti-inbound] and the server's IVR, as
    # dialplans/cti.conf sends them on Asterisk: a greeting, then support.
    (flows / "greeting.yaml").write_text(GREETING_FLOW)
    env["CTI_CENTER_FLOWS"] = str(flows)
    settings = load_settings(None, env)
    configure_logging("json", "warning")
    server = Server(settings, _center(args.agents), store, vip_lookup="directory")
    await server.customers.put(parse_customer({"id": "c-vip", "name": "Alice Dupont",
                                               "tier": "vip", "phones": [VIP]}, region="FR"))
    for day in range(5):
        await server.customers.add_contact("c-vip", Contact(
            at=time.time() - 86_400 * (day + 1), channel="voice", direction="inbound",
            service="support", agent_id="1001", agent_name="Agent 1001", duration_s=60,
            disposition="resolved", notes="note " * 20))
    _stamp(server, run)
    await server.start()
    ami: AmiClient | None = None
    desks: _DesksProcess | None = None
    try:
        while server.link.state.value != "connected":
            await asyncio.sleep(0.05)
        base = f"http://127.0.0.1:{server.http_port}"
        now = time.time()
        tokens = [server.sessions.issue(str(1001 + index), "agent", now, 1)
                  for index in range(args.agents)]
        async with _bare_server() as (bare_url, accepted):
            desks = await _desks_process(base, tokens, bare_url, desks_cpu, run.received)
            bare = await accepted.get()
            await asyncio.sleep(1.0)
            ami = await AmiClient.connect(sim_port)
            await ami.login(secret=SECRET)
            sized = False
            for index in range(args.calls):
                number = VIP if index % 2 == 0 else f"+3361{index:07d}"
                ami.send("Originate", ("Channel", "Local/600@sim-caller"),
                         ("Context", "cti-inbound"), ("Exten", "0140000001"), ("Priority", "1"),
                         ("CallerID", f'"Caller {index}" <{number}>'), ("Async", "true"))
                await asyncio.sleep(args.gap / 2)
                # The in-run baseline: one bare message between two callers.
                if not sized:
                    size = _pop_size(server)
                    sized, run.pop_bytes = size is not None, size or run.pop_bytes
                text = json.dumps({"type": "bare", "n": index,
                                   "pad": "x" * max(0, run.pop_bytes - 40)})
                run.bare_sent[f"bare:{index}"] = time.perf_counter()
                await bare.send_str(text)
                await asyncio.sleep(args.gap / 2)
            deadline = time.monotonic() + 30
            while sum(1 for key in run.received if key in run.routed_arrival) < args.calls \
                    and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)  # the last calls' Redirect to the agent's phone
        return run
    finally:
        if desks is not None:
            await desks.stop()
        if ami is not None:
            await ami.close()
        await server.stop()
        if isinstance(sim, _Child):
            await sim.stop()
        else:
            await sim.close()
        await store.close()


def _stamp(server: Server, run: _Run) -> None:
    """Stamp, in the server, each PBX event's arrival and the tracker's
    taking it, the routing event of each offered call and the event that
    rings the offered agent's phone."""
    apply = server.tracker.apply
    current = [0.0, 0.0]  # the event being folded: (taken by the tracker, arrived)

    def timed_apply(event: Any) -> Any:
        taken = time.perf_counter()
        # `event.at` is the server clock (time.time) read when the AMI
        # reader received its bytes: the same instant on perf_counter.
        current[:] = [taken, taken - max(0.0, time.time() - event.at)]
        changes = apply(event)
        if isinstance(event, ev.DialStarted) and event.caller is not None:
            call = server.tracker.call_of(event.caller.uniqueid)
            agent = run.agent.get(call.id) if call is not None else None
            if call is not None and agent is not None \
                    and event.dest.name.startswith(f"Local/{agent}@"):
                run.ringing_arrival.setdefault(call.id, current[1])
        return changes

    server.tracker.apply = timed_apply  # type: ignore[method-assign]

    def on_offer(event: object) -> None:
        if isinstance(event, TaskOffered):
            run.routed_tracker.setdefault(event.call, current[0])
            run.routed_arrival.setdefault(event.call, current[1])
            run.agent.setdefault(event.call, event.assignment.agent_id)

    server.switchboard.listeners.insert(0, on_offer)


def _sim_settings(agents: int, agi_port: int) -> SimSettings:
    population = demo_population(agents, seed=1, calls_per_hour=0, vip_share=0,
                                 vip_numbers=(), ring_s=(5.0, 5.0), talk_s=600.0,
                                 no_answer_odds=0.0, busy_odds=0.0)
    return SimSettings(port=0, secret=SECRET, population=population, inbound_agi=True,
                       agi_url=f"agi://127.0.0.1:{agi_port}")


class _Child:
    """A child process of this script: its first stdout line, then it runs
    until its stdin is closed."""

    def __init__(self, proc: asyncio.subprocess.Process, first_line: str) -> None:
        self.proc = proc
        self.first_line = first_line

    async def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 20)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


async def _child(mode: list[str], stdin: bytes) -> _Child:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, *mode, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    if stdin:
        proc.stdin.write(stdin)
        await proc.stdin.drain()
    line = await asyncio.wait_for(proc.stdout.readline(), 120)
    if not line.strip():
        raise RuntimeError(f"{mode[0]} process did not start")
    return _Child(proc, line.decode().strip())


async def _stdin() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader(limit=64 * 1024 * 1024)  # the tokens come as one line
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    return stdin


async def _sim_child(agents: int, agi_port: int) -> None:
    """The simulated PBX in its own process, as Asterisk is in production."""
    stdin = await _stdin()
    sim = await start_sim(_sim_settings(agents, agi_port))
    sys.stdout.write(f"{sim.port}\n")
    sys.stdout.flush()
    await stdin.read()
    await sim.close()


def _report(key: str) -> None:
    """Tell the parent that `key` (a call id, `bare:<n>`) was parsed now."""
    sys.stdout.write(f"{key} {time.perf_counter()!r}\n")
    sys.stdout.flush()


async def _desk(http: aiohttp.ClientSession, base: str, token: str,
                sockets: list[aiohttp.ClientWebSocketResponse]) -> None:
    """One agent's desk: signs in, reports each pop as soon as it is parsed."""
    ws = await http.ws_connect(f"{base}/ws/agent")
    await ws.send_str(json.dumps({"v": 1, "type": "hello", "token": token}))
    sockets.append(ws)
    seen: set[str] = set()
    async for message in ws:
        data = json.loads(message.data)
        if data["type"] == "pop" and data["pop"]["call_id"] not in seen:
            seen.add(data["pop"]["call_id"])
            _report(data["pop"]["call_id"])


async def _bare_client(ws: aiohttp.ClientWebSocketResponse) -> None:
    async for message in ws:
        data = json.loads(message.data)
        _report(f"bare:{data['n']}")


class _DesksProcess:
    """The desks in a child process (`--desks-for BASE`): the tokens, the
    bare server's URL and the CPU in on stdin, "ready" once all are
    connected, then one line per pop or bare message parsed, `<key>
    <perf_counter>`; stdin closed ends it."""

    def __init__(self, child: _Child, received: dict[str, float]) -> None:
        self.child = child
        self.received = received
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.child.proc.stdout is not None
        async for line in self.child.proc.stdout:
            key, _, at = line.decode().strip().partition(" ")
            if at:
                self.received.setdefault(key, float(at))

    async def stop(self) -> None:
        await self.child.stop()
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.reader


async def _desks_process(base: str, tokens: list[str], bare_url: str | None,
                         cpu: int | None, received: dict[str, float]) -> _DesksProcess:
    order = json.dumps({"tokens": tokens, "bare": bare_url, "cpu": cpu}) + "\n"
    child = await _child(["--desks-for", base], order.encode())
    if child.first_line != "ready":
        raise RuntimeError(f"desk process did not start: {child.first_line!r}")
    return _DesksProcess(child, received)


async def _desks_child(base: str) -> None:
    stdin = await _stdin()
    order = json.loads(await stdin.readline())
    _pin_to(order["cpu"])
    tokens = order["tokens"]
    sockets: list[aiohttp.ClientWebSocketResponse] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        readers = [asyncio.create_task(_desk(http, base, token, sockets)) for token in tokens]
        if order["bare"]:
            bare = await http.ws_connect(order["bare"])
            readers.append(asyncio.create_task(_bare_client(bare)))
        while len(sockets) < len(tokens):
            await asyncio.sleep(0.05)
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        await stdin.read()  # until the parent closes stdin
        for ws in sockets:
            await ws.close()
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)


def _pop_size(server: Server) -> int | None:
    for feature in server.features:
        hub = getattr(feature, "hub", None)
        if isinstance(hub, Hub):
            sizes = [len(text) for stream in hub._streams.values()
                     for _, text in stream.replay if '"type":"pop"' in text]
            if sizes:
                return int(statistics.median(sizes))
    return None


@contextlib.asynccontextmanager
async def _bare_server() -> AsyncIterator[tuple[str, asyncio.Queue[web.WebSocketResponse]]]:
    """A bare aiohttp websocket server: its URL, and its side of each
    connection as it is accepted."""
    ready: asyncio.Queue[web.WebSocketResponse] = asyncio.Queue()
    done = asyncio.Event()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ready.put(ws)
        await done.wait()
        await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/ws", ready
    finally:
        done.set()
        await runner.cleanup()


async def _baseline_idle(size: int, rounds: int, gap: float, cpu: int | None) -> list[float]:
    """The bare baseline on an idle machine: a client process of its own
    on the desks' CPU, `rounds` messages `gap` apart (none waits behind
    another)."""
    received: dict[str, float] = {}
    sent: dict[str, float] = {}
    async with _bare_server() as (url, ready):
        reader = _DesksProcess(await _child(
            ["--receiver-for", url, "--cpu", "" if cpu is None else str(cpu)], b""), received)
        try:
            server_ws = await ready.get()
            for n in range(rounds):
                text = json.dumps({"type": "bare", "n": n, "pad": "x" * max(0, size - 40)})
                sent[f"bare:{n}"] = time.perf_counter()
                await server_ws.send_str(text)
                await asyncio.sleep(gap)
            deadline = time.monotonic() + 10
            while len(received) < rounds and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:
            await reader.stop()
    return [(received[n] - sent[n]) * 1000 for n in received if n in sent]


async def _receiver_child(url: str, cpu: int | None) -> None:
    """`--receiver-for URL`: one websocket client; "ready", then
    `bare:<n> <perf_counter>` per message parsed; stdin closed ends it."""
    _pin_to(cpu)
    stdin = await _stdin()
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        reading = asyncio.create_task(_bare_client(ws))
        await stdin.read()
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)


def _figures(values: list[float]) -> dict[str, float]:
    return {"p50": round(statistics.median(values), 3), "p99": round(_pct(values, 0.99), 3),
            "max": round(max(values), 3)}


def _since(run: _Run, start: dict[str, float]) -> list[float]:
    """Milliseconds from `start[call]` to the pop of `call` parsed."""
    return [(run.received[call] - at) * 1000 for call, at in start.items()
            if call in run.received]


async def main(args: argparse.Namespace) -> dict[str, Any]:
    desks_cpu = _place(args.pin)
    async with _redis() as url:
        run = await _pops(args, url, desks_cpu)
    idle = await _baseline_idle(run.pop_bytes, 1000, 0.002, desks_cpu)
    pop = _since(run, run.ringing_arrival)
    strict = _since(run, run.routed_arrival)
    tracker = _since(run, run.routed_tracker)
    bare = [(run.received[key] - at) * 1000 for key, at in run.bare_sent.items()
            if key in run.received]
    hop = [(run.routed_tracker[call] - at) * 1000 for call, at in run.routed_arrival.items()]
    figures = {name: _figures(values) for name, values in (
        ("pop", pop), ("strict", strict), ("tracker", tracker), ("bare", bare), ("idle", idle),
        ("hop", hop))}
    base = figures["bare"]

    def ratio(of: dict[str, float], to: dict[str, float]) -> dict[str, float]:
        return {q: round(of[q] / to[q], 2) for q in ("p50", "p99")}

    return {
        "bench": "pop_latency", "agents_connected": args.agents, "calls": args.calls,
        "pops_received": len(tracker), "store": "redis-server" if url else "in-process",
        "pop_bytes": run.pop_bytes,
        "placement": "no" if desks_cpu is None else
        f"desks on CPU {desks_cpu}; server, sim and Redis on the others",
        "sim": "server's loop" if args.sim_in_process else "own process",
        # The issue's measure: ringing event's arrival -> pop parsed on the
        # desk (negative: the pop was there before the phone rang).
        "pop_ms": {**figures["pop"], "calls": len(pop),
                   "on_desk_before_ringing": sum(1 for value in pop if value < 0)},
        "baseline_ms": base,
        "ratio": ratio(figures["pop"], base),
        "target": "ratio.p99 <= 2",
        # Stricter: from the arrival of the event that made the server route
        # the call, and from the tracker taking it.
        "from_routing_event_ms": {
            "arrival": figures["strict"], "tracker": figures["tracker"],
            "ratio_p99": {"arrival": round(figures["strict"]["p99"] / base["p99"], 2),
                          "tracker": round(figures["tracker"]["p99"] / base["p99"], 2)}},
        "arrival_to_tracker_ms": figures["hop"],
        "baseline_idle_ms": figures["idle"],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--gap", type=float, default=0.02, help="seconds between callers")
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="no CPU placement of the desks' process")
    parser.add_argument("--sim-in-process", action="store_true",
                        help="run the simulated PBX on the server's event loop")
    parser.add_argument("--desks-for", help=argparse.SUPPRESS)  # the child processes
    parser.add_argument("--sim-for", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--agi-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--receiver-for", help=argparse.SUPPRESS)
    parser.add_argument("--cpu", help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    if parsed.desks_for:
        asyncio.run(_desks_child(parsed.desks_for))
        sys.exit(0)
    if parsed.receiver_for:
        asyncio.run(_receiver_child(parsed.receiver_for, int(parsed.cpu) if parsed.cpu else None))
        sys.exit(0)
    if parsed.sim_for:
        asyncio.run(_sim_child(parsed.sim_for, parsed.agi_port))
        sys.exit(0)
    if not (1 <= parsed.agents <= 5000 and 1 <= parsed.calls <= parsed.agents
            and 0.002 <= parsed.gap <= 10):
        parser.error("1 <= calls <= agents <= 5000, 0.002 <= gap <= 10")
    print(json.dumps(asyncio.run(main(parsed))))
