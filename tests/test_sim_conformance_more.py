"""More of the simulated PBX against the real Asterisk 22 recordings: the
attended transfer by AMI Atxfer (recording 06 part b) and the resync
actions (recording 09), driven like `driver/scenarios.py` did.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cti.calls.model import CallEnded, CallRecord
from cti.calls.tracker import Tracker
from cti.pbx.recording import ami_messages
from cti.pbx.translate import Translator
from cti.pbx.wire import AmiMessage
from cti.replay import replay
from tests.conformance_view import Names, diff, recording_view, view
from tests.test_sim_conformance import FIXTURES, Run, running, s06a

RECORDING_06 = FIXTURES / "06-transfers-blind-redirect-and-atxfer.txt"


async def s06b(run: Run) -> None:
    caller = await run.caller("90", "cti-inbound", "0140000001",
                              '"Anne Attended" <+33655555555>')
    await run.user_event("CTIQueued")
    frank = await run.route(caller, "1005")
    await run.answered(caller)
    await run.sleep(2)
    since = len(run.rec.received)
    reply = await run.drv.action("Atxfer", ("Channel", frank), ("Exten", "1006"),
                                 ("Context", "sim-agent"))
    assert (reply.response, reply.get("Message")) == ("Success", "Atxfer successfully queued")
    await run.rec.wait_for(
        lambda m: m.event == "Newstate" and m.get("ChannelStateDesc") == "Up"
        and (m.get("Channel") or "").startswith("Local/1006@sim-agent")
        and (m.get("Channel") or "").endswith(";1"),
        within=15, since=since)
    await run.sleep(2)
    await run.drv.action("Hangup", ("Channel", frank))
    await run.rec.event("AttendedTransfer", since=since)
    await run.sleep(3)
    await run.drv.action("Hangup", ("Channel", caller))
    await run.gone(caller)


async def s06(run: Run) -> None:
    await s06a(run)
    await run.sleep(1.5)
    await s06b(run)


async def test_blind_then_attended_transfer_match_recording_06() -> None:
    async with running() as run:
        await s06(run)
        await run.idle()
        received = list(run.rec.received)
    problems = diff(recording_view(RECORDING_06), view(received))
    assert not problems, "\n".join(problems)
    # the server's tracker makes the same calls of both streams: the
    # attended transfer counts once and the call ends with Grace
    expected, _ = replay(RECORDING_06)
    assert [_outline(r) for r in _tracked(received)] == [_outline(r) for r in expected]
    assert _outline(expected[1]) == ("+33655555555", "answered", "Local/1006@sim-agent", 1)


async def test_atxfer_errors() -> None:
    async with running() as run:
        missing = await run.drv.action("Atxfer", ("Channel", "Local/nosuch-00000000;1"),
                                       ("Exten", "1006"), ("Context", "sim-agent"))
        assert (missing.response, missing.get("Message")) == (
            "Error", "Channel does not exist: Local/nosuch-00000000;1")
        no_exten = await run.drv.action("Atxfer", ("Channel", "x"))
        assert no_exten.response == "Error"


def _tracked(messages: list[AmiMessage]) -> list[CallRecord]:
    """The calls the server's translator and tracker make of a stream (the
    clock is the message's rank: durations are not compared)."""
    translator, tracker = Translator(), Tracker()
    ended = []
    for rank, message in enumerate(messages):
        for event in translator.feed(message, rank / 1000.0):
            ended += [c.record for c in tracker.apply(event) if isinstance(c, CallEnded)]
    return ended


def _outline(record: CallRecord) -> tuple[str | None, str, str | None, int]:
    return (record.caller_number, record.outcome.value, record.agent, record.transfers)


# ---------------------------------------------------------------- 09 resync

RECORDING_09 = FIXTURES / "09-resync-actions.txt"
SNAPSHOT = (
    ("QueueStatus",),
    ("QueueStatus", ("Queue", "support"), ("Member", "Local/1005@sim-agent")),
    ("QueueSummary",),
    ("CoreShowChannels",),
    ("Status",),
    ("Status", ("Channel", "<w>"), ("Variables", "CTI_STATE,CTI_DID,CTI_AGENT"),
     ("AllVariables", "false")),
    ("DeviceStateList",),
    ("ExtensionStateList",),
    ("Agents",),
    ("BridgeList",),
    ("Getvar", ("Channel", "<w>"), ("Variable", "CTI_STATE")),
    ("ExtensionState", ("Exten", "1005"), ("Context", "hints")),
    ("QueueStatus", ("Queue", "nosuchqueue")),
    ("Status", ("Channel", "Local/nosuch-00000000;1")),
)
# values that are ids or clocks; the rest must be the recording's
_VOLATILE = {"ActionID", "Uniqueid", "Linkedid", "Duration", "Seconds", "LoginTime",
             "LastPause", "LastCall", "Wait", "Holdtime", "HoldTime", "TalkTime",
             "LongestHoldTime"}
_BRIDGE_KEYS = {"BridgeId", "BridgeID", "BridgeUniqueid"}


def _reply_view(messages: list[AmiMessage], names: Names) -> list[tuple[str, ...]]:
    """One action's reply: the response, its items (in a stable order:
    Asterisk lists channels in its container's order), the Complete event;
    each as `key=value` with channel names normalized (`names`, numbered in
    order of creation) and ids masked."""
    bridges = dict[str, int]()
    rows = []
    for message in messages:
        row = []
        for key, value in message.pairs:
            if key in _VOLATILE:
                value = "<v>"
            elif key in _BRIDGE_KEYS and value:
                value = f"bridge #{bridges.setdefault(value, len(bridges))}"
            row.append(f"{key}={names(value)}")
        rows.append(tuple(row))
    head, items, tail = rows[:1], rows[1:-1], rows[-1:]
    if len(rows) > 2 and any(r[0] == "Event=CoreShowChannel" or r[0] == "Event=Status"
                             for r in items):
        items = sorted(items)
    return [*head, *items, *tail] if len(rows) > 1 else rows


def _created(events: list[AmiMessage]) -> Names:
    """Channel names numbered in the order the channels were created."""
    names = Names()
    for event in events:
        if event.event == "Newchannel":
            names(event.get("Channel") or "")
    return names


def _recorded_replies() -> dict[int, list[AmiMessage]]:
    """The recording's drv replies to the snapshot actions, by rank."""
    replies: dict[str, list[AmiMessage]] = {}
    for timed in ami_messages(RECORDING_09):
        aid = timed.message.action_id or ""
        if timed.conn == "drv" and aid[7:10].isdigit() and 6 <= int(aid[7:10]) <= 19:
            replies.setdefault(aid, []).append(timed.message)
    return dict(enumerate(replies[k] for k in sorted(replies)))


def _reply_to(action_id: str, event_list: str | None = None) -> Callable[[AmiMessage], bool]:
    """The response to an action, or its list's `EventList: <event_list>`."""
    def match(message: AmiMessage) -> bool:
        if message.action_id != action_id:
            return False
        if event_list is None:
            return message.response is not None
        return message.get("EventList") == event_list

    return match


async def _snapshot(run: Run, wanda: str) -> list[list[AmiMessage]]:
    replies = []
    for name, *fields in SNAPSHOT:
        pairs = [(k, wanda if v == "<w>" else v) for k, v in fields]
        since = len(run.drv.received)
        action_id = run.drv.send(name, *pairs)
        response = await run.drv.wait_for(_reply_to(action_id), since=since)
        if response.get("EventList") == "start":
            await run.drv.wait_for(_reply_to(action_id, "Complete"), since=since)
        replies.append([m for m in run.drv.received[since:] if m.action_id == action_id])
    return replies


async def s09(run: Run) -> list[list[AmiMessage]]:
    await run.drv.action("QueuePause", ("Queue", "support"),
                         ("Interface", "Local/1001@sim-agent"), ("Paused", "true"),
                         ("Reason", "training"))
    since = len(run.rec.received)
    berthe = await run.caller("120", "queue-inbound", "support",
                              '"Berthe Bridged" <+33600000001>')
    await run.rec.event("AgentConnect", since=since, within=20)
    albert = await run.caller("120", "queue-inbound", "support",
                              '"Albert Waiting" <+33600000002>')
    await run.rec.event("QueueCallerJoin", since=since, Channel=albert)
    wanda = await run.caller("120", "cti-inbound", "0140000001", '"Wanda Cti" <+33600000003>')
    await run.user_event("CTIQueued")
    await run.sleep(1.5)
    replies = await _snapshot(run, wanda)
    for chan in (albert, wanda, berthe):
        await run.drv.action("Hangup", ("Channel", chan))
    for chan in (albert, wanda, berthe):
        await run.gone(chan)
    await run.drv.action("QueuePause", ("Queue", "support"),
                         ("Interface", "Local/1001@sim-agent"), ("Paused", "false"))
    return replies


def _without_queue_devices(reply: list[AmiMessage], names: Names) -> list[tuple[str, ...]]:
    """DeviceStateList less app_queue's `Queue:*` devices (and so with the
    count of what is left)."""
    rows = [r for r in _reply_view(reply, names)
            if not any(f.startswith("Device=Queue:") for f in r)]
    kept = len(rows) - 2
    return [tuple(f"ListItems={kept}" if f.startswith("ListItems=") else f for f in r)
            for r in rows]


# app_queue's own lists (QueueStatus of the queues, QueueSummary) carry the
# queue statistics of the whole recording session (scenarios 04 and 05 ran
# before 09 on the same Asterisk): they are checked with app_queue.
QUEUE_LISTS = {0, 1, 2}


async def test_resync_actions_match_recording_09() -> None:
    async with running() as run:
        replies = await s09(run)
        sim_names = _created(run.rec.received)
    recorded = _recorded_replies()
    rec_names = _created([t.message for t in ami_messages(RECORDING_09) if t.conn == "rec"])
    problems = []
    for rank, (action, *_fields) in enumerate(SNAPSHOT):
        if rank in QUEUE_LISTS:
            continue
        if action == "DeviceStateList":
            want = _without_queue_devices(recorded[rank], rec_names)
            got = _without_queue_devices(replies[rank], sim_names)
        else:
            want = _reply_view(recorded[rank], rec_names)
            got = _reply_view(replies[rank], sim_names)
        if want != got:
            problems.append(f"== {rank} {action}")
            problems += [f"   {w}\n!! {g}" for w, g in zip(want, got, strict=False) if w != g]
            if len(want) != len(got):
                problems.append(f"   {len(want)} messages, got {len(got)}")
    assert not problems, "\n".join(problems)


async def test_a_phones_hold_button_speaks_like_the_hold_of_recording_06() -> None:
    recorded = [m for m in ami_messages_of(RECORDING_06)
                if m.event in ("Hold", "MusicOnHoldStart")]
    hold, moh = recorded[-2:]  # the Atxfer's: Hold on Frank, music for the caller
    assert (hold.event, moh.event) == ("Hold", "MusicOnHoldStart")
    async with running() as run:
        caller = await run.caller("90", "cti-inbound", "0140000001",
                                  '"Anne Attended" <+33655555555>')
        await run.user_event("CTIQueued")
        frank = await run.route(caller, "1005")
        await run.answered(caller)
        since = len(run.rec.received)
        assert run.sim.press_hold("1005")
        held = await run.rec.event("Hold", since=since, Channel=frank)
        music = await run.rec.event("MusicOnHoldStart", since=since, Channel=caller)
        assert [k for k, _ in held.pairs] == [k for k, _ in hold.pairs]
        assert [k for k, _ in music.pairs] == [k for k, _ in moh.pairs]
        assert music.get("Class") == moh.get("Class") == "default"
        since = len(run.rec.received)
        assert run.sim.press_hold("1005", on=False)
        unheld = await run.rec.event("Unhold", since=since, Channel=frank)
        await run.rec.event("MusicOnHoldStop", since=since, Channel=caller)
        assert [k for k, _ in unheld.pairs] == [k for k, _ in hold.pairs]
        await run.drv.action("Hangup", ("Channel", caller))
        await run.gone(caller)
        assert not run.sim.press_hold("1005")


def ami_messages_of(path: Path) -> list[AmiMessage]:
    return [t.message for t in ami_messages(path) if t.conn == "rec"]
