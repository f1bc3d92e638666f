"""`cti sim`: run the simulated PBX in the foreground until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from dataclasses import replace

from cti.sim.population import Population, Traffic
from cti.sim.server import SimSettings, start_sim


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cti sim", description="Simulated Asterisk 22 (AMI + FastAGI)")
    p.add_argument("--host", default="127.0.0.1", help="AMI listen address")
    p.add_argument("--port", type=int, default=5038, help="AMI port (0 = any free port)")
    p.add_argument("--username", default="cti")
    p.add_argument("--secret", default="cti-secret")
    p.add_argument("--speed", type=float, default=1.0, help="time scale (10 = 10x faster)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--agi", default="agi://127.0.0.1:4573", help="FastAGI server of the IVR")
    p.add_argument("--agent-interface", default="Local/{exten}@sim-agent",
                   help="dial string cti-connect uses for an agent extension")
    p.add_argument("--calls-per-hour", type=float, default=0.0,
                   help="generated inbound callers (Poisson arrivals), 0 = none")
    p.add_argument("--did", default="0140000001")
    p.add_argument("--vip-share", type=float, default=0.0)
    p.add_argument("--vip-number", action="append", default=[])
    p.add_argument("--vip-did", default=None)
    p.add_argument("--patience", type=float, nargs=2, default=(30.0, 180.0),
                   metavar=("MIN_S", "MAX_S"))
    p.add_argument("--digits", action="append", default=[],
                   help="digits a generated caller may key (repeatable)")
    return p


def settings_from(args: argparse.Namespace) -> SimSettings:
    traffic = Traffic(
        rate_per_hour=args.calls_per_hour, did=args.did, vip_share=args.vip_share,
        vip_numbers=tuple(args.vip_number) or Traffic().vip_numbers, vip_did=args.vip_did,
        patience_s=(args.patience[0], args.patience[1]), digits=tuple(args.digits) or ("",),
    )
    population = replace(Population(), traffic=traffic, seed=args.seed)
    return SimSettings(host=args.host, port=args.port, username=args.username,
                       secret=args.secret, speed=args.speed, seed=args.seed, agi_url=args.agi,
                       agent_interface=args.agent_interface, population=population)


async def serve(settings: SimSettings, stop: asyncio.Event) -> None:
    sim = await start_sim(settings)
    print(f"cti sim: AMI on {settings.host}:{sim.port}, speed x{settings.speed}", flush=True)
    try:
        await stop.wait()
    finally:
        await sim.close()


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = settings_from(args)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await serve(settings, stop)

    asyncio.run(run())
    return 0
