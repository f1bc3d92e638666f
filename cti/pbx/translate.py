"""Translation of raw AMI messages into typed PBX events.

This is the one place that knows AMI event and field names. A `Translator`
takes every message received from Asterisk (events, responses, list items),
returns the typed events it means, counts event types it does not know, and
groups the items of a `CoreShowChannels` list into one snapshot event. A
malformed message never raises out of `feed`: it is counted and skipped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from cti.pbx import events as ev
from cti.pbx.wire import AmiMessage

log = structlog.get_logger(__name__)

# Variables the CTI server reads from the dialplan; VarSet of anything else
# is known traffic that the tracker does not need (VarSet is the most
# frequent event Asterisk sends: 670 of 2,400 in the recordings). CTI_* are
# ours: the IVR hands a call to routing with CTI_SERVICE and CTI_PRIORITY.
VARIABLE_PREFIXES = ("AGISTATUS", "DIALSTATUS", "QUEUESTATUS", "CTI_")

# Event types seen from Asterisk 22 that carry nothing the server uses.
IGNORED_EVENTS = frozenset(
    {
        "NewConnectedLine", "DialState", "BridgeCreate", "BridgeDestroy", "BridgeMerge",
        "BridgeInfoChannel", "BridgeInfoComplete", "BridgeListItem", "BridgeListComplete",
        "SuccessfulAuth", "InvalidPassword", "ChallengeSent", "ChallengeResponseFailed",
        "RequestNotAllowed", "RequestBadFormat", "FailedACL", "InvalidAccountID",
        "UnexpectedAddress", "SessionLimit", "MemoryLimit", "LoadAverageLimit",
        "AuthMethodNotAllowed", "Reload", "Registry", "PeerStatus", "ContactStatus",
        "DTMFBegin", "DTMFEnd", "AGIExecEnd", "AsyncAGIStart", "AsyncAGIExec", "AsyncAGIEnd",
        "NewAccountCode", "RTCPSent", "RTCPReceived", "Cdr", "CEL", "ChanSpyStart",
        "ChanSpyStop", "QueueParams", "QueueEntry", "QueueSummary", "QueueSummaryComplete",
        "QueueStatusComplete", "StatusComplete", "CoreShowChannelMapComplete",
        "DeviceStateListComplete", "ExtensionStateListComplete", "Agents", "AgentsComplete",
        "AgentLogin", "AgentLogoff", "VarSetComplete", "MixMonitorStart", "MixMonitorStop",
        "MusicOnHold", "ConfbridgeJoin", "ConfbridgeLeave", "ConfbridgeStart", "ConfbridgeEnd",
        "ConfbridgeTalking", "LocalOptimizationEnd", "Pickup", "Rename", "Masquerade",
        "DNDState", "AOC-D", "AOC-E", "AOC-S", "FAXStatus", "ReceiveFAX", "SendFAX",
        "UserEventComplete", "DAHDIChannel", "Alarm",
        "AlarmClear", "SpanAlarm", "SpanAlarmClear", "MeetmeJoin", "MeetmeLeave",
        "Flash", "Wink", "ParkedCall", "ParkedCallGiveUp",
        "ParkedCallTimeOut", "UnParkedCall", "ParkedCallSwap", "Parkinglot", "Parkinglots",
        "ParkinglotsComplete", "PresenceStateChange", "PresenceStatus", "PresenceStateListComplete",
        "EndpointList", "EndpointListComplete", "ContactList",
        "ContactListComplete", "AorList", "AorListComplete", "AuthList", "AuthListComplete",
        "IdentifyDetail", "EndpointDetail", "EndpointDetailComplete", "ContactStatusDetail",
        "AorDetail", "AuthDetail", "TransportDetail", "ModuleLoadReport",
    }
)


class MalformedMessage(ValueError):
    """A message lacks a field its type requires, or a number is not one."""


def _none_if_unknown(value: str | None) -> str | None:
    if value is None or value in ("", "<unknown>", "(null)"):
        return None
    return value


def _int(message: AmiMessage, key: str, default: int | None = None) -> int:
    raw = message.get(key)
    if raw is None or raw == "":
        if default is None:
            raise MalformedMessage(f"{message.event}: missing {key}")
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise MalformedMessage(f"{message.event}: {key} is not a number: {raw!r}") from exc


def _opt_int(message: AmiMessage, key: str) -> int | None:
    raw = message.get(key)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise MalformedMessage(f"{message.event}: {key} is not a number: {raw!r}") from exc


def _required(message: AmiMessage, key: str) -> str:
    value = message.get(key)
    if value is None:
        raise MalformedMessage(f"{message.event}: missing {key}")
    return value


def channel_info(message: AmiMessage, prefix: str = "") -> ev.ChannelInfo:
    """The channel snapshot Asterisk repeats in channel events, optionally
    under a prefix (`Dest`, `LocalOne`, `OrigTransferer`...)."""
    uniqueid = _required(message, prefix + "Uniqueid")
    return ev.ChannelInfo(
        uniqueid=uniqueid,
        linkedid=message.get(prefix + "Linkedid") or uniqueid,
        name=_required(message, prefix + "Channel"),
        state=_int(message, prefix + "ChannelState", 0),
        caller_number=_none_if_unknown(message.get(prefix + "CallerIDNum")),
        caller_name=_none_if_unknown(message.get(prefix + "CallerIDName")),
        context=message.get(prefix + "Context") or "",
        exten=message.get(prefix + "Exten") or "",
    )


def _optional_channel(message: AmiMessage, prefix: str = "") -> ev.ChannelInfo | None:
    if message.get(prefix + "Uniqueid") is None or message.get(prefix + "Channel") is None:
        return None
    return channel_info(message, prefix)


def _yes(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "yes", "true", "on")


def _member(message: AmiMessage, at: float, removed: bool = False) -> ev.QueueMemberChanged:
    # QueueMember list items say Name/Location where the events say
    # MemberName/Interface.
    interface = message.get("Interface") or message.get("Location")
    if interface is None:
        raise MalformedMessage(f"{message.event}: missing Interface")
    return ev.QueueMemberChanged(
        at=at,
        queue=_required(message, "Queue"),
        interface=interface,
        member_name=message.get("MemberName") or message.get("Name") or interface,
        status=_int(message, "Status", 0),
        paused=_yes(message.get("Paused")),
        pause_reason=message.get("PausedReason") or "",
        penalty=_int(message, "Penalty", 0),
        in_call=_yes(message.get("InCall")),
        removed=removed,
    )


def _queue_agent(kind: ev.QueueAgentKind, message: AmiMessage, at: float
                 ) -> ev.QueueAgentEvent:
    ring = _opt_int(message, "RingTime")
    hold = _opt_int(message, "HoldTime")
    talk = _opt_int(message, "TalkTime")
    # Units differ (finding 6): AgentRingNoAnswer RingTime is in ms, the
    # other times are whole seconds.
    ring_ms = ring if kind is ev.QueueAgentKind.RING_NO_ANSWER \
        else (None if ring is None else ring * 1000)
    return ev.QueueAgentEvent(
        at=at,
        kind=kind,
        queue=_required(message, "Queue"),
        interface=_required(message, "Interface"),
        member_name=message.get("MemberName") or "",
        # AgentComplete may carry no channel fields at all (finding 8).
        caller=message.get("Uniqueid"),
        dest=message.get("DestUniqueid"),
        ring_ms=ring_ms,
        hold_ms=None if hold is None else hold * 1000,
        talk_ms=None if talk is None else talk * 1000,
        reason=message.get("Reason"),
    )


def _hangup_request(soft: bool) -> Callable[[AmiMessage, float], ev.PbxEvent]:
    def build(m: AmiMessage, at: float) -> ev.PbxEvent:
        return ev.HangupRequested(at, channel_info(m), _int(m, "Cause", 0), soft)

    return build


def _variable(m: AmiMessage, at: float) -> ev.PbxEvent | None:
    name = m.get("Variable") or ""
    if not name.startswith(VARIABLE_PREFIXES) or m.get("Uniqueid") is None:
        return None
    return ev.VariableSet(at, channel_info(m), name, m.get("Value") or "")


def _user_event(m: AmiMessage, at: float) -> ev.PbxEvent:
    standard = {"Event", "Privilege", "UserEvent", "ActionID"}
    prefix_fields = {
        "Channel", "ChannelState", "ChannelStateDesc", "CallerIDNum", "CallerIDName",
        "ConnectedLineNum", "ConnectedLineName", "Language", "AccountCode", "Context",
        "Exten", "Priority", "Uniqueid", "Linkedid",
    }
    name = _required(m, "UserEvent")
    try:
        kind = ev.DialplanStepKind(name)
    except ValueError:
        fields = {k: v for k, v in m.pairs if k not in standard and k not in prefix_fields}
        return ev.UserEventReceived(at, name, _optional_channel(m), fields)
    return ev.DialplanStep(
        at, kind, _optional_channel(m), agent=m.get("CtiAgent") or None,
        service=m.get("CtiService") or None,
        dial_status=(m.get("CtiDialStatus") or "").strip().upper(),
        callback=m.get("CtiCallback") or None)


def _originate(m: AmiMessage, at: float) -> ev.PbxEvent:
    uniqueid = _none_if_unknown(m.get("Uniqueid"))
    return ev.OriginateResult(
        at=at,
        action_id=m.get("ActionID"),
        success=(m.get("Response") or "").lower() == "success",
        reason=_int(m, "Reason", 0),
        uniqueid=uniqueid,
        channel=m.get("Channel") or "",
    )


def _dial(end: bool) -> Callable[[AmiMessage, float], ev.PbxEvent]:
    def build(m: AmiMessage, at: float) -> ev.PbxEvent:
        caller = _optional_channel(m)
        dest = channel_info(m, "Dest")
        if end:
            return ev.DialEnded(at, caller, dest, m.get("DialStatus") or "")
        return ev.DialStarted(at, caller, dest, m.get("DialString") or "")

    return build


def _transfer(kind: str) -> Callable[[AmiMessage, float], ev.PbxEvent]:
    def build(m: AmiMessage, at: float) -> ev.PbxEvent:
        transferer = m.get("OrigTransfererUniqueid") or m.get("TransfererUniqueid")
        return ev.TransferDone(at, kind, (m.get("Result") or "").lower() == "success", transferer)

    return build


def _queue_left(abandoned: bool) -> Callable[[AmiMessage, float], ev.PbxEvent]:
    def build(m: AmiMessage, at: float) -> ev.PbxEvent:
        return ev.QueueCallerLeft(
            at,
            _required(m, "Queue"),
            channel_info(m),
            abandoned,
            _int(m, "Position", 0),
            _opt_int(m, "HoldTime"),
        )

    return build


_Builder = Callable[[AmiMessage, float], "ev.PbxEvent | None"]

_BUILDERS: dict[str, _Builder] = {
    "Newchannel": lambda m, at: ev.ChannelCreated(at, channel_info(m)),
    "Newstate": lambda m, at: ev.ChannelStateChanged(at, channel_info(m)),
    "NewCallerid": lambda m, at: ev.CallerIdChanged(at, channel_info(m)),
    "Newexten": lambda m, at: ev.DialplanEntered(
        at, channel_info(m), _int(m, "Priority", 0), m.get("Application") or "",
        m.get("AppData") or "",
    ),
    "VarSet": _variable,
    "SoftHangupRequest": _hangup_request(soft=True),
    "HangupRequest": _hangup_request(soft=False),
    "Hangup": lambda m, at: ev.ChannelHungUp(at, channel_info(m), _int(m, "Cause", 0)),
    "LocalBridge": lambda m, at: ev.LocalPaired(
        at, channel_info(m, "LocalOne"), channel_info(m, "LocalTwo")
    ),
    "LocalOptimizationBegin": lambda m, at: ev.LocalOptimized(
        at, _required(m, "LocalOneUniqueid"), m.get("SourceUniqueid")
    ),
    "DialBegin": _dial(end=False),
    "DialEnd": _dial(end=True),
    "BridgeEnter": lambda m, at: ev.BridgeEntered(
        at, _required(m, "BridgeUniqueid"), channel_info(m)
    ),
    "BridgeLeave": lambda m, at: ev.BridgeLeft(at, _required(m, "BridgeUniqueid"), channel_info(m)),
    "Hold": lambda m, at: ev.HoldChanged(at, channel_info(m), on_hold=True),
    "Unhold": lambda m, at: ev.HoldChanged(at, channel_info(m), on_hold=False),
    "MusicOnHoldStart": lambda m, at: ev.MusicOnHoldChanged(at, channel_info(m), playing=True),
    "MusicOnHoldStop": lambda m, at: ev.MusicOnHoldChanged(at, channel_info(m), playing=False),
    "AttendedTransfer": _transfer("attended"),
    "BlindTransfer": _transfer("blind"),
    "UserEvent": _user_event,
    "AGIExecStart": lambda m, at: ev.AgiStep(at, channel_info(m), m.get("Command") or ""),
    "OriginateResponse": _originate,
    "QueueCallerJoin": lambda m, at: ev.QueueCallerJoined(
        at, _required(m, "Queue"), channel_info(m), _int(m, "Position", 0), _int(m, "Count", 0)
    ),
    "QueueCallerLeave": _queue_left(abandoned=False),
    "QueueCallerAbandon": _queue_left(abandoned=True),
    "AgentCalled": lambda m, at: _queue_agent(ev.QueueAgentKind.CALLED, m, at),
    "AgentConnect": lambda m, at: _queue_agent(ev.QueueAgentKind.CONNECTED, m, at),
    "AgentComplete": lambda m, at: _queue_agent(ev.QueueAgentKind.COMPLETED, m, at),
    "AgentRingNoAnswer": lambda m, at: _queue_agent(ev.QueueAgentKind.RING_NO_ANSWER, m, at),
    "AgentDump": lambda m, at: _queue_agent(ev.QueueAgentKind.DUMPED, m, at),
    "QueueMemberStatus": _member,
    "QueueMemberAdded": _member,
    "QueueMemberPause": _member,
    "QueueMemberPenalty": _member,
    "QueueMemberRinginuse": _member,
    "QueueMemberRemoved": lambda m, at: _member(m, at, removed=True),
    "QueueMember": _member,
    "DeviceStateChange": lambda m, at: ev.DeviceStateChanged(
        at, _required(m, "Device"), _required(m, "State")
    ),
    "ExtensionStatus": lambda m, at: ev.ExtensionStateChanged(
        at, _required(m, "Exten"), m.get("Context") or "", m.get("Hint") or "",
        _int(m, "Status", -1), m.get("StatusText") or "",
    ),
    "FullyBooted": lambda m, at: ev.PbxBooted(at, _opt_int(m, "Uptime")),
    "Shutdown": lambda m, at: ev.PbxShuttingDown(at, _yes(m.get("Restart"))),
}


@dataclass
class _PendingList:
    started_at: float
    items: list[ev.ChannelSnapshot] = field(default_factory=list)


@dataclass
class TranslatorStats:
    events: int = 0
    translated: int = 0
    malformed: int = 0
    unknown: Counter[str] = field(default_factory=Counter)


class Translator:
    """Turns each received AMI message into zero or more typed events.

    Stateful only to group list items: the `CoreShowChannel` items of one
    action id become a single `ChannelsSnapshot` when the list completes.
    """

    def __init__(self) -> None:
        self.stats = TranslatorStats()
        self._lists: dict[str, _PendingList] = {}

    def feed(self, message: AmiMessage, at: float) -> list[ev.PbxEvent]:
        name = message.event
        if name is None:
            self._note_response(message, at)
            return []
        self.stats.events += 1
        try:
            produced = self._translate(name, message, at)
        except MalformedMessage as exc:
            self.stats.malformed += 1
            log.warning("ami.malformed", ami_event=name, reason=str(exc))
            return []
        finally:
            self._close_other_list(name, message)
        self.stats.translated += len(produced)
        return produced

    def _close_other_list(self, name: str, message: AmiMessage) -> None:
        """Every list answer opens a pending list at its `EventList: start`
        response; only CoreShowChannels makes a snapshot of it. The end of
        any other list (QueueStatus, DeviceStateList, ...) drops its entry,
        so a long-running link does not keep one per list action."""
        if name != "CoreShowChannelsComplete" and message.action_id and (
            (message.get("EventList") or "").lower() == "complete"
        ):
            self._lists.pop(message.action_id, None)

    @property
    def pending_lists(self) -> int:
        """List answers started and not yet complete."""
        return len(self._lists)

    def unknown_types(self) -> list[str]:
        return sorted(self.stats.unknown)

    def _note_response(self, message: AmiMessage, at: float) -> None:
        action_id = message.action_id
        if action_id and (message.get("EventList") or "").lower() == "start":
            self._lists.setdefault(action_id, _PendingList(started_at=at))

    def _translate(self, name: str, message: AmiMessage, at: float) -> list[ev.PbxEvent]:
        if name == "CoreShowChannel":
            self._list_item(message, at)
            return []
        if name == "CoreShowChannelsComplete":
            pending = self._lists.pop(message.action_id or "", None)
            if pending is None:
                return []
            return [ev.ChannelsSnapshot(at, pending.started_at, tuple(pending.items))]
        if name == "Status":
            # Status items are list answers about channels we already track;
            # CoreShowChannels is the resync source.
            return []
        builder = _BUILDERS.get(name)
        if builder is None:
            if name not in IGNORED_EVENTS:
                self.stats.unknown[name] += 1
            return []
        event = builder(message, at)
        return [] if event is None else [event]

    def _list_item(self, message: AmiMessage, at: float) -> None:
        action_id = message.action_id or ""
        pending = self._lists.setdefault(action_id, _PendingList(started_at=at))
        pending.items.append(_channel_snapshot(message))


def _channel_snapshot(message: AmiMessage) -> ev.ChannelSnapshot:
    return ev.ChannelSnapshot(
        channel=channel_info(message),
        bridge=message.get("BridgeId") or None,
        application=message.get("Application") or "",
        seconds_up=_parse_duration(message.get("Duration")),
    )


def _parse_duration(raw: str | None) -> int | None:
    if not raw:
        return None
    parts = raw.split(":")
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        return None
    total = 0
    for number in numbers:
        total = total * 60 + number
    return total


def snapshot_from_items(
    items: list[AmiMessage], started_at: float, at: float
) -> ev.ChannelsSnapshot:
    """Build the resync snapshot from a CoreShowChannels answer list (as the
    AMI link receives it), with the same code as the replay path."""
    channels = tuple(_channel_snapshot(m) for m in items if m.event == "CoreShowChannel")
    return ev.ChannelsSnapshot(at, started_at, channels)

