"""The `cti` command: check-config, replay, --version; in process through
`main(argv)` and once through the installed console script."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from cti import __version__
from cti.cli import SUBCOMMANDS, main

SECRET = "hunter2-not-for-logs"
RECORDING = Path(__file__).parent / "fixtures" / "asterisk-22" / "02-inbound-caller-abandons.txt"
CTI = Path(sys.executable).with_name("cti")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in list(os.environ):
        if var.upper().startswith("CTI_"):
            monkeypatch.delenv(var)


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    config = structlog.get_config()
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    structlog.reset_defaults()
    structlog.configure(**config)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cti.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_check_config_prints_a_masked_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, f'[ami]\nhost = "pbx.local"\nsecret = "{SECRET}"\n')
    monkeypatch.setenv("CTI_REDIS_URL", f"redis://:{SECRET}@redis:6379/0")
    assert main(["check-config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"configuration OK ({path} and the environment)")
    assert "host=pbx.local" in out
    assert "secret=**********" in out
    assert "url=redis://***@redis:6379/0" in out
    assert SECRET not in out + err


def test_check_config_without_a_file_checks_defaults_and_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CTI_HTTP_PORT", "9090")
    assert main(["check-config"]) == 0
    out = capsys.readouterr().out
    assert "defaults and the environment" in out
    assert "http: host=127.0.0.1 port=9090" in out
    assert "url=in-process (demo only)" in out


def test_check_config_lists_every_error_on_stderr_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, f'[ami]\nport = 0\nsecret = "{SECRET}"\nhots = "x"\n')
    monkeypatch.setenv("CTI_LOG_FORMAT", "xml")
    assert main(["check-config", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert [line.split(":", 1)[0] for line in lines] == ["ami.hots", "ami.port", "log.format"]
    assert lines[0] == "ami.hots: unknown setting; did you mean host?"
    assert "(got 0)" in lines[1]
    assert "(from CTI_LOG_FORMAT)" in lines[2]
    assert SECRET not in err


def test_check_config_of_a_missing_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "absent.toml"
    assert main(["check-config", str(path)]) == 2
    assert capsys.readouterr().err == f"{path}: no such file\n"


def test_check_config_reports_the_line_of_a_toml_syntax_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "[ami]\nport = 5038\nhost =\n")
    assert main(["check-config", str(path)]) == 2
    assert f"{path}: TOML syntax error at line 3" in capsys.readouterr().err


def test_replay_prints_one_json_line_per_ended_call_then_a_summary(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["replay", str(RECORDING)]) == 0
    *calls, summary = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(c["call"], c["outcome"], c["caller_number"]) for c in calls] == [
        ("1795369622.4", "abandoned", "+33698765432")
    ]
    assert summary["summary"]["calls"] == 1


def test_replay_of_a_missing_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", str(tmp_path / "absent.txt")]) == 2
    assert "absent.txt" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"cti {__version__}\n"


def test_no_command_or_an_unknown_one_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([]) == 2
    assert main(["frobnicate"]) == 2
    assert "usage: cti" in capsys.readouterr().err


def test_subcommands_are_registered_by_name() -> None:
    assert {"check-config", "replay"} <= set(SUBCOMMANDS)


def test_the_cli_loads_no_feature_before_its_subcommand_runs() -> None:
    code = "import sys, cti.cli; print(sorted(m for m in sys.modules if m.startswith('cti.')))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout
    assert "cti.replay" not in loaded
    assert "cti.calls" not in loaded


def test_console_script_checks_config_from_the_environment() -> None:
    env = {**os.environ, "CTI_AMI_SECRET": SECRET, "CTI_AMI_PORT": "70000"}
    bad = subprocess.run([str(CTI), "check-config"], capture_output=True, text=True, env=env,
                         stdin=subprocess.DEVNULL, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.startswith("ami.port: ")
    env["CTI_AMI_PORT"] = "5038"
    good = subprocess.run([str(CTI), "check-config"], capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL, timeout=60)
    assert good.returncode == 0, good.stderr
    assert SECRET not in good.stdout + good.stderr
