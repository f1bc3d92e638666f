"""Calls: the pure tracker that folds PBX events into live calls, and the
call model it keeps."""

from cti.calls.model import CallEnded, CallRecord, CallState, Outcome
from cti.calls.tracker import DialplanContexts, Tracker

__all__ = ["CallEnded", "CallRecord", "CallState", "DialplanContexts", "Outcome", "Tracker"]
