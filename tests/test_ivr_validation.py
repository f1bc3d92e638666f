"""Flow files are validated at load: a bad flow is refused with its file,
line and reason, and the running version stays; reloads never change the
flow under a call in progress."""

from __future__ import annotations

import asyncio
import os
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from structlog.testing import capture_logs

from cti.ivr.flows import (
    EndKind,
    FlowError,
    FlowLibrary,
    IvrOutcome,
    MemoryDirectory,
    ivr_routes,
    load_flow,
    sound_catalogue,
)
from cti.ivr.server import FastAgiServer
from tests.agi_caller import FakeAsterisk

SAMPLES = Path(__file__).parent.parent / "dialplans" / "ivr"
NOW = datetime(2026, 3, 10, 10, 0, tzinfo=ZoneInfo("Europe/Paris"))

GOOD = """\
fallback_service: general
steps:
  - id: menu
    type: menu
    prompt: {prompt}
    options: {{1: sales, 2: support}}
    on_invalid: support
  - {{id: sales, type: handoff, service: sales}}
  - {{id: support, type: handoff, service: support}}
"""

# Each broken flow marks the line the refusal must name with `# <-`.
BROKEN = {
    "unknown step type": ("""\
fallback_service: general
steps:
  - id: hello
    type: plai          # <-
    prompt: hello
    next: bye
  - {id: bye, type: hangup}
""", "step 'hello': type: unknown step type 'plai' (expected one of: play, menu,"),
    "dangling goto": ("""\
fallback_service: general
steps:
  - id: menu
    type: menu
    prompt: hello
    options:
      1: sales
      2: suport         # <-
    on_invalid: sales
  - {id: sales, type: handoff, service: sales}
""", "step 'menu': options.2: step 'menu' goes to unknown step 'suport'"),
    "loop with no exit": ("""\
fallback_service: general
steps:
  - id: start
    type: menu
    prompt: hello
    options: {1: done, 2: again}
    on_invalid: done
  - id: again           # <-
    type: play
    prompt: hello
    next: twice
  - {id: twice, type: goto, target: again}
  - {id: done, type: hangup}
""", "step 'again': loop with no exit: again -> twice -> again never reaches a handoff, "
     "hangup, transfer or callback"),
    "prompt not in the catalogue": ("""\
fallback_service: general
steps:
  - id: hello
    type: play
    prompt: cti/helo    # <-
    next: bye
  - {id: bye, type: hangup}
""", "step 'hello': prompt: prompt 'cti/helo' is not in the prompt catalogue"),
    "prompt of one language not in the catalogue": ("""\
fallback_service: general
steps:
  - id: hello
    type: play
    prompt:
      en: cti/hello
      fr: cti/bonjour   # <-
    next: bye
  - {id: bye, type: hangup}
""", "step 'hello': prompt.fr: prompt 'cti/bonjour' is not in the prompt catalogue"),
    "empty prompt": ("""\
fallback_service: general
steps:
  - id: hello
    type: play
    prompt: ""          # <-
    next: bye
  - {id: bye, type: hangup}
""", "step 'hello': prompt: empty prompt: name a sound file"),
    "prompt without the flow language": ("""\
fallback_service: general
language: en
steps:
  - id: hello
    type: play
    prompt: {fr: cti/hello}   # <-
    next: bye
  - {id: bye, type: hangup}
""", "step 'hello': prompt: prompt has no sound for the flow language 'en' (has fr)"),
    "menu option that is not one DTMF digit": ("""\
fallback_service: general
steps:
  - id: menu
    type: menu
    prompt: hello
    options:
      1: bye
      12: bye           # <-
    on_invalid: bye
  - {id: bye, type: hangup}
""", "step 'menu': options.12: menu option '12' is not a single DTMF digit (0-9, *, #)"),
    "duplicated step id": ("""\
fallback_service: general
steps:
  - id: hello
    type: play
    prompt: hello
    next: bye
  - id: hello           # <-
    type: hangup
  - {id: bye, type: hangup}
""", "step 'hello': duplicate step id 'hello' (already used by steps[0])"),
    "bad time zone": ("""\
fallback_service: general
steps:
  - id: open
    type: hours
    schedule:
      timezone: Europe/Pariss     # <-
      weekly: {mon-fri: "08:00-18:00"}
    next: bye
    on_closed: bye
  - {id: bye, type: hangup}
""", "step 'open': schedule.timezone: unknown time zone 'Europe/Pariss'"),
    "day given twice": ("""\
fallback_service: general
steps:
  - id: open
    type: hours
    schedule:
      timezone: Europe/Paris
      weekly:
        mon-fri: "08:00-18:00"
        fri: "08:00-12:00"      # <-
    next: bye
    on_closed: bye
  - {id: bye, type: hangup}
""", "step 'open': schedule.weekly.fri: fri is in both 'mon-fri' and 'fri'"),
    "bad schedule time": ("""\
fallback_service: general
steps:
  - id: open
    type: hours
    schedule:
      timezone: Europe/Paris
      weekly:
        mon-fri: ["08:00-12:00", "13:60-18:00"]   # <-
    next: bye
    on_closed: bye
  - {id: bye, type: hangup}
""", "step 'open': schedule.weekly.mon-fri[1]: bad time '13:60': outside 00:00-24:00"),
    "unreachable step": ("""\
fallback_service: general
steps:
  - {id: hello, type: play, prompt: hello, next: bye}
  - {id: bye, type: hangup}
  - id: orphan          # <-
    type: hangup
""", "step 'orphan': step 'orphan' is unreachable from the start step 'hello'"),
    "duplicate key": ("""\
fallback_service: general
steps:
  - id: hello
    type: play
    prompt: hello
    next: bye
    next: hello         # <-
  - {id: bye, type: hangup}
""", "duplicate key 'next' (first at line 6)"),
    "unknown field": ("""\
fallback_service: general
steps:
  - id: menu
    type: menu
    prompt: hello
    options: {1: bye}
    tiemout: 5          # <-
    on_invalid: bye
  - {id: bye, type: hangup}
""", "step 'menu': tiemout: unknown field"),
    "transfer to a bad number": ("""\
fallback_service: general
steps:
  - id: out
    type: transfer
    number: "0033-1;x"  # <-
    context: from-cti
""", "step 'out': number: String should match pattern"),
    "field never collected": ("""\
fallback_service: general
steps:
  - id: account
    type: collect
    prompt: hello
    into: account
    max_length: 8
    next: say
    on_invalid: bye
  - id: say
    type: say
    kind: digits
    value: "${fields.acount}"    # <-
    next: bye
  - {id: bye, type: hangup}
""", "step 'say': value: no collect step fills field 'acount' (in '${fields.acount}')"),
    "bad service name": ("""\
fallback_service: general
steps:
  - id: out
    type: handoff
    service: "sales,x"  # <-
""", "step 'out': service: String should match pattern"),
    "broken YAML": ("""\
fallback_service: general
steps:
  - id: menu
    type: menu
    prompt: hello
    options: {1: bye, 2: bye
    on_invalid: bye     # <-
""", "bad YAML: while parsing a flow mapping expected ',' or '}'"),
}


def marked_line(text: str) -> int:
    lines = [number for number, line in enumerate(text.splitlines(), 1) if "# <-" in line]
    assert len(lines) == 1
    return lines[0]


@pytest.mark.parametrize("case", BROKEN, ids=list(BROKEN))
def test_broken_flow_is_refused_with_file_line_and_reason(tmp_path: Path, case: str) -> None:
    text, reason = BROKEN[case]
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    library = FlowLibrary(tmp_path, catalogue={"hello", "cti/hello"})
    with capture_logs() as logs:
        report = library.reload()
    assert report.loaded == ()
    [error] = report.refused
    assert library.get("broken") is None
    assert library.errors["broken"] is error
    line = marked_line(text)
    assert error.first.line == line, str(error)
    assert error.first.file == str(path)
    assert str(error.first).startswith(f"{path}:{line}:")
    assert reason in error.first.message, str(error)
    refused = [entry for entry in logs if entry["event"] == "ivr.flow_refused"]
    assert refused[0]["file"] == str(path) and refused[0]["line"] == line


def test_every_problem_of_a_file_is_reported_in_line_order(tmp_path: Path) -> None:
    path = tmp_path / "many.yaml"
    path.write_text("""\
fallback_service: general
steps:
  - id: menu
    type: menu
    prompt: hello
    options: {1: nowhere}
    on_invalid: elsewhere
  - {id: menu, type: hangup}
""")
    with pytest.raises(FlowError) as refused:
        load_flow(path)
    assert [(p.line, p.message) for p in refused.value.problems] == [
        (6, "step 'menu': options.1: step 'menu' goes to unknown step 'nowhere'"),
        (7, "step 'menu': on_invalid: step 'menu' goes to unknown step 'elsewhere'"),
        (8, "step 'menu': duplicate step id 'menu' (already used by steps[0])"),
    ]


def test_a_did_answered_by_two_flows_refuses_the_second(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text('dids: ["0140000010"]\n' + GOOD.format(prompt="hello"))
    (tmp_path / "b.yaml").write_text('dids: ["0140000011", "0140000010"]\n'
                                     + GOOD.format(prompt="hello"))
    library = FlowLibrary(tmp_path)
    report = library.reload()
    assert report.loaded == ("a",)
    [error] = report.refused
    assert str(error.first) == (f"{tmp_path / 'b.yaml'}:1:22: dids[1]: DID 0140000010 is "
                                "already answered by flow 'a'")
    version = library.for_did("0140000010")
    assert version is not None and version.name == "a"


def test_a_reload_with_a_broken_file_keeps_the_previous_version(tmp_path: Path) -> None:
    path = tmp_path / "main.yaml"
    path.write_text(GOOD.format(prompt="menu-v1"))
    library = FlowLibrary(tmp_path)
    assert library.reload().loaded == ("main",)
    running = library.get("main")
    assert running is not None

    path.write_text(GOOD.format(prompt="menu-v2").replace("on_invalid: support",
                                                          "on_invalid: suport"))
    with capture_logs() as logs:
        report = library.reload()
    assert report.loaded == () and len(report.refused) == 1
    assert library.get("main") is running  # still serving the good one
    assert library.errors["main"].first.line == 7
    [refused] = [e for e in logs if e["event"] == "ivr.flow_refused"]
    assert refused["running"] == running.version and refused["line"] == 7

    path.write_text(GOOD.format(prompt="menu-v2"))
    assert library.reload().loaded == ("main",)
    fixed = library.get("main")
    assert fixed is not None and fixed.version != running.version
    assert library.errors == {}


def test_poll_reloads_only_when_a_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "main.yaml"
    path.write_text(GOOD.format(prompt="menu-v1"))
    library = FlowLibrary(tmp_path)
    assert library.poll() is not None  # first look: everything is new
    assert library.poll() is None
    path.write_text(GOOD.format(prompt="menu-v22"))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    report = library.poll()
    assert report is not None and report.loaded == ("main",)
    path.unlink()
    report = library.poll()
    assert report is not None and report.removed == ("main",)
    assert library.get("main") is None


async def test_watch_picks_up_a_changed_file_until_cancelled(tmp_path: Path) -> None:
    path = tmp_path / "main.yaml"
    path.write_text(GOOD.format(prompt="menu-v1"))
    library = FlowLibrary(tmp_path)
    library.reload()
    first = library.get("main")
    assert first is not None
    watcher = asyncio.create_task(library.watch(interval=0.01))
    try:
        path.write_text(GOOD.format(prompt="menu-version-2"))
        for _ in range(200):
            current = library.get("main")
            if current is not None and current.version != first.version:
                break
            await asyncio.sleep(0.01)
        current = library.get("main")
        assert current is not None and current.version != first.version
    finally:
        watcher.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watcher


async def test_a_call_in_progress_keeps_its_version_after_a_reload(tmp_path: Path) -> None:
    path = tmp_path / "main.yaml"
    path.write_text(GOOD.format(prompt="menu-v1"))
    library = FlowLibrary(tmp_path)
    library.reload()
    started = library.get("main")
    assert started is not None
    outcomes: list[IvrOutcome] = []

    async def on_outcome(outcome: IvrOutcome) -> None:
        outcomes.append(outcome)

    def reload_mid_call(command: str) -> None:
        # While the first call waits in the menu, the admin ships v2 whose
        # options now mean something else.
        if command.startswith("GET DATA menu-v1"):
            path.write_text(GOOD.format(prompt="menu-v2").replace(
                "1: sales, 2: support", "1: support, 2: sales"))
            assert library.reload().loaded == ("main",)

    server = FastAgiServer(ivr_routes(library, MemoryDirectory(), on_outcome, lambda: NOW),
                           port=0)
    await server.start()
    try:
        first = FakeAsterisk(["1"], on_command=reload_mid_call)
        await first.call(server.port)
        second = FakeAsterisk(["1"])
        await second.call(server.port)
    finally:
        await server.close()
    assert first.sent("GET DATA") == ["GET DATA menu-v1 5000 1"]
    assert first.variables["CTI_SERVICE"] == "sales"  # v1's meaning of 1
    assert second.sent("GET DATA") == ["GET DATA menu-v2 5000 1"]
    assert second.variables["CTI_SERVICE"] == "support"
    assert [o.version for o in outcomes] == [started.version, library.flows["main"].version]
    assert outcomes[0].ending.kind is EndKind.HANDOFF


def test_sample_flows_are_valid_and_refused_without_their_prompts(tmp_path: Path) -> None:
    library = FlowLibrary(SAMPLES)
    report = library.reload()
    assert set(report.loaded) == {"main", "balance"} and report.refused == ()
    sounds = tmp_path / "sounds"
    (sounds / "cti").mkdir(parents=True)
    for name in ("euros", "cents", "and", "minus", "vm-goodbye"):
        (sounds / f"{name}.gsm").write_bytes(b"")
    catalogue = sound_catalogue(sounds)
    assert catalogue == {"euros", "cents", "and", "minus", "vm-goodbye"}
    with pytest.raises(FlowError) as refused:
        load_flow(SAMPLES / "balance.yaml", catalogue=catalogue)
    assert refused.value.first.message == ("step 'welcome': prompt: prompt 'cti/balance-welcome' "
                                           "is not in the prompt catalogue")
