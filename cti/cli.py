"""The `cti` command line: one argparse subcommand per job, listed in
`SUBCOMMANDS`.

A subcommand is a `Subcommand(help, arguments, run)`: `arguments` adds its
options to its parser, `run` gets the parsed namespace and returns the exit
code. `run` imports the feature it drives inside its body, so `cti --help`
and `cti check-config` never load the server, and one feature's import
error cannot break the others. Exit codes: 0 done, 2 usage or input error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cti import __version__
from cti.config import ConfigError, load_settings
from cti.logs import configure_logging


@dataclass(frozen=True, slots=True)
class Subcommand:
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _check_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file", nargs="?", type=Path, metavar="FILE",
        help="TOML settings file (optional: without it, defaults and CTI_* variables)",
    )


def _check_config(args: argparse.Namespace) -> int:
    path: Path | None = args.file
    try:
        settings = load_settings(path)
    except ConfigError as exc:
        for key, reason in exc.problems:
            print(f"{key}: {reason}", file=sys.stderr)
        return 2
    source = f"{path} and the environment" if path else "defaults and the environment"
    print(f"configuration OK ({source})")
    for line in settings.summary():
        print(f"  {line}")
    return 0


def _replay_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, metavar="FILE",
                        help="a recording of Asterisk traffic (tests/fixtures/asterisk-22/*.txt)")


def _replay(args: argparse.Namespace) -> int:
    from cti.replay import run  # noqa: PLC0415 (the CLI loads even without it)

    return run(args.file, sys.stdout)


def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="TOML settings file (CTI_* variables override it)")


def _serve(args: argparse.Namespace) -> int:
    from cti.serve import main as serve  # noqa: PLC0415

    return serve(args.config)


def _sim_arguments(parser: argparse.ArgumentParser) -> None:
    from cti.sim.cli import add_arguments  # noqa: PLC0415

    add_arguments(parser)


def _sim(args: argparse.Namespace) -> int:
    from cti.sim.cli import run  # noqa: PLC0415

    return run(args)


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    from cti.demo import add_arguments  # noqa: PLC0415

    add_arguments(parser)


def _demo(args: argparse.Namespace) -> int:
    from cti.demo import run  # noqa: PLC0415

    return run(args)


def _hash_password_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stdin", action="store_true",
                        help="read the password from the first line of stdin (no prompt)")


def _hash_password(args: argparse.Namespace) -> int:
    import getpass  # noqa: PLC0415

    from cti.auth import AuthError, hash_password  # noqa: PLC0415

    if args.stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("the two passwords differ", file=sys.stderr)
            return 2
    try:
        print(hash_password(password))
    except AuthError as exc:
        print(f"password: {exc.reason}", file=sys.stderr)
        return 2
    return 0



def _customers_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="customers_action", metavar="ACTION", required=True)
    load = actions.add_parser("import", help="load customers from CSV or JSON lines",
                              description="Load customers from CSV or JSON lines into Redis "
                              "(CTI_REDIS_URL); each rejected row is reported with its row, "
                              "field and reason, and writes nothing.")
    load.add_argument("file", type=Path, metavar="FILE")
    load.add_argument("--config", type=Path, metavar="FILE",
                      help="TOML settings file (CTI_* variables override it)")
    load.add_argument("--format", choices=("csv", "jsonl"), default=None,
                      help="the file's format (default: from its suffix or first byte)")


def _customers(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415

    from cti.customers import CustomerStore, ImportRefused, import_file  # noqa: PLC0415
    from cti.store.connection import open_store  # noqa: PLC0415

    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        for key, reason in exc.problems:
            print(f"{key}: {reason}", file=sys.stderr)
        return 2
    if settings.redis.url is None:
        print("redis.url: not set; point CTI_REDIS_URL at the Redis to import into",
              file=sys.stderr)
        return 2
    bar = sys.stderr.isatty()

    def progress(p: Any) -> None:
        if bar:
            share = p.bytes_read / p.total_bytes if p.total_bytes else 1.0
            filled = int(share * 30)
            print(f"\r[{'#' * filled}{'.' * (30 - filled)}] {share:4.0%} {p.rows} rows, "
                  f"{p.imported} imported, {p.rejected} rejected", end="", file=sys.stderr,
                  flush=True)

    def report(row: Any) -> None:
        print(("\n" if bar else "") + str(row), file=sys.stderr)

    async def run() -> Any:
        store = await open_store(settings.redis.url.get_secret_value()
                                 if settings.redis.url else None)
        try:
            customers = CustomerStore(store.redis, region=settings.numbers.default_region)
            return await import_file(args.file, customers,
                                     region=settings.numbers.default_region, report=report,
                                     progress=progress, every=500, file_format=args.format)
        finally:
            await store.close()

    try:
        summary = asyncio.run(run())
    except ImportRefused as exc:
        print(f"\n{args.file}: {exc}" if bar else f"{args.file}: {exc}", file=sys.stderr)
        return 2
    if bar:
        print(file=sys.stderr)
    print(f"{summary.read} rows read, {summary.imported} imported, "
          f"{summary.rejected} rejected")
    return 0 if summary.rejected == 0 else 1

SUBCOMMANDS: dict[str, Subcommand] = {
    "hash-password": Subcommand(
        help="print the password_hash of a password, for the center file",
        arguments=_hash_password_arguments,
        run=_hash_password,
    ),
    "customers": Subcommand(
        help="customer directory: `cti customers import FILE` (CSV or JSON lines)",
        arguments=_customers_arguments,
        run=_customers,
    ),
    "serve": Subcommand(
        help="run the server: AMI link, routing, FastAGI, HTTP (until SIGTERM)",
        arguments=_serve_arguments,
        run=_serve,
    ),
    "sim": Subcommand(
        help="run the simulated Asterisk 22 (AMI and FastAGI client) in the foreground",
        arguments=_sim_arguments,
        run=_sim,
    ),
    "demo": Subcommand(
        help="simulated PBX + server + demo data + simulated callers, in one process",
        arguments=_demo_arguments,
        run=_demo,
    ),
    "check-config": Subcommand(
        help="validate the settings (file and CTI_* variables); secrets are masked",
        arguments=_check_config_arguments,
        run=_check_config,
    ),
    "replay": Subcommand(
        help="replay a recording through the tracker; one JSON line per ended call",
        arguments=_replay_arguments,
        run=_replay,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cti", description="Contact-center server for Asterisk."
    )
    parser.add_argument("--version", action="version", version=f"cti {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, subcommand in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=subcommand.help, description=subcommand.help)
        subcommand.arguments(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version, usage errors
        code = exit_.code
        return code if isinstance(code, int) else 0 if code is None else 2
    if args.command is None:
        parser.print_usage(sys.stderr)
        return 2
    # Logs go to stderr from the start, so that nothing a library logs can
    # mix into a command's output on stdout; a command that loads settings
    # reconfigures them from `log.format` and `log.level`.
    configure_logging("auto", "warning")
    try:
        return SUBCOMMANDS[args.command].run(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `cti replay FILE | head`: the reader left; say nothing more.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
