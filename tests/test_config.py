"""Settings: TOML file plus CTI_* environment, strict validation, every
problem reported with its dotted key, secrets never shown."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cti.config import ConfigError, Settings, env_var, load_settings

SECRET = "hunter2-not-for-logs"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cti.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path | None, env: dict[str, str] | None = None) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env or {})
    return dict(caught.value.problems)


def test_defaults_without_file_or_environment() -> None:
    settings = load_settings(None, {})
    assert settings.ami.host == "127.0.0.1"
    assert settings.ami.port == 5038
    assert settings.ami.secret is None
    assert settings.redis.url is None
    assert (settings.http.host, settings.http.port) == ("127.0.0.1", 8080)
    assert settings.agi.port == 4573
    assert settings.log.format == "auto"
    assert settings.dialplan.inbound == "cti-inbound"
    assert settings.dialplan.spy == "cti-spy"
    assert settings.numbers.default_region == "FR"


def test_file_values_are_read(tmp_path: Path) -> None:
    path = write(tmp_path, """
[ami]
host = "10.0.0.5"
port = 5039
username = "cc"
secret = "s"
action_timeout = 2.5

[numbers]
default_region = "BE"
allowed_callback_countries = ["BE", "fr"]
""")
    settings = load_settings(path, {})
    assert settings.ami.host == "10.0.0.5"
    assert settings.ami.port == 5039
    assert settings.ami.action_timeout == 2.5
    assert settings.numbers.allowed_callback_countries == ["BE", "FR"]


def test_environment_wins_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[ami]\nhost = "from-file"\nport = 5039\n')
    settings = load_settings(path, {"CTI_AMI_HOST": "from-env"})
    assert settings.ami.host == "from-env"
    assert settings.ami.port == 5039


@pytest.mark.parametrize(
    ("var", "value", "section", "name", "expected"),
    [
        ("CTI_AMI_HOST", "pbx.local", "ami", "host", "pbx.local"),
        ("CTI_AMI_PORT", "6038", "ami", "port", 6038),
        ("CTI_AMI_USERNAME", "ops", "ami", "username", "ops"),
        ("CTI_HTTP_HOST", "0.0.0.0", "http", "host", "0.0.0.0"),
        ("CTI_HTTP_PORT", "9090", "http", "port", 9090),
        ("CTI_AGI_HOST", "0.0.0.0", "agi", "host", "0.0.0.0"),
        ("CTI_AGI_PORT", "4574", "agi", "port", 4574),
        ("CTI_LOG_FORMAT", "JSON", "log", "format", "json"),
        ("CTI_LOG_LEVEL", "Debug", "log", "level", "debug"),
        ("CTI_DIALPLAN_WAIT", "site-wait", "dialplan", "wait", "site-wait"),
        ("CTI_AMI_RECONNECT_BACKOFF_MAX", "60", "ami", "reconnect_backoff_max", 60.0),
    ],
)
def test_each_flat_variable_sets_its_setting(
    var: str, value: str, section: str, name: str, expected: object
) -> None:
    assert env_var(section, name) == var
    settings = load_settings(None, {var: value})
    assert getattr(getattr(settings, section), name) == expected


def test_secret_and_redis_url_come_from_the_environment() -> None:
    settings = load_settings(None, {"CTI_AMI_SECRET": SECRET,
                                    "CTI_REDIS_URL": "redis://:pw@redis:6379/0"})
    assert settings.ami.secret is not None
    assert settings.ami.secret.get_secret_value() == SECRET
    assert settings.redis.url is not None
    assert settings.redis.url.get_secret_value() == "redis://:pw@redis:6379/0"
    assert settings.redis.location == "redis://***@redis:6379/0"


def test_nested_form_is_accepted_too() -> None:
    assert load_settings(None, {"CTI_AMI__PORT": "6038"}).ami.port == 6038


def test_setting_both_forms_of_one_variable_is_an_error() -> None:
    found = problems(None, {"CTI_AMI_PORT": "1", "CTI_AMI__PORT": "1"})
    assert "CTI_AMI_PORT" in found["ami.port"]
    assert "CTI_AMI__PORT" in found["ami.port"]


def test_list_from_the_environment_is_comma_separated() -> None:
    settings = load_settings(None, {"CTI_NUMBERS_ALLOWED_CALLBACK_COUNTRIES": "fr, be,CH"})
    assert settings.numbers.allowed_callback_countries == ["FR", "BE", "CH"]


def test_empty_variable_counts_as_unset() -> None:
    settings = load_settings(None, {"CTI_REDIS_URL": "", "CTI_AMI_HOST": ""})
    assert settings.redis.url is None
    assert settings.ami.host == "127.0.0.1"


def test_misspelt_variable_of_a_known_section_is_refused() -> None:
    found = problems(None, {"CTI_AMI_HOTS": "x"})
    assert found["ami.hots"].startswith("unknown setting (from CTI_AMI_HOTS)")
    assert "did you mean host?" in found["ami.hots"]


def test_variables_outside_the_settings_sections_are_ignored() -> None:
    load_settings(None, {"CTI_CONFIG": "/etc/cti.toml", "CTI": "1", "HOME": "/root"})


def test_unknown_keys_in_the_file_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, '_env_file = "x"\n[ami]\nhots = "x"\n\n[htp]\nport = 1\n')
    found = problems(path)
    assert found["ami.hots"] == "unknown setting; did you mean host?"
    assert found["htp"] == "unknown section; did you mean http?"
    assert found["_env_file"] == "unknown section"


@pytest.mark.parametrize("port", [0, -1, 65536, 70000])
def test_port_out_of_range_is_refused(tmp_path: Path, port: int) -> None:
    found = problems(write(tmp_path, f"[http]\nport = {port}\n"))
    assert f"(got {port})" in found["http.port"]


@given(st.integers(min_value=1, max_value=65535))
def test_every_valid_port_is_accepted_from_the_environment(port: int) -> None:
    assert load_settings(None, {"CTI_AGI_PORT": str(port)}).agi.port == port


def test_bad_value_from_the_environment_names_the_variable() -> None:
    found = problems(None, {"CTI_AMI_PORT": "five"})
    assert found["ami.port"].endswith("(from CTI_AMI_PORT)")
    assert "'five'" in found["ami.port"]


@pytest.mark.parametrize("host", ["", "   ", "a b", "http://x"])
def test_host_must_be_a_host(tmp_path: Path, host: str) -> None:
    found = problems(write(tmp_path, f'[ami]\nhost = "{host}"\n'))
    assert "host name or an IP address" in found["ami.host"]


def test_context_names_cannot_carry_dialplan_syntax(tmp_path: Path) -> None:
    found = problems(write(tmp_path, '[dialplan]\nconnect = "cti-connect,s,1"\n'))
    assert "Asterisk context name" in found["dialplan.connect"]


def test_unknown_region_names_the_list_item(tmp_path: Path) -> None:
    found = problems(write(tmp_path, '[numbers]\nallowed_callback_countries = ["FR", "XX"]\n'))
    assert "region code" in found["numbers.allowed_callback_countries[1]"]


def test_backoff_max_below_min_is_refused() -> None:
    found = problems(None, {"CTI_AMI_RECONNECT_BACKOFF_MIN": "10",
                            "CTI_AMI_RECONNECT_BACKOFF_MAX": "5"})
    assert "reconnect_backoff_min" in found["ami.reconnect_backoff_max"]


def test_log_format_must_be_known() -> None:
    found = problems(None, {"CTI_LOG_FORMAT": "xml"})
    assert "CTI_LOG_FORMAT" in found["log.format"]


def test_toml_syntax_error_gives_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[ami]\nhost = "x"\nport = = 3\n')
    found = problems(path)
    assert found[str(path)].startswith("TOML syntax error at line 3, column")


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    assert problems(path) == {str(path): "no such file"}


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, '[ami]\nport = 0\nhots = 1\n[http]\nport = 99999\n')
    found = problems(path, {"CTI_LOG_LEVEL": "loud"})
    assert set(found) == {"ami.port", "ami.hots", "http.port", "log.level"}


def test_secrets_are_never_shown(tmp_path: Path) -> None:
    url = f"redis://:{SECRET}@redis:6379/0"
    settings = load_settings(None, {"CTI_AMI_SECRET": SECRET, "CTI_REDIS_URL": url})
    for shown in (repr(settings), str(settings), settings.model_dump_json(),
                  "\n".join(settings.summary())):
        assert SECRET not in shown
    assert "secret=**********" in settings.summary()[0]


def test_bad_secret_values_are_not_echoed(tmp_path: Path) -> None:
    found = problems(None, {"CTI_REDIS_URL": f"http://{SECRET}@x"})
    assert SECRET not in found["redis.url"]
    assert "redis://" in found["redis.url"]


def test_building_settings_does_not_read_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CTI_AMI_PORT", "6000")
    monkeypatch.setenv("CTI_AMI__PORT", "6001")
    assert Settings().ami.port == 5038


def test_load_settings_reads_the_process_environment_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CTI_HTTP_PORT", "8181")
    assert load_settings(None).http.port == 8181
