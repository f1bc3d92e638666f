"""`cti replay FILE`: run a recording of real Asterisk traffic through the
server's own translation and tracker, and print the calls it contained.

Every AMI message received in the recording goes through the same
`Translator` and `Tracker` as the live server, with the recording's own
timestamps as the clock. A recording made with several events-on sessions
carries each event once per session: a message identical to one another
connection already delivered is fed once.
"""

from __future__ import annotations

import json
import sys
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from cti.calls.model import CallEnded, CallRecord
from cti.calls.tracker import DialplanContexts, Tracker
from cti.pbx.recording import RecordingError, TimedMessage, ami_messages
from cti.pbx.translate import Translator

_DEDUP_WINDOW = 4096


def record_json(record: CallRecord) -> dict[str, object]:
    return {
        "call": record.call,
        "caller_number": record.caller_number,
        "caller_name": record.caller_name,
        "outcome": record.outcome.value,
        "agent": record.agent,
        "wait_ms": record.wait_ms,
        "talk_ms": record.talk_ms,
        "transfers": record.transfers,
    }


def _deduplicated(messages: Iterator[TimedMessage]) -> Iterator[TimedMessage]:
    recent: deque[tuple[tuple[tuple[str, str], ...], str]] = deque(maxlen=_DEDUP_WINDOW)
    seen: dict[tuple[tuple[str, str], ...], str] = {}
    for timed in messages:
        key = timed.message.pairs
        if timed.message.event is not None and timed.message.action_id is None:
            first = seen.get(key)
            if first is not None and first != timed.conn:
                continue
            if len(recent) == recent.maxlen:
                old_key, old_conn = recent[0]
                if seen.get(old_key) == old_conn:
                    del seen[old_key]
            recent.append((key, timed.conn))
            seen.setdefault(key, timed.conn)
        yield timed


def replay(path: Path, contexts: DialplanContexts | None = None) -> tuple[
    list[CallRecord], dict[str, object]
]:
    """Ended calls in the order they ended, and the summary."""
    translator = Translator()
    tracker = Tracker(contexts)
    ended: list[CallRecord] = []
    saw_ami = False
    for timed in _deduplicated(ami_messages(path)):
        saw_ami = True
        for event in translator.feed(timed.message, timed.ms / 1000.0):
            for change in tracker.apply(event):
                if isinstance(change, CallEnded):
                    ended.append(change.record)
    if not saw_ami:
        raise RecordingError(f"{path}: no AMI connection in this recording")
    summary: dict[str, object] = {
        "calls": len(ended),
        "events": translator.stats.events,
        "unknown_event_types": translator.unknown_types(),
    }
    return ended, summary


def run(path: Path, out: TextIO) -> int:
    """The `cti replay` command: exit 0, or 2 with a clear error."""
    try:
        ended, summary = replay(path)
    except RecordingError as exc:
        print(f"cti replay: {exc}", file=sys.stderr)
        return 2
    for record in ended:
        out.write(json.dumps(record_json(record)) + "\n")
    out.write(json.dumps({"summary": summary}) + "\n")
    return 0
