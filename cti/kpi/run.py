"""The closing figures of a run (the demo's JSON line, load tests): calls
offered, answered and abandoned, and for VIP and standard callers apart the
average and 90th percentile wait to answer and the service level.

Definitions: a call is *offered* once it was routed (it became a task);
*answered* once bridged with an agent; *abandoned* when the caller hung up
before that. Wait is from the first entry into waiting to the first bridge
(answered calls only). Service level = answered within `sl_seconds` /
offered. Pure: fed with ended calls, no clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from cti.calls.model import CallRecord, Outcome


@dataclass(slots=True)
class _Group:
    offered: int = 0
    answered: int = 0
    abandoned: int = 0
    within: int = 0
    waits_ms: list[int] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        waits = sorted(self.waits_ms)
        return {
            "offered": self.offered,
            "answered": self.answered,
            "abandoned": self.abandoned,
            "avg_wait_ms": round(sum(waits) / len(waits)) if waits else None,
            "p90_wait_ms": percentile(waits, 90),
            "service_level": round(self.within / self.offered, 3) if self.offered else None,
        }


def percentile(sorted_values: list[int], pct: float) -> int | None:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


class RunStats:
    def __init__(self, sl_seconds: float = 20.0) -> None:
        self.sl_ms = sl_seconds * 1000
        self.groups = {"vip": _Group(), "standard": _Group()}

    def add(self, record: CallRecord, vip: bool) -> None:
        group = self.groups["vip" if vip else "standard"]
        group.offered += 1
        if record.outcome is Outcome.ANSWERED:
            group.answered += 1
            if record.wait_ms is not None:
                group.waits_ms.append(record.wait_ms)
                if record.wait_ms <= self.sl_ms:
                    group.within += 1
        elif record.outcome is Outcome.ABANDONED:
            group.abandoned += 1

    def summary(self) -> dict[str, object]:
        vip, standard = self.groups["vip"], self.groups["standard"]
        return {
            "offered": vip.offered + standard.offered,
            "answered": vip.answered + standard.answered,
            "abandoned": vip.abandoned + standard.abandoned,
            "service_level_seconds": self.sl_ms / 1000,
            "vip": vip.summary(),
            "standard": standard.summary(),
        }
