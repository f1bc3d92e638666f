"""Simulated Asterisk 22 for the demo, the integration tests and the
benchmarks: AMI over TCP, FastAGI client, simulated callers and phones."""

from cti.sim.server import Sim, SimSettings, start_sim

__all__ = ["Sim", "SimSettings", "start_sim"]
