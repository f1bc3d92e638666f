"""Benchmark: what the routing policy buys, in service outcomes.

The same seeded traffic (bench/routing_traffic.py: Poisson arrivals, 20%
VIP, two skills, exponential handle times and patience, ring-no-answers) is
run twice in a discrete-event simulation: under the routing engine with its
default policy (priority with aging, skills with relaxation and overflow,
best skill then longest idle), and under one first-come-first-served queue
with no skills and no priority. Prints one JSON object with, for each: VIP
and standard service level (answered within 20 s / offered), average wait
of answered calls, abandon rate, agent occupancy, and the share of calls
answered by an agent fully qualified for the line.
Target: VIP service level >= 95% while standard stays within 5 points of
the FIFO baseline.

    .venv/bin/python bench/routing_outcome.py [--seed 11] [--hours 72]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.routing_traffic import (
    Call,
    Dispatcher,
    FifoDispatcher,
    Outcome,
    RouterDispatcher,
    Traffic,
    services,
    simulate,
)
from cti.routing import Agent, Policy

THRESHOLD_S = 20.0


def kpis(calls: list[Call], outcome: Outcome, vip: bool | None, start: float) -> dict[str, float]:
    offered = [c for c in calls if c.arrival >= start and (vip is None or c.vip == vip)]
    answered = [outcome.waits[c.id] for c in offered if c.id in outcome.waits]
    fast = sum(wait <= THRESHOLD_S for wait in answered)
    matched = sum(outcome.matched[c.id] for c in offered if c.id in outcome.matched)
    return {
        "offered": len(offered),
        "service_level_20s": round(100.0 * fast / len(offered), 2),
        "avg_wait_answered_s": round(sum(answered) / len(answered), 2),
        "abandon_rate": round(100.0 * sum(c.id in outcome.abandoned for c in offered)
                              / len(offered), 2),
        "answered_by_qualified_agent": round(100.0 * matched / max(1, len(answered)), 2),
    }


def report(traffic: Traffic, dispatcher: Dispatcher, policy: Policy) -> dict[str, object]:
    def qualified(agent: Agent, call: Call) -> bool:
        needed = policy.services[call.service].skills
        return all(agent.skills.get(skill, 0) >= level for skill, level in needed.items())

    calls, outcome = simulate(traffic, dispatcher, qualified)
    start = traffic.warmup_hours * 3600.0
    return {
        "vip": kpis(calls, outcome, True, start),
        "standard": kpis(calls, outcome, False, start),
        "all": kpis(calls, outcome, None, start),
        "occupancy": round(100.0 * outcome.busy_s / outcome.staffed_s, 2),
    }


def main(seed: int, hours: float) -> dict[str, object]:
    traffic = replace(Traffic(), seed=seed, hours=hours)
    policy = Policy(services=services(traffic))
    router = report(traffic, RouterDispatcher(policy), policy)
    fifo = report(traffic, FifoDispatcher(), policy)
    vip, standard = router["vip"], router["standard"]
    fifo_standard = fifo["standard"]
    assert isinstance(vip, dict) and isinstance(standard, dict)
    assert isinstance(fifo_standard, dict)
    return {
        "benchmark": "routing_outcome",
        "traffic": {"seed": seed, "hours": hours, "calls_per_hour": traffic.calls_per_hour,
                    "vip_share": traffic.vip_share,
                    "agents": traffic.agents_both + traffic.agents_sales
                    + traffic.agents_support,
                    "handle_mean_s": traffic.handle_mean_s,
                    "patience_mean_s": traffic.patience_mean_s},
        "router": router,
        "fifo": fifo,
        "vip_service_level_target_met": vip["service_level_20s"] >= 95.0,
        "standard_points_vs_fifo": round(standard["service_level_20s"]
                                         - fifo_standard["service_level_20s"], 2),
        "standard_within_5_points": (fifo_standard["service_level_20s"]
                                     - standard["service_level_20s"]) <= 5.0,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--hours", type=float, default=72.0)
    args = parser.parse_args()
    print(json.dumps(main(args.seed, args.hours)))
