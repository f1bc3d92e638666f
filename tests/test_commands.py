"""Typed commands: the exact AMI fields the real Asterisk 22 got (the
recordings are the oracle), and every injection attempt refused before an
action is built."""

from __future__ import annotations

import dataclasses
import unicodedata
from functools import cache
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cti.pbx.actions import AmiAction
from cti.pbx.commands import (
    DIALPLAN_SPECIAL,
    Atxfer,
    CallerId,
    CoreShowChannels,
    DeviceStateList,
    Getvar,
    Hangup,
    Originate,
    Ping,
    QueueAdd,
    QueuePause,
    QueueRemove,
    QueueStatus,
    Redirect,
    Setvar,
    Spy,
    SpyMode,
    Status,
    UserEvent,
    normalize_number,
)
from cti.pbx.errors import InvalidCommand, PbxError
from cti.pbx.recording import read_entries
from cti.pbx.wire import encode_action, iter_messages

FIXTURES = Path(__file__).parent / "fixtures" / "asterisk-22"
CALLER = "Local/60@sim-caller-00000000;1"


@cache
def _sent_actions(scenario: str) -> dict[str, tuple[str, tuple[tuple[str, str], ...]]]:
    (path,) = FIXTURES.glob(f"{scenario}-*.txt")
    actions = {}
    for entry in read_entries(path):
        if entry.direction != ">>":
            continue
        for message in iter_messages(entry.payload):
            if message.action_id is None or message.get("Action") is None:
                continue
            fields = tuple((k, v) for k, v in message.pairs if k not in ("Action", "ActionID"))
            actions[message.action_id] = (message.get("Action") or "", fields)
    return actions


def recorded(action_id: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """Name and fields (ActionID aside) of an action the driver sent to the
    real Asterisk."""
    return _sent_actions(action_id[:2])[action_id]


RECORDED_CASES = [
    ("01-drv-002-originate", Originate(
        "Local/60@sim-caller", "cti-inbound", "0140000001",
        caller_id=CallerId("+33612345678", "Alice Dupont"), timeout_ms=15000)),
    ("01-drv-003-setvar", Setvar(CALLER, "CTI_AGENT", "1001")),
    ("01-drv-004-setvar", Setvar(CALLER, "CTI_RING_TIMEOUT", "15")),
    ("01-drv-005-redirect", Redirect(CALLER, "cti-connect", "1001")),
    ("04-drv-002-queuepause", QueuePause("Local/1002@sim-agent", True, queue="sales",
                                         reason="briefing")),
    ("04-drv-004-originate", Originate(
        "Local/90@sim-caller", "queue-inbound", "sales",
        caller_id=CallerId("+33699999910", "Victor VIP"), timeout_ms=15000,
        variables=(("CTI_VIP", "1"),))),
    ("04-drv-005-queuestatus", QueueStatus(queue="sales")),
    ("04-drv-006-queuepause", QueuePause("Local/1002@sim-agent", False, queue="sales")),
    ("05-drv-002-queueadd", QueueAdd("helpdesk", "Local/1007@sim-agent", penalty=2,
                                     member_name="Heidi Blanc",
                                     state_interface="Local/1007@sim-agent")),
    ("05-drv-008-queueremove", QueueRemove("helpdesk", "Local/1007@sim-agent")),
    ("06-drv-007-hangup", Hangup("Local/90@sim-caller-00000011;1", cause=16)),
    ("06-drv-011-atxfer", Atxfer("Local/1005@sim-agent-00000015;1", "1006", "sim-agent")),
    ("06-drv-012-hangup", Hangup("Local/1005@sim-agent-00000015;1")),
    ("07-drv-002-originate", Originate(
        "Local/1001@sim-agent", "cti-callback", "0611223344",
        caller_id=CallerId("0611223344", "Callback Client"), timeout_ms=20000,
        variables=(("CTI_CALLBACK_ID", "cb-42"),), channel_id="cti-cb-42-agent",
        other_channel_id="cti-cb-42-agent-2")),
    ("09-drv-006-queuestatus", QueueStatus()),
    ("09-drv-007-queuestatus", QueueStatus(queue="support", member="Local/1005@sim-agent")),
    ("09-drv-009-coreshowchannels", CoreShowChannels()),
    ("09-drv-010-status", Status()),
    ("09-drv-011-status", Status("Local/120@sim-caller-00000024;1",
                                 ("CTI_STATE", "CTI_DID", "CTI_AGENT"))),
    ("09-drv-012-devicestatelist", DeviceStateList()),
    ("09-drv-016-getvar", Getvar("Local/120@sim-caller-00000024;1", "CTI_STATE")),
    ("10-drv-005-originate", Spy("Local/2001@sim-agent", "Local/1005@sim-agent-00000026;1",
                                 SpyMode.LISTEN, caller_id=CallerId("2001", "Supervisor"),
                                 timeout_ms=10000)),
    ("10-drv-007-originate", Spy("Local/2001@sim-agent", "Local/1005@sim-agent-00000026;1",
                                 SpyMode.WHISPER, caller_id=CallerId("2001", "Supervisor"),
                                 timeout_ms=10000)),
    ("11-drv-002-ping", Ping()),
    ("11-drv-009-userevent", UserEvent("CTIHeartbeat", (("Seq", "1"),))),
]


@pytest.mark.parametrize(("action_id", "command"), RECORDED_CASES,
                         ids=[case[0] for case in RECORDED_CASES])
def test_command_builds_the_fields_real_asterisk_accepted(action_id: str, command: object) -> None:
    name, fields = recorded(action_id)
    action = command.to_action()  # type: ignore[attr-defined]
    assert (action.name, action.fields) == (name, fields)


def test_list_actions_name_their_complete_event_and_are_idempotent() -> None:
    assert CoreShowChannels().to_action().list_complete == "CoreShowChannelsComplete"
    assert QueueStatus().to_action().list_complete == "QueueStatusComplete"
    assert DeviceStateList().to_action().list_complete == "DeviceStateListComplete"
    assert Status().to_action().list_complete == "StatusComplete"
    assert all(c.to_action().idempotent for c in (CoreShowChannels(), QueueStatus(),
                                                  DeviceStateList(), Ping()))
    assert not Redirect(CALLER, "cti-connect", "1001").to_action().idempotent
    assert Redirect(CALLER, "cti-connect", "1001").to_action().list_complete is None


def test_originate_always_says_async_explicitly() -> None:
    sync = Originate("PJSIP/1001", "cti-callback", "+33611223344", asynchronous=False)
    fields = dict(sync.to_action().fields)
    assert fields["Async"] == "false"
    assert dict(Originate("PJSIP/1001", "cti-connect", "1001").to_action().fields)["Async"] \
        == "true"


def test_originate_to_an_external_number_dials_its_e164_form() -> None:
    command = Originate.to_number("06 11 22 33 44", "FR", "PJSIP/{number}@provider",
                                  "cti-outbound", "s", channel_id="cti-out-7")
    fields = dict(command.to_action().fields)
    assert fields["Channel"] == "PJSIP/+33611223344@provider"
    assert (fields["Context"], fields["Exten"], fields["ChannelId"]) == \
        ("cti-outbound", "s", "cti-out-7")


def test_barge_and_redirect_with_extra_channel() -> None:
    barge = Spy("PJSIP/2001", "PJSIP/1005-0000002a", SpyMode.BARGE).to_action()
    assert dict(barge.fields)["Data"] == "PJSIP/1005-0000002a,qBE"
    both = Redirect(CALLER, "cti-connect", "1001", extra_channel="Local/1001@sim-agent-1;2",
                    extra_context="cti-wait", extra_exten="s").to_action()
    assert both.fields[4:] == (("ExtraChannel", "Local/1001@sim-agent-1;2"),
                               ("ExtraContext", "cti-wait"), ("ExtraExten", "s"),
                               ("ExtraPriority", "1"))


def test_commands_are_immutable() -> None:
    command = Setvar(CALLER, "CTI_AGENT", "1001")
    with pytest.raises(dataclasses.FrozenInstanceError):
        command.value = "1002&PJSIP/666"  # type: ignore[misc]


@pytest.mark.parametrize(("raw", "e164"), [
    ("0611223344", "+33611223344"),
    ("+33 6 12 34 56 78", "+33612345678"),
    ("06.12.34.56.78", "+33612345678"),
    ("+1 (650) 253-0000", "+16502530000"),
])
def test_normalize_number_gives_e164(raw: str, e164: str) -> None:
    assert normalize_number(raw, "FR") == e164


@pytest.mark.parametrize("raw", [
    "12", "0611", "+999 123", "06 12 34 56 78 ext. 12", "1-800-FLOWERS", "0611223344&666",
    "0611223344\n", "", "+33 6" + "1" * 60, "٠٦١١٢٢٣٣٤٤",
])
def test_normalize_number_refuses_what_is_not_a_dialable_number(raw: str) -> None:
    with pytest.raises(InvalidCommand) as caught:
        normalize_number(raw, "FR", field="customer.phone")
    assert caught.value.field == "customer.phone"
    assert str(caught.value).startswith("customer.phone: ")


def test_normalize_number_refuses_an_unknown_region() -> None:
    with pytest.raises(InvalidCommand, match="default_region"):
        normalize_number("0611223344", "XX")


INJECTIONS = [
    # (what, build, field named in the error)
    ("second dial target", lambda: Originate("PJSIP/1001&PJSIP/666", "cti-connect", "1001"),
     "device"),
    ("dial options", lambda: Originate("PJSIP/1001,30,tT", "cti-connect", "1001"), "device"),
    ("old separator", lambda: Originate("PJSIP/1001|30", "cti-connect", "1001"), "device"),
    ("context comment", lambda: Redirect(CALLER, "cti-connect;x", "1001"), "context"),
    ("exten pattern", lambda: Redirect(CALLER, "cti-connect", "_X."), "exten"),
    ("exten function", lambda: Redirect(CALLER, "cti-connect", "${SHELL(id)}"), "exten"),
    ("channel suffix", lambda: Setvar("Local/60@sim-caller-0;3", "A", "1"), "channel"),
    ("channel with ;", lambda: Setvar("PJSIP/1001;1", "A", "1"), "channel"),
    ("header in value", lambda: Setvar(CALLER, "CTI_AGENT", "1001\r\nAction: Hangup"), "value"),
    ("lf in value", lambda: Setvar(CALLER, "CTI_AGENT", "1001\nx"), "value"),
    ("dial in value", lambda: Setvar(CALLER, "CTI_AGENT_DEVICE", "PJSIP/1001&PJSIP/666"),
     "value"),
    ("function in value", lambda: Setvar(CALLER, "CTI_AGENT", "${SHELL(rm -rf /)}"), "value"),
    ("expression in value", lambda: Setvar(CALLER, "CTI_AGENT", "$[1+1]"), "value"),
    ("function as variable", lambda: Setvar(CALLER, "CDR(userfield)", "x"), "variable"),
    ("variable with space", lambda: Getvar(CALLER, "A B"), "variable"),
    ("nul byte", lambda: Setvar(CALLER, "CTI_AGENT", "10\x0001"), "value"),
    ("bidi override", lambda: Setvar(CALLER, "CTI_AGENT", "\u202e1001"), "value"),
    ("zero width", lambda: QueuePause("PJSIP/1001", True, reason="lunch\u200b"), "reason"),
    ("line separator", lambda: QueuePause("PJSIP/1001", True, reason="a\u2028b"), "reason"),
    ("fullwidth ampersand", lambda: Setvar(CALLER, "X", "PJSIP/1\uff06PJSIP/2"), "value"),
    ("fullwidth dollar", lambda: Setvar(CALLER, "X", "\uff04{x}"), "value"),
    ("non-ascii digits in exten", lambda: Redirect(CALLER, "cti-connect", "\u0661\u0662"),
     "exten"),
    ("cyrillic context", lambda: Redirect(CALLER, "cti-\u0441onnect", "1001"), "context"),
    ("very long value", lambda: Setvar(CALLER, "X", "1" * 10_000), "value"),
    ("very long context", lambda: Redirect(CALLER, "c" * 81, "1001"), "context"),
    ("very long channel", lambda: Hangup("PJSIP/" + "1" * 300), "channel"),
    ("quote in caller name", lambda: CallerId("0611223344", 'Eve" <666>'), "caller_id.name"),
    ("angle in caller name", lambda: CallerId("0611223344", "Eve <666"), "caller_id.name"),
    ("letters in caller number", lambda: CallerId("06abc", "Eve"), "caller_id.number"),
    ("spy options smuggled", lambda: Spy("PJSIP/2001", "PJSIP/1005-1,B", SpyMode.LISTEN),
     "target"),
    ("spy mode as text", lambda: Spy("PJSIP/2001", "PJSIP/1005-1", "qB"),  # type: ignore[arg-type]
     "mode"),
    ("bool as string", lambda: Originate("PJSIP/1", "c", "1", asynchronous="false"),  # type: ignore[arg-type]
     "asynchronous"),
    ("priority as text", lambda: Redirect(CALLER, "c", "1", priority="1"),  # type: ignore[arg-type]
     "priority"),
    ("cause out of range", lambda: Hangup(CALLER, cause=500), "cause"),
    ("duplicate variable",
     lambda: Originate("PJSIP/1", "c", "1", variables=(("A", "1"), ("A", "2"))), "variables"),
    ("reserved user event header", lambda: UserEvent("CTIX", (("ActionID", "x"),)), "headers"),
    ("user event value", lambda: UserEvent("CTIX", (("Seq", "1\r\nAction: Hangup"),)),
     "headers.Seq"),
    ("queue name", lambda: QueueAdd("sales,x", "PJSIP/1001"), "queue"),
    ("member name", lambda: QueueAdd("sales", "PJSIP/1001", member_name="Bob (boss)"),
     "member_name"),
    ("interface", lambda: QueueRemove("sales", "PJSIP/1001&PJSIP/2"), "interface"),
    ("trunk without number", lambda: Originate.to_number("0611223344", "FR", "PJSIP/x", "c", "s"),
     "trunk"),
    ("number injection", lambda: Originate.to_number("0611223344&1", "FR", "PJSIP/{number}",
                                                     "c", "s"), "number"),
    ("other id alone", lambda: Originate("PJSIP/1", "c", "1", other_channel_id="x"),
     "other_channel_id"),
]


@pytest.mark.parametrize(("what", "build", "field"), INJECTIONS,
                         ids=[case[0] for case in INJECTIONS])
def test_injection_attempt_is_refused_naming_the_field(what: str, build: object,
                                                       field: str) -> None:
    with pytest.raises(InvalidCommand) as caught:
        build()  # type: ignore[operator]
    assert caught.value.field == field
    assert caught.value.code == "invalid_command"
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, PbxError)


# Characters that must never reach an action outside the one allowed use of
# `;` (the Local channel half suffix).
def _safe(action: AmiAction) -> bool:
    for key, value in action.fields:
        text = unicodedata.normalize("NFKC", value)
        if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in value):
            return False
        specials = set(text) & DIALPLAN_SPECIAL
        if key == "Data":  # ChanSpy: <channel>,<options>: exactly one comma, ours
            specials -= {","} if text.count(",") == 1 else set()
        if key in ("Channel", "Data", "ExtraChannel") and specials == {";"}:
            specials = set() if value.split(",")[0][-2:] in (";1", ";2") else specials
        if key == "CallerID":
            specials -= {'"'} if value.count('"') in (0, 2) else set()
        if specials:
            return False
    encode_action(action.name, action.fields)  # refuses CR/LF itself
    return True


def _attempt(build: object) -> AmiAction | None:
    try:
        return build().to_action()  # type: ignore[operator, no-any-return]
    except InvalidCommand:
        return None


evil = st.text(
    alphabet=st.sampled_from([
        *sorted(DIALPLAN_SPECIAL), "\r", "\n", "\x00", "\x1b", "\u202e", "\u200b", "\u2028",
        "\uff06", "\uff04", "\ufe50", "a", "1", "/", "@", "-", " ", "é", "_", ".", "+", "*", "#"]),
    min_size=1, max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120) | evil, st.sampled_from([
    "device", "context", "exten", "channel", "variable", "value", "reason", "name", "number",
    "queue", "target", "member",
]))
def test_no_value_ever_reaches_an_action_unsafe(value: str, slot: str) -> None:
    """Any text in any slot: either InvalidCommand, or an action free of
    dialplan specials, control characters and header breaks."""
    builds = {
        "device": lambda: Originate(value, "cti-connect", "1001"),
        "context": lambda: Redirect(CALLER, value, "1001"),
        "exten": lambda: Redirect(CALLER, "cti-connect", value),
        "channel": lambda: Hangup(value, 16),
        "variable": lambda: Setvar(CALLER, value, "1"),
        "value": lambda: Setvar(CALLER, "CTI_AGENT", value),
        "reason": lambda: QueuePause("PJSIP/1001", True, reason=value),
        "name": lambda: Originate("PJSIP/1", "c", "1", caller_id=CallerId("0611223344", value)),
        "number": lambda: Originate.to_number(value, "FR", "PJSIP/{number}@t", "c", "s"),
        "queue": lambda: QueueAdd(value, "PJSIP/1001"),
        "target": lambda: Spy("PJSIP/2001", value, SpyMode.LISTEN),
        "member": lambda: QueueAdd("q", "PJSIP/1001", member_name=value),
    }
    action = _attempt(builds[slot])
    if action is not None:
        assert _safe(action), action


@settings(max_examples=200, deadline=None)
@given(evil.filter(lambda s: bool(set(s) & (DIALPLAN_SPECIAL | {"\r", "\n", "\x00", "\x1b",
                                                                 "\u202e", "\u200b", "\u2028",
                                                                 "\uff06", "\uff04"}))))
def test_text_with_any_special_character_is_refused_everywhere(value: str) -> None:
    for build in (
        lambda: Setvar(CALLER, "CTI_AGENT", value),
        lambda: Redirect(CALLER, value, "1001"),
        lambda: Redirect(CALLER, "cti-connect", value),
        lambda: Originate(value, "cti-connect", "1001"),
        lambda: QueuePause("PJSIP/1001", True, reason=value),
        lambda: UserEvent("CTIX", (("Note", value),)),
    ):
        with pytest.raises(InvalidCommand):
            build()
