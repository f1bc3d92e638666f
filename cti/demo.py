"""`cti demo`: the whole system on a laptop, in one process.

It starts the simulated PBX on loopback with a dozen agent phones and a
steady stream of callers (a share of them VIP customers), the server
connected to it exactly as `cti serve` connects to Asterisk, an in-process
store unless `CTI_REDIS_URL` is set, and demo data: customers with contact
history, agents with skills and levels. It prints the URLs to open; with
`--duration` it stops by itself and prints one JSON line of KPIs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

import structlog
import yaml

from cti.app import Server
from cti.auth import hash_password
from cti.center import Center, center_from
from cti.config import load_settings
from cti.customers.demo import demo_customers, load_demo, standard_numbers, vip_numbers
from cti.logs import configure_logging
from cti.serve import run_until_signalled
from cti.sim.population import demo_population
from cti.sim.server import SimSettings, start_sim
from cti.store.connection import open_store

log = structlog.get_logger(__name__)

# The demo's only password, printed at start: the demo listens on loopback.
DEMO_PASSWORD = "demo"  # noqa: S105
SUPPORT_DID = "0140000001"
SALES_DID = "0140000002"
SKILLS = ("support", "sales", "billing")
# What demo callers key in the main menu (dialplans/ivr/main.yaml), one
# entry drawn per caller: 1 sales, 2 then 1 support, 3 accounts, nothing
# (the menu's retries, then support).
IVR_DIGITS = ("1", "1", "21", "21", "3", "")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8080,
                        help="HTTP port of the pages (0: any free port; default 8080)")
    parser.add_argument("--agents", type=int, default=12, help="agents logged in (default 12)")
    parser.add_argument("--calls-per-hour", type=float, default=None,
                        help="simulated arrivals (default: about 90%% of the agents' capacity)")
    parser.add_argument("--vip-share", type=float, default=0.2,
                        help="share of callers who are VIP customers (default 0.2)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the simulation")
    parser.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                        help="stop after this many seconds and print the KPIs as JSON")
    parser.add_argument("--talk-seconds", type=float, default=20.0,
                        help="average talk time of the simulated agents (default 20)")


def demo_center(agents: int, seed: int, *, wrap_up: float = 3.0) -> Center:
    """Four services (two on their own numbers, two reached through the IVR),
    skills with levels, relaxation and overflow; every agent and the
    supervisor `sup` log in to the pages with the password DEMO_PASSWORD."""
    rng = random.Random(seed)
    password_hash = hash_password(DEMO_PASSWORD)  # one hash: a demo, not a site
    people = []
    for index in range(agents):
        agent_id = str(1001 + index)
        skills = {"support": rng.randint(3, 9)}
        if index % 3 != 2:
            skills["sales"] = rng.randint(2, 9)
        if index % 4 == 0:
            skills["billing"] = rng.randint(4, 9)
        people.append({"id": agent_id, "name": _NAMES[index % len(_NAMES)] + f" {agent_id}",
                       "device": f"Local/{agent_id}@sim-agent", "skills": skills,
                       "login_at_start": True, "password_hash": password_hash})
    return center_from({
        "supervisors": [{"id": "sup", "name": "Demo Supervisor",
                         "device": "Local/2001@sim-agent", "password_hash": password_hash}],
        "services": {
            "support": {
                "skills": {"support": 5}, "numbers": [SUPPORT_DID],
                "target": {"percent": 80, "seconds": 20}, "wrap_up_seconds": wrap_up,
                "ring_timeout_seconds": 10,
                "relaxation": [{"after": 15, "skill": "support", "any_level": True}],
            },
            "premium": {
                # the IVR sends recognised VIPs here (dialplans/ivr/main.yaml)
                "skills": {"support": 7}, "target": {"percent": 90, "seconds": 15},
                "wrap_up_seconds": wrap_up, "ring_timeout_seconds": 10,
                "relaxation": [{"after": 10, "skill": "support", "any_level": True}],
            },
            "accounts": {
                "skills": {"billing": 4}, "wrap_up_seconds": wrap_up,
                "ring_timeout_seconds": 10,
                "relaxation": [{"after": 20, "overflow": "support"}],
            },
            "sales": {
                "skills": {"sales": 5}, "numbers": [SALES_DID],
                "target": {"percent": 80, "seconds": 20}, "wrap_up_seconds": wrap_up,
                "ring_timeout_seconds": 10,
                "relaxation": [{"after": 15, "skill": "sales", "any_level": True},
                               {"after": 45, "overflow": "support"}],
            },
        },
        "agents": people,
        "default_service": "support",
    }, "demo center")


_NAMES = ("Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy",
          "Mallory", "Niaj", "Olivia", "Peggy", "Rupert", "Sybil", "Trent", "Victor", "Wendy")


def default_rate(agents: int, talk_seconds: float, wrap_up: float) -> float:
    """About 90% of what the agents can handle: busy enough that priority
    shows, not so much that everybody abandons."""
    per_call = talk_seconds + wrap_up + 4.0  # ring and redirect
    return round(0.9 * agents * 3600.0 / per_call)


def run(args: argparse.Namespace) -> int:
    problems = _check(args)
    if problems:
        for problem in problems:
            print(f"cti demo: {problem}", file=sys.stderr)
        return 2
    return asyncio.run(_run(args))


def _check(args: argparse.Namespace) -> list[str]:
    problems = []
    if not 1 <= args.agents <= 2000:
        problems.append(f"--agents {args.agents}: between 1 and 2000")
    if not 0 <= args.vip_share <= 1:
        problems.append(f"--vip-share {args.vip_share}: between 0 and 1")
    if args.calls_per_hour is not None and not 0 <= args.calls_per_hour <= 1_000_000:
        problems.append(f"--calls-per-hour {args.calls_per_hour}: between 0 and 1000000")
    if args.duration is not None and args.duration <= 0:
        problems.append(f"--duration {args.duration}: more than 0 seconds")
    if not 0 <= args.port <= 65535:
        problems.append(f"--port {args.port}: a TCP port (0 for any)")
    if not 1 <= args.talk_seconds <= 3600:
        problems.append(f"--talk-seconds {args.talk_seconds}: between 1 and 3600")
    return problems


async def _run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="cti-demo-") as workdir:
        return await _run_in(args, Path(workdir))


def _open_all_day(source: Path, workdir: Path) -> Path | None:
    """The IVR flows with every business-hours step open around the clock,
    so the demo routes calls whatever the time of day; None when there are
    no flows here (the calls then go to the default service)."""
    if not source.is_dir():
        log.warning("demo.no_ivr_flows", directory=str(source),
                    consequence="callers go straight to the default service")
        return None
    target = workdir / "ivr"
    target.mkdir()
    always = {"weekly": {"mon-sun": ["00:00-24:00"]}, "holidays": []}
    for path in sorted(source.glob("*.yaml")):
        flow = yaml.safe_load(path.read_text(encoding="utf-8"))
        for step in flow.get("steps", []) if isinstance(flow, dict) else []:
            if isinstance(step, dict) and step.get("type") == "hours":
                schedule = step.get("schedule") or {}
                step["schedule"] = {**schedule, **always}
        (target / path.name).write_text(yaml.safe_dump(flow, sort_keys=False),
                                        encoding="utf-8")
    return target


async def _run_in(args: argparse.Namespace, workdir: Path) -> int:
    wrap_up = 3.0
    rate = args.calls_per_hour
    if rate is None:
        rate = default_rate(args.agents, args.talk_seconds, wrap_up)
    customers = demo_customers(max(40, args.agents * 3), args.seed)
    secret = secrets.token_urlsafe(16)
    population = demo_population(
        args.agents, seed=args.seed, calls_per_hour=rate, vip_share=args.vip_share,
        vip_numbers=tuple(vip_numbers(customers)),
        standard_numbers=tuple(standard_numbers(customers)), talk_s=args.talk_seconds,
        dids=(SUPPORT_DID, SALES_DID), digits=IVR_DIGITS,
    )
    env = {key: value for key, value in os.environ.items() if key.startswith("CTI_")}
    # The callers go through the server's IVR (dialplans/ivr/main.yaml) as
    # [cti-inbound] of dialplans/cti.conf does on Asterisk.
    agi_port = env.get("CTI_AGI_PORT") or str(_free_port(avoid=args.port))
    env["CTI_AGI_PORT"] = agi_port
    sim = await start_sim(SimSettings(port=0, secret=secret, seed=args.seed,
                                      population=population, inbound_agi=True,
                                      agi_url=f"agi://127.0.0.1:{agi_port}"))
    flows = _open_all_day(Path(env.get("CTI_CENTER_FLOWS", "dialplans/ivr")), workdir)
    if flows is not None:
        env["CTI_CENTER_FLOWS"] = str(flows)
    env.update({"CTI_AMI_HOST": "127.0.0.1", "CTI_AMI_PORT": str(sim.port),
                "CTI_AMI_SECRET": secret, "CTI_HTTP_PORT": str(args.port or _free_port()),
                "CTI_AMI_PING_INTERVAL": "5"})
    settings = load_settings(None, env)
    configure_logging(settings.log.format, settings.log.level)
    center = demo_center(args.agents, args.seed, wrap_up=wrap_up)
    url = settings.redis.url.get_secret_value() if settings.redis.url else None
    store = await open_store(url)
    try:
        await load_demo(store, customers)
        server = Server(settings, center, store, vip_lookup="directory")
        stop = asyncio.Event()
        if args.duration is not None:
            asyncio.get_running_loop().call_later(args.duration, stop.set)
        await run_until_signalled(server, stop,
                                  on_started=lambda: _announce(server, sim.port, args, rate))
        if args.duration is not None:
            print(json.dumps(_closing(server, args, rate)), flush=True)
    finally:
        await sim.close()
        await store.close()
    return 0


def _free_port(avoid: int = 0) -> int:
    """A free loopback port, never `avoid` (the HTTP port asked for, which
    the kernel may hand out again while nothing listens on it yet)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port != avoid:
            return port


def _announce(server: Server, ami_port: int, args: argparse.Namespace, rate: float) -> None:
    base = f"http://127.0.0.1:{server.http_port}"
    lines = [
        "cti demo is running (Ctrl-C to stop)",
        f"  agents: {args.agents} logged in, callers: {rate:g}/hour, VIP share {args.vip_share:g}",
        f"  simulated Asterisk AMI on 127.0.0.1:{ami_port}",
        f"  agent desk: {base}/agent       (user 1001 to {1000 + args.agents}, "
        f"password {DEMO_PASSWORD})",
        f"  wallboard:  {base}/supervisor  (user sup, password {DEMO_PASSWORD})",
        f"  readiness:  {base}/readyz",
        f"  metrics:    {base}/metrics",
    ]
    print("\n".join(lines), file=sys.stderr, flush=True)


def _closing(server: Server, args: argparse.Namespace, rate: float) -> dict[str, Any]:
    summary = server.stats.summary()
    # Calls still waiting or talking when the run stopped: offered, not
    # yet answered or abandoned (the per-group figures are of ended calls).
    live = list(server.switchboard.tasks.values())
    return {"demo": {"duration_s": args.duration, "agents": args.agents,
                     "calls_per_hour": rate, "vip_share": args.vip_share, "seed": args.seed},
            **summary,
            "in_progress": {"vip": sum(1 for info in live if info.vip),
                            "standard": sum(1 for info in live if not info.vip)}}
