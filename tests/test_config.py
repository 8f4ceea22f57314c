"""Settings: defaults < config file < environment < explicit overrides, and the checks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shoal.config import ConfigError, Settings, build_settings, load_file


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("SHOAL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SHOAL_HOME", str(tmp_path / "home"))


def write(tmp_path: Path, text: str, name: str = "shoal.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults() -> None:
    s = build_settings()
    assert s == Settings()
    assert s.host == "127.0.0.1" and not s.auth_enabled and s.api_keys == ()
    assert s.base_url == "http://127.0.0.1:8000/v1"


def test_file_values(tmp_path: Path) -> None:
    cfg = write(tmp_path, "port: 9001\nmodels: [a, b]\nparallel: 2\ndata_dir: ~/shoal-data\napi_keys: x-key-0123456789ab, y-key-0123456789ab\n")
    s = build_settings(cfg)
    assert s.port == 9001 and s.models == ("a", "b") and s.parallel == 2
    assert s.data_dir == Path("~/shoal-data").expanduser()
    assert s.api_keys == ("x-key-0123456789ab", "y-key-0123456789ab")


def test_precedence_file_env_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = write(tmp_path, "api_keys: [from-file-0123456789]\nport: 9001\nhost: 0.0.0.0\n")
    assert build_settings(cfg).api_keys == ("from-file-0123456789",)
    monkeypatch.setenv("SHOAL_API_KEYS", "env1-key-0123456789, env2-key-0123456789,")
    s = build_settings(cfg)
    assert s.api_keys == ("env1-key-0123456789", "env2-key-0123456789") and s.port == 9001
    s = build_settings(cfg, api_keys=["flag-key-0123456789"], port=7000, host=None)
    assert s.api_keys == ("flag-key-0123456789",) and s.port == 7000
    assert s.host == "0.0.0.0"  # a None override means "not given"
    assert s.base_url == "http://127.0.0.1:7000/v1"


def test_empty_file_is_defaults(tmp_path: Path) -> None:
    assert build_settings(write(tmp_path, "")) == Settings()


def test_json_file_works(tmp_path: Path) -> None:
    assert build_settings(write(tmp_path, '{"port": 8123}', "shoal.json")).port == 8123


def test_unknown_setting_is_named(tmp_path: Path) -> None:
    cfg = write(tmp_path, "port: 1\nthreadz: 4\n")
    with pytest.raises(ConfigError) as info:
        build_settings(cfg)
    assert "threadz" in str(info.value) and str(cfg) in str(info.value)
    assert "threads" in str(info.value)  # the known ones are listed


@pytest.mark.parametrize(("text", "line"), [
    ("host: 127.0.0.1\nport: 8000\nmodels: [a, b\nparallel: 2\n", 4),
    ("host: 127.0.0.1\n  port: 8000\n", 2),
])
def test_malformed_yaml_names_file_and_line(tmp_path: Path, text: str, line: int) -> None:
    cfg = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_file(cfg)
    assert str(info.value).startswith(f"{cfg}:{line}:")


def test_not_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mapping"):
        load_file(write(tmp_path, "- a\n- b\n"))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        build_settings(tmp_path / "absent.yaml")


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "example.com"])
def test_non_loopback_without_keys_is_refused(host: str) -> None:
    with pytest.raises(ConfigError, match="auth off"):
        build_settings(host=host)
    assert build_settings(host=host, api_keys="k-0123456789abcdef").auth_enabled


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_loopback_without_keys_is_fine(host: str) -> None:
    assert build_settings(host=host).host == host


def test_ipv6_base_url() -> None:
    assert build_settings(host="::1", port=1).base_url == "http://[::1]:1/v1"


@pytest.mark.parametrize("overrides", [{"parallel": 0}, {"ctx_per_slot": 100}, {"max_queue": -1}, {"models": ""},
                                       {"first_byte_deadline": 0}, {"max_concurrency_per_key": -1},
                                       {"drain_seconds": -1}])
def test_impossible_values(overrides: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        build_settings(**overrides)


def test_database_url_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOAL_DATABASE_URL", "sqlite:///x.db")
    assert build_settings().database_url == "sqlite:///x.db"


def test_drain_seconds_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert build_settings().drain_seconds == 30.0
    monkeypatch.setenv("SHOAL_DRAIN_SECONDS", "2.5")
    assert build_settings().drain_seconds == 2.5
    assert build_settings(drain_seconds=4).drain_seconds == 4.0  # the flag wins
    monkeypatch.setenv("SHOAL_DRAIN_SECONDS", "soon")
    with pytest.raises(ConfigError, match="SHOAL_DRAIN_SECONDS must be a number"):
        build_settings()


def test_wrongly_typed_value_is_a_config_error(tmp_path: Path) -> None:
    cfg = write(tmp_path, "api_keys: [123456]\n")
    try:
        settings = build_settings(cfg)
    except ConfigError as exc:
        assert "api_keys" in str(exc)
        return
    from shoal.auth.keys import StaticKeys

    StaticKeys(settings.api_keys).check("Bearer 123456")  # or it must at least work as the string key


def test_limits_from_file_and_flags(tmp_path: Path) -> None:
    import argparse

    from shoal import cli

    s = build_settings(write(tmp_path, "first_byte_deadline: 20\nmax_concurrency_per_key: 4\n"))
    assert (s.first_byte_deadline, s.max_concurrency_per_key) == (20.0, 4)
    assert (Settings().first_byte_deadline, Settings().max_concurrency_per_key) == (60.0, 32)
    parser = argparse.ArgumentParser()
    cli._serve_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "--first-byte-deadline", "7.5", "--max-concurrency-per-key", "0"])
    assert (args.first_byte_deadline, args.max_concurrency_per_key) == (7.5, 0)


@pytest.mark.parametrize("source", ["flag", "env", "file"])
def test_short_static_keys_are_refused(source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    short = "hunter2-abc"
    if source == "env":
        monkeypatch.setenv("SHOAL_API_KEYS", f"a-long-enough-key-0001, {short}")
        call = build_settings
    elif source == "file":
        cfg = write(tmp_path, f"api_keys: [a-long-enough-key-0001, {short}]\n")
        call = lambda: build_settings(cfg)  # noqa: E731
    else:
        call = lambda: build_settings(api_keys=[short])  # noqa: E731
    with pytest.raises(ConfigError, match="shorter than 16 characters") as info:
        call()
    assert short not in str(info.value)  # the message is printed; the key is a secret
    assert build_settings(api_keys=["x" * 16]).api_keys == ("x" * 16,)


def test_serve_with_a_short_key_exits_with_the_message(capsys: pytest.CaptureFixture[str]) -> None:
    from shoal.cli import main

    assert main(["serve", "--api-key", "short-key"]) == 2
    assert "shorter than 16 characters" in capsys.readouterr().err
