"""The comparison view of an AMI event stream, for checking the simulated
PBX against the real Asterisk 22 recordings.

Events are grouped by channel (names normalized to
`<exten>@<context>#<n>;<half>`, n = order of first appearance) and kept in
order inside each group: Asterisk's order across channels is not
deterministic (findings 1 and 18), the order of one channel's events is.
Each event keeps only the fields that say what happened (ids, times and
addresses aside).

What is left out, and why:
- `QueueMemberStatus` and `DeviceStateChange` of `Queue:*` devices: app_queue
  derives them from device states in its own thread, so their number and
  place vary between runs like the Local device states below.
- `DeviceStateChange` is compared per device by its final state only:
  Asterisk evaluates Local device states in its devstate thread after the
  fact, so their number and intermediate values vary between runs of the
  same call (06a reports 1006 NOT_INUSE while it rings; 07 gives
  0677777777 three NOT_INUSE).
- the values of the Dial timing variables (ANSWEREDTIME, RINGTIME...),
  which are durations.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from cti.pbx.recording import ami_messages
from cti.pbx.wire import AmiMessage

_LOCAL = re.compile(r"Local/([^@;,\s]+)@([^;,\s]+?)-([0-9a-f]{8});([12])")
_AGI_URL = re.compile(r"agi://[^/]+/")
TIMING_VARS = {
    "ANSWEREDTIME", "ANSWEREDTIME_MS", "DIALEDTIME", "DIALEDTIME_MS",
    "RINGTIME", "RINGTIME_MS", "PROGRESSTIME", "PROGRESSTIME_MS",
    # app_queue: hold/talk durations and their averages, the epoch of a
    # member's last call
    "QEHOLDTIME", "QUEUEWAIT", "QUEUEWAIT_MS", "QUEUEHOLDTIME", "QUEUETALKTIME",
    "MEMBERLASTCALL",
}
SESSION_EVENTS = {"FullyBooted", "SuccessfulAuth", "InvalidPassword", "RequestNotAllowed",
                  "RequestBadFormat", "Shutdown"}
FIELDS = {
    "Newchannel": ("ChannelState", "Context", "Exten"),
    "Newexten": ("Context", "Exten", "Priority", "Application", "AppData"),
    "Newstate": ("ChannelState",),
    "VarSet": ("Variable", "Value"),
    "NewCallerid": ("CallerIDNum",),
    "NewConnectedLine": (),
    "LocalBridge": ("LocalTwoChannel", "Context", "Exten"),
    "DialBegin": ("DestChannel", "DialString"),
    "DialState": ("DestChannel", "DialStatus"),
    "DialEnd": ("DestChannel", "DialStatus"),
    "BridgeEnter": ("BridgeNumChannels",),
    "BridgeLeave": ("BridgeNumChannels",),
    "BridgeCreate": (),
    "BridgeDestroy": (),
    "Hangup": ("Cause",),
    "HangupRequest": ("Cause",),
    "SoftHangupRequest": ("Cause",),
    "MusicOnHoldStart": ("Class",),
    "MusicOnHoldStop": (),
    "OriginateResponse": ("Response", "Channel", "Context", "Exten", "Application", "Data",
                          "Reason"),
    "ExtensionStatus": ("Status",),
    "DTMFBegin": ("Digit", "Direction"),
    "DTMFEnd": ("Digit", "Direction"),
    "AGIExecStart": ("Command",),
    "AGIExecEnd": ("Command", "ResultCode", "Result"),
    "ChanSpyStart": ("SpyeeChannel",),
    "ChanSpyStop": ("SpyeeChannel",),
    # attended transfer (recording 06b)
    "Hold": (),
    "BridgeMerge": (),
    "AttendedTransfer": ("Result", "OrigTransfererChannel", "SecondTransfererChannel",
                         "TransfereeChannel", "TransferTargetChannel", "IsExternal",
                         "DestType"),
    "FullyBooted": ("Status",),
    "SuccessfulAuth": ("AccountID",),
    "InvalidPassword": ("AccountID",),
    "RequestNotAllowed": ("RequestType",),
    "RequestBadFormat": ("RequestType",),
    # app_queue (recordings 04, 05); durations (HoldTime, TalkTime, RingTime)
    # are left out like the Dial timing variables
    "QueueCallerJoin": ("Queue", "Position", "Count"),
    "QueueCallerLeave": ("Queue", "Position", "Count"),
    "QueueCallerAbandon": ("Queue", "Position", "OriginalPosition"),
    "AgentCalled": ("DestChannel", "Queue", "Interface", "MemberName"),
    "AgentRingNoAnswer": ("DestChannel", "Queue", "Interface", "MemberName"),
    "AgentConnect": ("DestChannel", "Queue", "Interface", "MemberName"),
    "AgentComplete": ("DestChannel", "Queue", "Interface", "MemberName", "Reason"),
    "AgentDump": ("DestChannel", "Queue", "Interface", "MemberName"),
    "QueueMemberAdded": ("Queue", "Interface", "MemberName", "Penalty", "Paused"),
    "QueueMemberRemoved": ("Queue", "Interface", "MemberName"),
    "QueueMemberPause": ("Queue", "Interface", "MemberName", "Paused", "PausedReason"),
    "QueueMemberPenalty": ("Queue", "Interface", "Penalty"),
}
View = dict[str, list[tuple[str, ...]]]


class Names:
    """Normalizes Local channel names in order of first appearance."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], int] = {}

    def __call__(self, text: str) -> str:
        def replace(match: re.Match[str]) -> str:
            base = f"{match.group(1)}@{match.group(2)}"
            key = (base, match.group(3))
            if key not in self._seen:
                self._seen[key] = sum(1 for b, _ in self._seen if b == base)
            return f"{base}#{self._seen[key]};{match.group(4)}"

        return _LOCAL.sub(replace, text)


def view(messages: Iterable[AmiMessage]) -> View:
    names = Names()
    groups: View = {}
    devices: dict[str, str] = {}
    bridges: dict[str, int] = {}
    originates: dict[str, int] = {}
    for message in messages:
        event = message.event
        if event is None or event == "QueueMemberStatus":
            continue
        if event == "DeviceStateChange":
            device = message.get("Device") or ""
            if not device.startswith("Queue:"):
                devices[device] = message.get("State") or ""
            continue
        if event not in FIELDS and event != "UserEvent":
            raise AssertionError(f"event {event} has no comparison rule")
        if event == "OriginateResponse":
            # numbered in order: ActionIDs differ between runs
            originates.setdefault(message.action_id or "", len(originates))
            group = f"originate #{originates[message.action_id or '']}"
        else:
            group = _group(message, event, names, bridges)
        groups.setdefault(group, []).append(_entry(message, event, names))
    for device, state in devices.items():
        groups[f"device {device}"] = [("final", state)]
    return groups


def _group(message: AmiMessage, event: str, names: Names, bridges: dict[str, int]) -> str:
    if event in SESSION_EVENTS:
        return "ami session"
    if event == "ExtensionStatus":
        return f"hint {message.get('Exten')}"
    if event in ("BridgeCreate", "BridgeDestroy"):
        bridge = message.get("BridgeUniqueid") or ""
        bridges.setdefault(bridge, len(bridges))
        return f"bridge #{bridges[bridge]}"
    for key in ("Channel", "DestChannel", "LocalOneChannel", "SpyerChannel"):
        value = message.get(key)
        if value:
            return names(value)
    return "no channel"


def _entry(message: AmiMessage, event: str, names: Names) -> tuple[str, ...]:
    if event == "UserEvent":
        keys = [k for k, _ in message.pairs if k == "UserEvent" or k.startswith("Cti")
                or k in ("Seq",)]
    else:
        keys = list(FIELDS[event])
    values = []
    for key in keys:
        value = message.get(key)
        if value is None:
            continue
        if event == "VarSet" and key == "Value" and message.get("Variable") in TIMING_VARS:
            value = "<timing>" if value else ""
        if key == "AppData" and message.get("Application") == "AGI":
            value = _AGI_URL.sub("agi://<fastagi>/", value)
        values.append(f"{key}={names(value)}")
    return (event, *values)


def recording_view(path: Path, conn: str = "rec", until_ms: int | None = None) -> View:
    """The view of one connection of a recording, optionally cut at
    `until_ms` (to compare one part of a two-part scenario)."""
    return view(
        m.message
        for m in ami_messages(path)
        if m.conn == conn and (until_ms is None or m.ms < until_ms)
    )


def diff(expected: View, actual: View) -> list[str]:
    """Human-readable differences, group by group."""
    problems = []
    for group in sorted(set(expected) | set(actual)):
        want, got = expected.get(group, []), actual.get(group, [])
        if want == got:
            continue
        problems.append(f"== {group}")
        for index in range(max(len(want), len(got))):
            left = " ".join(want[index]) if index < len(want) else "-"
            right = " ".join(got[index]) if index < len(got) else "-"
            marker = "  " if left == right else "!!"
            problems.append(f"{marker} {left}\n   {right}" if marker == "!!" else f"   {left}")
    return problems
