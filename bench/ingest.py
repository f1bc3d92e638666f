"""Benchmark: AMI ingest rate of the server's pipeline against bare panoramisk.

A loopback AMI server plays a large stream made of the recordings' real
events (bench/ami_stream.py). Measured in the same run, alternately:
- bare: panoramisk's Manager with a no-op '*' handler (its receive rate);
- cti: the server's AmiLink (panoramisk underneath) feeding the Translator
  and the call Tracker, as `cti serve` does.
Prints one JSON object: events/s of each (median of the runs) and the
ratio cti/bare. Target: ratio >= 0.5.

    .venv/bin/python bench/ingest.py [--copies 300] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from panoramisk import Manager

from bench.ami_stream import StreamServer, build_stream
from cti.calls.model import CallEnded
from cti.calls.tracker import Tracker
from cti.logs import configure_logging
from cti.pbx import events as ev
from cti.pbx.link import AmiLink


async def bare_run(port: int, events: int) -> float:
    done = asyncio.get_running_loop().create_future()
    count = 0
    start = 0.0

    def on_event(manager: Manager, message: object) -> None:
        nonlocal count, start
        count += 1
        if count == 1:
            start = time.perf_counter()
        if getattr(message, "UserEvent", "") == "BenchEnd" and not done.done():
            done.set_result(time.perf_counter())

    manager = Manager(host="127.0.0.1", port=port, username="bench", secret="bench",
                      ping_delay=3600, ping_interval=3600, reconnect_timeout=3600)
    manager.register_event("*", on_event)
    manager.connect()
    end = await asyncio.wait_for(done, 600)
    manager.close()
    return events / (end - start)


async def cti_run(port: int, events: int) -> tuple[float, int]:
    done = asyncio.get_running_loop().create_future()
    tracker = Tracker()
    ended = 0
    count = 0
    start = 0.0

    def on_event(event: ev.PbxEvent) -> None:
        nonlocal ended, count, start
        count += 1
        if count == 1:
            start = time.perf_counter()
        if isinstance(event, ev.UserEventReceived) and event.name == "BenchEnd":
            if not done.done():
                done.set_result(time.perf_counter())
            return
        for change in tracker.apply(event):
            if isinstance(change, CallEnded):
                ended += 1

    link = AmiLink("127.0.0.1", port, "bench", "bench", subscriber=on_event,
                   ping_interval=3600.0)
    await link.start()
    end = await asyncio.wait_for(done, 600)
    await link.close()
    return events / (end - start), ended


async def main(copies: int, runs: int) -> dict[str, object]:
    stream, events = build_stream(copies)
    server = StreamServer(stream)
    await server.start()
    bare: list[float] = []
    cti: list[float] = []
    calls = 0
    try:
        for _ in range(runs):
            bare.append(await bare_run(server.port, events))
            rate, calls = await cti_run(server.port, events)
            cti.append(rate)
    finally:
        await server.close()
    bare_median = statistics.median(bare)
    cti_median = statistics.median(cti)
    return {
        "benchmark": "ingest",
        "events": events,
        "calls_tracked_per_run": calls,
        "runs": runs,
        "cti_events_per_s": round(cti_median),
        "bare_panoramisk_events_per_s": round(bare_median),
        "ratio": round(cti_median / bare_median, 3),
        "target_ratio": 0.5,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=300)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    configure_logging("json", "warning")
    print(json.dumps(asyncio.run(main(args.copies, args.runs))))
