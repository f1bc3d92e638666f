"""`cti sim`: run the simulated PBX in the foreground until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from dataclasses import replace

from cti.sim.population import Population, Traffic, demo_population
from cti.sim.server import SimSettings, start_sim


def parser() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(prog="cti sim",
                                      description="Simulated Asterisk 22 (AMI + FastAGI)")
    add_arguments(options)
    return options


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `cti sim` (also added to the `cti` subcommand)."""
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
    p.add_argument("--standard-number", action="append", default=[],
                   help="number a standard caller calls from (repeatable; default: random)")
    p.add_argument("--patience", type=float, nargs=2, default=None, metavar=("MIN_S", "MAX_S"),
                   help="caller patience range (default 30 180, with --agents 40 240)")
    p.add_argument("--digits", action="append", default=[],
                   help="digits a generated caller may key (repeatable)")
    p.add_argument("--agents", type=int, default=0,
                   help="a demo floor of N agent phones 1001.. instead of the recordings' ones")
    p.add_argument("--talk", type=float, default=90.0, metavar="S",
                   help="mean talk time of the demo agents (with --agents)")
    p.add_argument("--inbound-agi", action="store_true",
                   help="cti-inbound runs the server's IVR over FastAGI (dialplans/cti.conf)")
    p.add_argument("--default-service", default="support",
                   help="CTI_DEFAULT_SERVICE: service of calls the IVR did not classify")


def settings_from(args: argparse.Namespace) -> SimSettings:
    """The settings the options describe; ValueError names a bad combination."""
    vip_numbers = tuple(args.vip_number) or Traffic().vip_numbers
    digits = tuple(args.digits) or ("",)
    if args.agents:
        population = demo_population(
            args.agents, seed=args.seed, calls_per_hour=args.calls_per_hour,
            vip_share=args.vip_share, vip_numbers=vip_numbers,
            standard_numbers=tuple(args.standard_number), vip_did=args.vip_did,
            patience_s=tuple(args.patience or (40.0, 240.0)), talk_s=args.talk,
            dids=(args.did,), digits=digits,
        )
    else:
        traffic = Traffic(
            rate_per_hour=args.calls_per_hour, did=args.did, vip_share=args.vip_share,
            vip_numbers=vip_numbers, vip_did=args.vip_did,
            patience_s=tuple(args.patience or (30.0, 180.0)), digits=digits,
            standard_numbers=tuple(args.standard_number),
        )
        population = replace(Population(), traffic=traffic, seed=args.seed)
    return SimSettings(host=args.host, port=args.port, username=args.username,
                       secret=args.secret, speed=args.speed, seed=args.seed, agi_url=args.agi,
                       agent_interface=args.agent_interface, population=population,
                       inbound_agi=args.inbound_agi, default_service=args.default_service)


async def serve(settings: SimSettings, stop: asyncio.Event) -> None:
    sim = await start_sim(settings)
    print(f"cti sim: AMI on {settings.host}:{sim.port}, speed x{settings.speed}", flush=True)
    try:
        await stop.wait()
    finally:
        await sim.close()


def run(args: argparse.Namespace) -> int:
    """Run until SIGINT/SIGTERM; 2 when the options do not make a PBX."""
    try:
        settings = settings_from(args)
    except ValueError as exc:
        print(f"cti sim: {exc}", file=sys.stderr)
        return 2

    async def foreground() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await serve(settings, stop)

    asyncio.run(foreground())
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(parser().parse_args(argv))
