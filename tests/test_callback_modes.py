"""The pure parts of customer-first callbacks: the per-service callback
mode of the center file, and how an originated leg's outcome is read from
what Asterisk says about it (recording 07: busy and congestion end with a
DialEnd; a ring-out only with OriginateResponse reason 3 and hang-up cause
19; a number that does not exist with reason 0)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cti.callbacks.models import Outcome
from cti.center import CallbackMode, CenterError, center_from, load_center
from cti.config import ConfigError, load_settings
from cti.pbx import events as ev
from cti.pbx.dial_status import originated_leg_status
from cti.pbx.recording import ami_messages
from cti.pbx.translate import Translator

FIXTURE = (Path(__file__).parent / "fixtures" / "asterisk-22"
           / "07-callback-and-originate-failures.txt")
EXAMPLE = Path(__file__).parent.parent / "cti" / "examples" / "center.yaml"


def center(**service: Any) -> dict[str, Any]:
    return {"services": {"support": {"skills": {"support": 1}, **service},
                         "sales": {"skills": {"sales": 1}}}}


def test_callbacks_are_agent_first_unless_a_service_says_otherwise() -> None:
    checked = center_from(center(callback_mode="customer-first", caller_id="0140000001"))
    assert checked.callback_mode("support") is CallbackMode.CUSTOMER_FIRST
    assert checked.callback_mode("sales") is CallbackMode.AGENT_FIRST
    assert center_from(center()).callback_mode("support") is CallbackMode.AGENT_FIRST


def test_a_customer_first_service_needs_the_caller_id_the_customer_sees() -> None:
    with pytest.raises(CenterError) as caught:
        center_from(center(callback_mode="customer-first"))
    [(path, reason)] = caught.value.problems
    assert path == "services.support" and "caller_id" in reason


@pytest.mark.parametrize("mode", ["customer_first", "both", "", 1])
def test_an_unknown_callback_mode_is_refused_naming_the_field(mode: object) -> None:
    with pytest.raises(CenterError) as caught:
        center_from(center(callback_mode=mode, caller_id="0140000001"))
    assert [p for p, _ in caught.value.problems] == ["services.support.callback_mode"]


def test_the_example_center_file_shows_a_customer_first_service() -> None:
    example = load_center(EXAMPLE)
    modes = {name: example.callback_mode(name) for name in example.policy.services}
    assert set(modes.values()) == {CallbackMode.AGENT_FIRST, CallbackMode.CUSTOMER_FIRST}


def _recorded_failures() -> list[tuple[str, str, int | None, int | None]]:
    """Per failed Originate of recording 07: its dial string, and the
    DialEnd status, OriginateResponse reason and hang-up cause of its `;1`
    leg, as the server's translation reads them."""
    translator = Translator()
    legs: dict[str, dict[str, Any]] = {}   # ;1 uniqueid -> what its events said
    failed: list[tuple[str, int]] = []
    for timed in ami_messages(FIXTURE):
        if timed.conn != "rec":
            continue
        for event in translator.feed(timed.message, timed.ms / 1000):
            if isinstance(event, ev.DialEnded) and event.caller is None:
                legs.setdefault(event.dest.uniqueid, {})["dial_end"] = event.status
            elif isinstance(event, ev.ChannelHungUp) and event.channel.name.endswith(";1"):
                leg = legs.setdefault(event.channel.uniqueid, {})
                leg["cause"], leg["name"] = event.cause, event.channel.name
            elif isinstance(event, ev.OriginateResult) and not event.success:
                failed.append((event.channel, event.reason))
    # A Local channel's name is its dial string plus `-<8 hex>;1`; the
    # last leg of a dial string is the one its OriginateResponse is about.
    by_device = {leg["name"].rsplit("-", 1)[0]: leg for leg in legs.values() if "name" in leg}
    return [(device, by_device.get(device, {}).get("dial_end", ""), reason,
             by_device.get(device, {}).get("cause")) for device, reason in failed]


def test_the_failed_originates_of_recording_07_read_as_their_outcomes() -> None:
    failures = _recorded_failures()
    read = {device: originated_leg_status(dial_end, reason, cause)
            for device, dial_end, reason, cause in failures}
    # 0699999999 appears twice (async, then sync): the same outcome
    assert read["Local/0699999999@sim-customer"] == "BUSY"
    assert read["Local/0688888888@sim-customer"] == "NOANSWER"
    assert read["Local/0677777777@sim-customer"] == "CONGESTION"
    assert read["Local/0600000000@sim-customer"] == ""     # reason 0, cause 0
    assert read["Local/1004@sim-agent"] == "BUSY"
    outcomes = {device: Outcome.of_dial_status(status) if status else Outcome.FAILED
                for device, status in read.items()}
    assert outcomes["Local/0688888888@sim-customer"] is Outcome.NO_ANSWER
    assert outcomes["Local/0600000000@sim-customer"] is Outcome.FAILED


def test_a_ring_out_is_read_from_the_hang_up_cause_alone() -> None:
    # The simulated PBX reports the Hangup before the OriginateResponse.
    assert originated_leg_status("", None, 19) == "NOANSWER"
    assert originated_leg_status("", None, 1) == "UNALLOCATED"
    assert Outcome.of_dial_status("UNALLOCATED") is Outcome.INVALID_NUMBER


@given(dial_end=st.sampled_from(["BUSY", "busy", "CONGESTION", "ANSWER", "CHANUNAVAIL"]),
       reason=st.one_of(st.none(), st.integers(0, 10)),
       cause=st.one_of(st.none(), st.integers(0, 127)))
def test_a_dial_end_says_more_than_the_reason_and_the_cause(
        dial_end: str, reason: int | None, cause: int | None) -> None:
    assert originated_leg_status(dial_end, reason, cause) == dial_end.upper()


@given(reason=st.sampled_from([1, 3, 4, 5, 8]), cause=st.one_of(st.none(), st.integers(0, 127)))
def test_a_telling_reason_says_more_than_the_cause(reason: int, cause: int | None) -> None:
    assert originated_leg_status("", reason, cause) == originated_leg_status("", reason, None)
    assert originated_leg_status("", reason, cause) != ""


@pytest.mark.parametrize("trunk", ["PJSIP/trunk", "PJSIP/{number}@a&PJSIP/b",
                                   "PJSIP/{number}@trunk,60", "Local/{number}@x{number}",
                                   "PJSIP/{number}@trunk\nAction: Hangup", "${TRUNK}/{number}"])
def test_a_trunk_that_could_dial_more_than_the_customer_is_refused(trunk: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, {"CTI_CALLBACKS_TRUNK": trunk})
    assert [key for key, _ in caught.value.problems] == ["callbacks.trunk"]


def test_the_default_trunk_is_the_shipped_pjsip_endpoint() -> None:
    settings = load_settings(None, {})
    assert settings.callbacks.trunk == "PJSIP/{number}@trunk"
    assert settings.dialplan.callback_customer == "cti-callback-customer"
