"""Replay of real Asterisk 22 recordings: the oracle for translation and tracker.

Expected values come from reading each recording by hand (see
tests/fixtures/asterisk-22/RECORDINGS.md and the driver's notes in each
transcript); times are checked within 50 ms.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from cti.replay import replay, run

FIXTURES = Path(__file__).parent / "fixtures" / "asterisk-22"

A = "answered"
AB = "abandoned"
UN = "unanswered"
F = "failed"

# (call, caller_number, outcome, agent, wait_ms, talk_ms, transfers), in end order
EXPECTED: dict[str, list[tuple[str, str | None, str, str | None, int | None, int | None, int]]] = {
    "01-inbound-redirect-answered": [
        # cti-wait at +637, bridged with Bob at +3644, caller gone at +11654
        ("1795369606.0", "+33612345678", A, "Local/1001@sim-agent", 3007, 8010, 0),
    ],
    "02-inbound-caller-abandons": [
        ("1795369622.4", "+33698765432", AB, None, None, None, 0),
    ],
    "03-rona-then-second-agent": [
        # Dave never answers (RONA), Carol answers at +11147
        ("1795369635.6", "+33655512345", A, "Local/1002@sim-agent", 10520, 6003, 0),
    ],
    "04-queue-vip-priority": [
        # the VIP joined second but is served first
        ("1795369657.14", "+33699999910", A, "Local/1002@sim-agent", 5007, 6016, 0),
        ("1795369657.12", "+33611111111", A, "Local/1002@sim-agent", 15016, 6008, 0),
    ],
    "05-queue-abandon-rna-dynamic-members": [
        ("1795369683.20", "+33622222222", AB, None, None, None, 0),
        ("1795369696.28", "+33633333333", A, "Local/1007@sim-agent", 2008, 5005, 0),
    ],
    "06-transfers-blind-redirect-and-atxfer": [
        # blind: Frank then Grace by Redirect; attended: Atxfer to Grace
        ("1795369709.34", "+33644444444", A, "Local/1006@sim-agent", 1007, 8037, 1),
        ("1795369720.40", "+33655555555", A, "Local/1006@sim-agent", 1005, 9498, 1),
    ],
    "07-callback-and-originate-failures": [
        # agent-first callback: agent 1001 rung first, then the customer
        ("cti-cb-42-agent", "0611223344", A, "Local/1001@sim-agent", None, 5014, 0),
        ("1795369746.50", "0100000000", F, None, None, None, 0),  # busy
        ("1795369747.52", "0100000000", F, None, None, None, 0),  # no answer
        ("1795369754.54", "0100000000", F, None, None, None, 0),  # congestion
        ("1795369755.56", "0100000000", F, None, None, None, 0),  # no such number
        ("1795369756.58", None, F, None, None, None, 0),  # synchronous, busy
        ("1795369756.60", None, F, None, None, None, 0),  # busy agent 1004
    ],
    "08-fastagi-ivr": [
        # the IVR flow ends in the dialplan's Hangup(); the second caller
        # hangs up in the middle of the IVR
        ("1795369761.62", "+33677777777", UN, None, None, None, 0),
        ("1795369772.64", "+33688888888", AB, None, None, None, 0),
    ],
    "09-resync-actions": [
        # all three hung up by AMI: the waiting ones were not abandoned
        ("1795369788.70", "+33600000002", UN, None, None, None, 0),
        ("1795369788.72", "+33600000003", UN, None, None, None, 0),
        ("1795369787.66", "+33600000001", A, "Local/1005@sim-agent", 1003, 1514, 0),
    ],
    "10-supervisor-chanspy": [
        # the supervisor's ChanSpy legs are calls of their own, never bridged
        ("1795369795.78", "2001", UN, None, None, None, 0),
        ("1795369802.80", "2001", UN, None, None, None, 0),
        ("1795369794.74", "+33612121212", A, "Local/1005@sim-agent", 1004, 12244, 0),
    ],
    "11-ami-lifecycle": [],
}


def _close(actual: int | None, expected: int | None) -> bool:
    if expected is None or actual is None:
        return actual is expected
    return abs(actual - expected) <= 50


@pytest.mark.parametrize("scenario", sorted(EXPECTED))
def test_replay_gives_the_calls_of_the_recording(scenario: str) -> None:
    records, summary = replay(FIXTURES / f"{scenario}.txt")
    got = [
        (r.call, r.caller_number, r.outcome.value, r.agent, r.wait_ms, r.talk_ms, r.transfers)
        for r in records
    ]
    expected = EXPECTED[scenario]
    assert [g[:4] + g[6:] for g in got] == [e[:4] + e[6:] for e in expected]
    for g, e in zip(got, expected, strict=True):
        assert _close(g[4], e[4]), f"{g[0]} wait_ms {g[4]} != {e[4]}"
        assert _close(g[5], e[5]), f"{g[0]} talk_ms {g[5]} != {e[5]}"
    assert summary["calls"] == len(expected)
    assert summary["unknown_event_types"] == []


def test_every_event_of_a_recording_is_counted() -> None:
    # recording 01's events-on session received 120 events (summary.json)
    _, summary = replay(FIXTURES / "01-inbound-redirect-answered.txt")
    assert summary["events"] == 120


def test_caller_names_keep_their_utf8() -> None:
    records, _ = replay(FIXTURES / "12-panoramisk-live-check.txt")
    assert records[0].caller_name == "Zoë Ærø"


def test_replay_prints_one_json_line_per_call_then_the_summary() -> None:
    out = io.StringIO()
    assert run(FIXTURES / "04-queue-vip-priority.txt", out) == 0
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["call"] for line in lines[:-1]] == ["1795369657.14", "1795369657.12"]
    assert set(lines[0]) == {
        "call", "caller_number", "caller_name", "outcome", "agent", "wait_ms", "talk_ms",
        "transfers",
    }
    assert lines[-1]["summary"]["calls"] == 2


def test_a_file_that_is_not_a_recording_is_refused_with_exit_2(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.txt"
    bogus.write_text("hello\nworld\n")
    err = io.StringIO()
    code = subprocess.run(
        [sys.executable, "-c", "import sys; from pathlib import Path; from cti.replay import run;"
         f" sys.exit(run(Path({str(bogus)!r}), sys.stdout))"],
        capture_output=True, text=True, check=False,
    )
    assert code.returncode == 2
    assert "not a recording" in code.stderr
    assert code.stdout == ""
    del err


def test_a_missing_file_is_refused_with_exit_2(tmp_path: Path) -> None:
    out = io.StringIO()
    assert run(tmp_path / "absent.txt", out) == 2
    assert out.getvalue() == ""


def test_a_recording_with_only_agi_traffic_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "agi.txt"
    path.write_bytes(b"# x\n### << agi1 +1ms\nagi_network: yes\n\n")
    assert run(path, io.StringIO()) == 2
