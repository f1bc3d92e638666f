"""Prometheus view of the wallboard KPIs per service, read at scrape time:
the same figures as the page, with a `window` label (interval, today, hour)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from cti.wallboard.floor import Floor

_FIGURES = (("offered", "cti_kpi_offered", "Calls offered (entered the queue)"),
            ("answered", "cti_kpi_answered", "Calls answered"),
            ("abandoned", "cti_kpi_abandoned", "Calls abandoned after the short threshold"),
            ("short_abandoned", "cti_kpi_short_abandoned", "Calls abandoned before it"),
            ("service_level", "cti_kpi_service_level", "Answered in target / (answered + "
             "abandoned), 0..1"),
            ("asa_s", "cti_kpi_asa_seconds", "Average speed of answer"),
            ("aht_s", "cti_kpi_aht_seconds", "Average handle time (talk + hold + wrap-up)"),
            ("abandon_rate", "cti_kpi_abandon_rate", "Abandoned / (answered + abandoned)"))


class KpiCollector(Collector):
    def __init__(self, floor: Floor, clock: Any) -> None:
        self._floor = floor
        self._clock = clock

    def collect(self) -> Iterator[Any]:
        board = self._floor.board()
        now = self._clock()
        families = {key: GaugeMetricFamily(name, text, labels=["service", "window"])
                    for key, name, text in _FIGURES}
        waiting = GaugeMetricFamily("cti_kpi_waiting", "Calls waiting", labels=["service"])
        longest = GaugeMetricFamily("cti_kpi_longest_wait_seconds", "Longest current wait",
                                    labels=["service"])
        occupancy = GaugeMetricFamily("cti_kpi_occupancy", "Agent occupancy today, 0..1",
                                      labels=["service"])
        callbacks = GaugeMetricFamily("cti_kpi_callbacks_pending", "Callbacks pending",
                                      labels=["service"])
        rows = [(s["name"], s) for s in board["services"]] + [("all", board["overall"])]
        for service, row in rows:
            for window in ("interval", "today", "hour"):
                for key, family in families.items():
                    value = row[window][key]
                    if value is not None:
                        family.add_metric([service, window], float(value))
            waiting.add_metric([service], float(row["waiting"]))
            oldest = row["oldest_queued_at"]
            longest.add_metric([service], 0.0 if oldest is None else max(0.0, now - oldest))
            if row["occupancy"] is not None:
                occupancy.add_metric([service], float(row["occupancy"]))
            callbacks.add_metric([service], float(row["callbacks_pending"]))
        yield from families.values()
        yield from (waiting, longest, occupancy, callbacks)
