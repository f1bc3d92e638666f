"""IVR flows: declarative YAML flows (dialplans/ivr/*.yaml), validated at
load, interpreted by a pure step machine and run over FastAGI."""

from cti.hours import Schedule
from cti.ivr.flows.directory import Customer, CustomerDirectory, MemoryDirectory
from cti.ivr.flows.interpreter import advance, begin
from cti.ivr.flows.loader import (
    FlowError,
    FlowLibrary,
    FlowProblem,
    FlowVersion,
    ReloadReport,
    load_flow,
    parse_flow,
    sound_catalogue,
)
from cti.ivr.flows.models import Flow
from cti.ivr.flows.runner import IvrRunner, OutcomeSink, ivr_routes
from cti.ivr.flows.state import CallState, Choice, Ending, EndKind, IvrOutcome, Transition

__all__ = [
    "CallState",
    "Choice",
    "Customer",
    "CustomerDirectory",
    "EndKind",
    "Ending",
    "Flow",
    "FlowError",
    "FlowLibrary",
    "FlowProblem",
    "FlowVersion",
    "IvrOutcome",
    "IvrRunner",
    "MemoryDirectory",
    "OutcomeSink",
    "ReloadReport",
    "Schedule",
    "Transition",
    "advance",
    "begin",
    "ivr_routes",
    "load_flow",
    "parse_flow",
    "sound_catalogue",
]
