"""Benchmark: screen-pop latency with 1,000 agent desks connected.

Three processes and a redis-server on loopback, as in production: the
simulated PBX in its own process (`demo_population` of 1,000 agent phones,
no generated traffic; callers come in through [cti-inbound] and the
server's IVR over FastAGI, a greeting then support, as dialplans/cti.conf
sends them), the server with the desk feature (every agent logged in at
start) holding a VIP customer with a contact history, and 1,000 websocket
desks (aiohttp clients, each signed in as its agent) in a third process,
as browsers would be.

`--calls` callers are placed through the sim's AMI, paced `--gap` apart so
that each finds free agents. The latency of a pop is from the moment the
PBX event that leads to the offer (the caller entering the waiting
context) reaches the tracker, to the moment the offered agent's desk
client has received and parsed the pop. Both processes stamp times with
`time.perf_counter()`, the system-wide monotonic clock on Linux.

The baseline, in the same run, is a bare aiohttp websocket: server-side
`send_str` of a message of the same size as the pops, to the client's
parsed receive; measured with the client in another process (as the
desks), the figure the ratio is taken against, and in the sending process
(`p99_vs_same_process`). `--same-loop` and `--sim-in-process` put the
desks or the sim back on the server's event loop.

Prints one JSON object: pop and baseline median and 99th percentile (ms),
and their ratios (target: p99 ratio <= 2).

    .venv/bin/python bench/pop_latency.py [--agents 1000] [--calls 200] [--gap 0.02]
                                          [--same-loop] [--sim-in-process]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cti.app import Server
from cti.calls.model import CallState, CallStateChanged
from cti.center import center_from
from cti.config import load_settings
from cti.customers.models import Contact, parse_customer
from cti.logs import configure_logging
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


async def _pops(args: argparse.Namespace,
                url: str | None) -> tuple[list[float], list[float], int]:
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
           "CTI_HTTP_PORT": str(_free_port()), "CTI_AGI_PORT": str(_free_port()),
           "CTI_AMI_PING_INTERVAL": "5", "CTI_LOG_LEVEL": "warning", "CTI_LOG_FORMAT": "json"}
    flows = Path(tempfile.mkdtemp())
    # Callers come in through [cti-inbound] and the server's IVR, as
    # dialplans/cti.conf sends them on Asterisk: a greeting, then support.
    (flows / "greeting.yaml").write_text(GREETING_FLOW)
    env["CTI_CENTER_FLOWS"] = str(flows)
    env["CTI_AGI_PORT"] = str(agi_port)
    settings = load_settings(None, env)
    configure_logging("json", "warning")
    server = Server(settings, _center(args.agents), store,
                    vip_lookup="directory")
    await server.customers.put(parse_customer({"id": "c-vip", "name": "Alice Dupont",
                                               "tier": "vip", "phones": [VIP]}, region="FR"))
    for day in range(5):
        await server.customers.add_contact("c-vip", Contact(
            at=time.time() - 86_400 * (day + 1), channel="voice", direction="inbound",
            service="support", agent_id="1001", agent_name="Agent 1001", duration_s=60,
            disposition="resolved", notes="note " * 20))
    # t0 per call: the tracker starts folding the event that makes it wait.
    started: dict[str, float] = {}
    apply = server.tracker.apply
    current = [0.0]

    # The PBX event that sends the caller to the agent's phone (the call
    # enters cti-connect, CONNECTING; the Dial to the agent follows).
    ringing: dict[str, float] = {}

    def timed_apply(event: Any) -> Any:
        at = current[0] = time.perf_counter()
        changes = apply(event)
        for change in changes:
            if isinstance(change, CallStateChanged) and change.state is CallState.CONNECTING:
                ringing.setdefault(change.call, at)
        return changes

    server.tracker.apply = timed_apply  # type: ignore[method-assign]

    def on_offer(event: object) -> None:
        if isinstance(event, TaskOffered):
            started.setdefault(event.call, current[0])

    server.switchboard.listeners.insert(0, on_offer)
    received: dict[str, float] = {}
    await server.start()
    ami: AmiClient | None = None
    sockets: list[aiohttp.ClientWebSocketResponse] = []
    readers: list[asyncio.Task[None]] = []
    http: aiohttp.ClientSession | None = None
    child: _DesksProcess | None = None
    try:
        while server.link.state.value != "connected":
            await asyncio.sleep(0.05)
        base = f"http://127.0.0.1:{server.http_port}"
        now = time.time()
        tokens = {str(1001 + index): server.sessions.issue(str(1001 + index), "agent", now, 1)
                  for index in range(args.agents)}
        if args.same_loop:
            http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
            for token in tokens.values():
                readers.append(asyncio.create_task(_desk(http, base, token, sockets,
                                                         received)))
            while len(sockets) < args.agents:
                await asyncio.sleep(0.05)
        else:
            child = await _desks_process(base, list(tokens.values()), received)
        await asyncio.sleep(1.0)
        ami = await AmiClient.connect(sim_port)
        await ami.login(secret=SECRET)
        for index in range(args.calls):
            number = VIP if index % 2 == 0 else f"+3361{index:07d}"
            ami.send("Originate", ("Channel", "Local/600@sim-caller"),
                     ("Context", "cti-inbound"), ("Exten", "0140000001"), ("Priority", "1"),
                     ("CallerID", f'"Caller {index}" <{number}>'), ("Async", "true"))
            await asyncio.sleep(args.gap)
        deadline = time.monotonic() + 30
        while len(received) < args.calls and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # the last calls' Redirect to the agent's phone
        latencies = [(received[call] - started[call]) * 1000 for call in received
                     if call in started]
        ahead = [(ringing[call] - received[call]) * 1000 for call in received
                 if call in ringing]
        size = _pop_size(server)
        for ws in sockets:
            await ws.close()
        if http is not None:
            await http.close()
        return latencies, ahead, size
    finally:
        if child is not None:
            await child.stop()
        for task in readers:
            task.cancel()
        for task in readers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if ami is not None:
            await ami.close()
        await server.stop()
        if isinstance(sim, _Child):
            await sim.stop()
        else:
            await sim.close()
        await store.close()


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


async def _sim_child(agents: int, agi_port: int) -> None:
    """The simulated PBX in its own process, as Asterisk is in production."""
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    sim = await start_sim(_sim_settings(agents, agi_port))
    sys.stdout.write(f"{sim.port}\n")
    sys.stdout.flush()
    await stdin.read()
    await sim.close()


async def _desk(http: aiohttp.ClientSession, base: str, token: str,
                sockets: list[aiohttp.ClientWebSocketResponse],
                received: dict[str, float]) -> None:
    """One agent's desk: signs in, stamps each pop when parsed."""
    ws = await http.ws_connect(f"{base}/ws/agent")
    await ws.send_str(json.dumps({"v": 1, "type": "hello", "token": token}))
    sockets.append(ws)
    async for message in ws:
        data = json.loads(message.data)
        if data["type"] == "pop":
            received.setdefault(data["pop"]["call_id"], time.perf_counter())


class _DesksProcess:
    """The desks in a child process (`--desks-for BASE`): tokens in on
    stdin, "ready" once all are connected, then one line per pop received,
    `<call id> <perf_counter>`; stdin closed ends it."""

    def __init__(self, child: _Child, received: dict[str, float]) -> None:
        self.child = child
        self.received = received
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.child.proc.stdout is not None
        async for line in self.child.proc.stdout:
            call, _, at = line.decode().strip().partition(" ")
            if at:
                self.received.setdefault(call, float(at))

    async def stop(self) -> None:
        await self.child.stop()
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.reader


async def _desks_process(base: str, tokens: list[str],
                         received: dict[str, float]) -> _DesksProcess:
    child = await _child(["--desks-for", base], (json.dumps(tokens) + "\n").encode())
    if child.first_line != "ready":
        raise RuntimeError(f"desk process did not start: {child.first_line!r}")
    return _DesksProcess(child, received)


async def _desks_child(base: str) -> None:
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader(limit=64 * 1024 * 1024)  # the tokens come as one line
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    tokens = json.loads(await stdin.readline())
    sockets: list[aiohttp.ClientWebSocketResponse] = []

    class Stamped(dict[str, float]):
        def setdefault(self, key: str, default: float | None = None) -> float:
            if key not in self:
                assert default is not None
                self[key] = default
                sys.stdout.write(f"{key} {default!r}\n")
                sys.stdout.flush()
            return self[key]

    received: dict[str, float] = Stamped()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        readers = [asyncio.create_task(_desk(http, base, token, sockets, received))
                   for token in tokens]
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


def _pop_size(server: Server) -> int:
    for feature in server.features:
        hub = getattr(feature, "hub", None)
        if hub is not None:
            sizes = [len(text) for stream in hub._streams.values()
                     for _, text in stream.replay if '"type":"pop"' in text]
            if sizes:
                return int(statistics.median(sizes))
    return 2000


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


async def _baseline(size: int, rounds: int) -> list[float]:
    """The bare baseline with the client in this process."""
    text = json.dumps({"type": "pop", "pad": "x" * max(0, size - 24)})
    out = []
    async with _bare_server() as (url, ready), aiohttp.ClientSession() as http, \
            http.ws_connect(url) as client:
        server_ws = await ready.get()
        for _ in range(rounds):
            started = time.perf_counter()
            await server_ws.send_str(text)
            message = await client.receive()
            json.loads(message.data)
            out.append((time.perf_counter() - started) * 1000)
    return out


async def _baseline_across(size: int, rounds: int, gap: float) -> list[float]:
    """The bare baseline with the receiving client in another process, as
    the desks are: `send_str` here, parsed there, `rounds` messages `gap`
    apart (none waits behind another)."""
    pad = "x" * max(0, size - 40)
    received: dict[str, float] = {}
    sent: dict[str, float] = {}
    async with _bare_server() as (url, ready):
        reader = _DesksProcess(await _child(["--receiver-for", url], b""), received)
        try:
            server_ws = await ready.get()
            for n in range(rounds):
                text = json.dumps({"type": "pop", "n": n, "pad": pad})
                sent[str(n)] = time.perf_counter()
                await server_ws.send_str(text)
                await asyncio.sleep(gap)
            deadline = time.monotonic() + 10
            while len(received) < rounds and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:
            await reader.stop()
    return [(received[n] - sent[n]) * 1000 for n in received if n in sent]


async def _receiver_child(url: str) -> None:
    """`--receiver-for URL`: one websocket client; "ready", then
    `<n> <perf_counter>` per message parsed; stdin closed ends it."""
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        sys.stdout.write("ready\n")
        sys.stdout.flush()

        async def read() -> None:
            async for message in ws:
                data = json.loads(message.data)
                sys.stdout.write(f"{data['n']} {time.perf_counter()!r}\n")
                sys.stdout.flush()

        reading = asyncio.create_task(read())
        await stdin.read()
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)


def _figures(values: list[float]) -> dict[str, float]:
    return {"p50": round(statistics.median(values), 3), "p99": round(_pct(values, 0.99), 3)}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    async with _redis() as url:
        pops, ahead, size = await _pops(args, url)
    same = await _baseline(size, args.baseline)
    across = await _baseline_across(size, min(args.baseline, 1000), 0.002)
    pop, base_same, base_across = _figures(pops), _figures(same), _figures(across)
    return {
        "bench": "pop_latency", "agents_connected": args.agents, "calls": args.calls,
        "pops_received": len(pops), "store": "redis-server" if url else "in-process",
        "pop_bytes": size, "desks": "server's loop" if args.same_loop else "own process",
        "sim": "server's loop" if args.sim_in_process else "own process",
        "pop_ms": {**pop, "max": round(max(pops), 3)},
        # How long the pop had been on the desk when the PBX event that
        # rings the agent's phone arrived (the pop leaves with the routing
        # decision, before the Redirect to the phone): p50 and the least.
        "pop_ahead_of_ringing_ms": {"p50": round(statistics.median(ahead), 3),
                                    "min": round(min(ahead), 3), "calls": len(ahead)},
        # The bare aiohttp send-to-receive of a same-size message: the
        # client in the sending process, and in another process as the
        # desks (and browsers) are.
        "baseline_ms": {"same_process": base_same, "other_process": base_across},
        "ratio": {"p50": round(pop["p50"] / base_across["p50"], 2),
                  "p99": round(pop["p99"] / base_across["p99"], 2),
                  "p99_vs_same_process": round(pop["p99"] / base_same["p99"], 2)},
        "target": "p99 ratio <= 2",
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--gap", type=float, default=0.02, help="seconds between callers")
    parser.add_argument("--baseline", type=int, default=2000, help="baseline round trips")
    parser.add_argument("--same-loop", action="store_true",
                        help="run the desks on the server's event loop")
    parser.add_argument("--sim-in-process", action="store_true",
                        help="run the simulated PBX on the server's event loop")
    parser.add_argument("--desks-for", help=argparse.SUPPRESS)  # the child processes
    parser.add_argument("--sim-for", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--agi-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--receiver-for", help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    if parsed.desks_for:
        asyncio.run(_desks_child(parsed.desks_for))
        sys.exit(0)
    if parsed.receiver_for:
        asyncio.run(_receiver_child(parsed.receiver_for))
        sys.exit(0)
    if parsed.sim_for:
        asyncio.run(_sim_child(parsed.sim_for, parsed.agi_port))
        sys.exit(0)
    if not (1 <= parsed.agents <= 5000 and 1 <= parsed.calls <= parsed.agents
            and 1 <= parsed.baseline <= 100_000):
        parser.error("1 <= calls <= agents <= 5000, 1 <= baseline <= 100000")
    print(json.dumps(asyncio.run(main(parsed))))
