"""The tracker on real recordings: call lifecycle states, and properties that
hold for any interleaving of a recording with noise (hypothesis)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cti.calls.model import CallAgentChanged, CallEnded, CallState, CallStateChanged
from cti.calls.tracker import Tracker
from cti.pbx.recording import ami_messages
from cti.pbx.translate import Translator
from cti.pbx.wire import AmiMessage

FIXTURES = Path(__file__).parent / "fixtures" / "asterisk-22"
SCENARIOS = sorted(p.stem for p in FIXTURES.glob("[01]*.txt"))


@cache
def timed_messages(scenario: str) -> tuple[tuple[float, AmiMessage], ...]:
    return tuple((t.ms / 1000.0, t.message) for t in ami_messages(FIXTURES / f"{scenario}.txt"))


def fold(messages: list[tuple[float, AmiMessage]]) -> tuple[Tracker, list[CallEnded], list]:
    translator, tracker = Translator(), Tracker()
    ended: list[CallEnded] = []
    changes: list = []
    for at, message in messages:
        for event in translator.feed(message, at):
            for change in tracker.apply(event):
                changes.append(change)
                if isinstance(change, CallEnded):
                    ended.append(change)
    return tracker, ended, changes


def states_of(changes: list, call: str) -> list[CallState]:
    return [c.state for c in changes if isinstance(c, CallStateChanged) and c.call == call]


def test_inbound_call_goes_waiting_connecting_talking_ended() -> None:
    _, _, changes = fold(list(timed_messages("01-inbound-redirect-answered")))
    assert states_of(changes, "1795369606.0") == [
        CallState.WAITING, CallState.CONNECTING, CallState.TALKING, CallState.ENDED,
    ]


def test_ring_no_answer_puts_the_call_back_to_waiting() -> None:
    _, _, changes = fold(list(timed_messages("03-rona-then-second-agent")))
    assert states_of(changes, "1795369635.6") == [
        CallState.WAITING, CallState.CONNECTING, CallState.WAITING, CallState.CONNECTING,
        CallState.TALKING, CallState.ENDED,
    ]


def test_attended_transfer_holds_the_caller_then_talks_again() -> None:
    _, _, changes = fold(list(timed_messages("06-transfers-blind-redirect-and-atxfer")))
    states = states_of(changes, "1795369720.40")
    assert states[:3] == [CallState.WAITING, CallState.CONNECTING, CallState.TALKING]
    assert CallState.ON_HOLD in states
    assert states[-2:] == [CallState.TALKING, CallState.ENDED]


def test_both_transfers_of_recording_06_name_the_new_agent_before_talking_again() -> None:
    _, _, changes = fold(list(timed_messages("06-transfers-blind-redirect-and-atxfer")))
    moved = [c for c in changes if isinstance(c, CallAgentChanged)]
    frank, grace = "Local/1005@sim-agent", "Local/1006@sim-agent"
    # (a) blind: the CTI redirected the caller straight into cti-connect;
    # (b) attended: Atxfer, Frank hangs up, the bridges merge.
    assert [(c.call, c.previous, c.agent) for c in moved] == [
        ("1795369709.34", frank, grace), ("1795369720.40", frank, grace)]
    attended = [c for c in changes if getattr(c, "call", None) == "1795369720.40"]
    at = attended.index(moved[1])
    after = attended[at + 1]
    assert isinstance(after, CallStateChanged)
    assert (after.previous, after.state, after.agent) == (CallState.ON_HOLD, CallState.TALKING,
                                                          grace)


def test_no_agent_change_without_a_transfer() -> None:
    for scenario in SCENARIOS:
        if scenario.startswith("06"):
            continue
        _, _, changes = fold(list(timed_messages(scenario)))
        assert not [c for c in changes if isinstance(c, CallAgentChanged)], scenario


def test_ivr_call_is_in_ivr() -> None:
    _, _, changes = fold(list(timed_messages("08-fastagi-ivr")))
    assert states_of(changes, "1795369761.62")[:1] == [CallState.IN_IVR]


def test_queue_caller_waits_from_queue_join() -> None:
    tracker, _, changes = fold(list(timed_messages("04-queue-vip-priority")))
    assert states_of(changes, "1795369657.12")[0] is CallState.WAITING
    assert not tracker.calls and not tracker.channels and not tracker.bridges


def test_every_recording_leaves_no_channel_or_call_behind() -> None:
    for scenario in SCENARIOS:
        tracker, _, _ = fold(list(timed_messages(scenario)))
        assert tracker.channels == {}, scenario
        assert tracker.calls == {}, scenario
        assert tracker.bridges == {}, scenario


# ---------------------------------------------------------------- properties

_NAMES = st.text(st.characters(codec="utf-8", exclude_characters="\r\n:"), max_size=12)

unknown_event = st.builds(
    lambda name, pairs: AmiMessage((("Event", "X" + name), *pairs)),
    _NAMES,
    st.lists(st.tuples(_NAMES.map(lambda s: "K" + s), _NAMES), max_size=4).map(tuple),
)

# Messages of known types with a missing or broken required field. They name
# channels that are not in the recording, or no channel at all.
malformed_event = st.one_of(
    st.sampled_from(["Newchannel", "Hangup", "BridgeEnter", "DialBegin", "Newstate",
                     "QueueCallerJoin", "LocalBridge", "AgentCalled", "OriginateResponse",
                     "UserEvent", "DeviceStateChange", "ExtensionStatus", "QueueMemberStatus"])
    .map(lambda name: AmiMessage((("Event", name),))),
    st.builds(
        lambda state: AmiMessage((
            ("Event", "Newstate"), ("Channel", "PJSIP/x-00000001"), ("Uniqueid", "noise.1"),
            ("Linkedid", "noise.1"), ("ChannelState", state),
        )),
        _NAMES.filter(lambda s: not s.strip().lstrip("-").isdigit()).map(lambda s: "n" + s),
    ),
    st.builds(
        lambda cause: AmiMessage((
            ("Event", "Hangup"), ("Channel", "PJSIP/x-00000002"), ("Uniqueid", "noise.2"),
            ("Cause", cause),
        )),
        _NAMES.map(lambda s: "c" + s),
    ),
    st.just(AmiMessage((("", "garbage line without a colon"),))),
)

noise = st.one_of(unknown_event, malformed_event)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    scenario=st.sampled_from(SCENARIOS),
    inserts=st.lists(st.tuples(st.floats(0, 1), noise), max_size=40),
)
def test_noise_never_changes_the_calls_nor_leaves_channels(scenario, inserts) -> None:
    clean = list(timed_messages(scenario))
    noisy = list(clean)
    for fraction, message in sorted(inserts, key=lambda i: i[0], reverse=True):
        index = int(fraction * len(noisy))
        at = noisy[min(index, len(noisy) - 1)][0]
        noisy.insert(index, (at, message))
    tracker, ended, _ = fold(noisy)
    _, ended_clean, _ = fold(clean)
    assert [e.record for e in ended] == [e.record for e in ended_clean]
    live_calls = set(tracker.calls)
    for channel in tracker.channels.values():
        assert channel.call in live_calls
    for end in ended:
        assert end.record.call not in tracker.calls


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=st.sampled_from(SCENARIOS), data=st.data())
def test_lost_events_never_crash_nor_leave_channels_of_ended_calls(scenario, data) -> None:
    clean = list(timed_messages(scenario))
    keep = data.draw(st.lists(st.booleans(), min_size=len(clean), max_size=len(clean)))
    tracker, ended, _ = fold([m for m, k in zip(clean, keep, strict=True) if k])
    ended_ids = {e.record.call for e in ended}
    for channel in tracker.channels.values():
        assert channel.call in tracker.calls
        assert channel.call not in ended_ids or channel.call in tracker.calls
    for call in tracker.calls.values():
        assert call.channels <= set(tracker.channels)
