"""``hf:`` local models: spec parsing, resolution from a real hub-cache layout, offline errors. No network."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import huggingface_hub
import pytest

from shoal.backends.local.fetch import ModelFetchError
from shoal.backends.local.hub import (
    HubFile,
    hub_cache_dir,
    hub_offline,
    parse_hub_spec,
    resolve_hub_file,
)
from shoal.config import ConfigError, build_settings

MAIN = "a" * 40
OLD = "b" * 40


def add_snapshot(cache: Path, repo_id: str, commit: str, files: dict[str, bytes],
                 refs: tuple[str, ...] = ()) -> None:
    """Lay files out as huggingface_hub does: content-addressed blobs, snapshot symlinks, refs naming commits."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        sha = hashlib.sha256(data).hexdigest()
        (repo / "blobs" / sha).write_bytes(data)
        link = repo / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        depth = name.count("/") + 2  # up from snapshots/<commit>/<dirs...> to the repo folder
        link.symlink_to(Path(*[".."] * depth, "blobs", sha))
    for ref in refs:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / ref).write_text(commit)


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    root = tmp_path / "hub"
    add_snapshot(root, "owner/repo", MAIN, {"model.gguf": b"GGUF main", "sub/dir/q4.gguf": b"GGUF nested"},
                 refs=("main",))
    add_snapshot(root, "owner/repo", OLD, {"model.gguf": b"GGUF old"}, refs=("v1",))
    return root


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if resolution tries to download."""
    def refuse(*args: object, **kwargs: object) -> str:
        raise AssertionError(f"a download was attempted: {args} {kwargs}")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME", "HF_HUB_OFFLINE",
                 "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)


def test_parse_forms() -> None:
    assert parse_hub_spec("owner/repo/model.gguf") == HubFile("owner/repo", "model.gguf")
    assert parse_hub_spec(" owner/repo/sub/dir/q4.gguf@v1 ") == HubFile("owner/repo", "sub/dir/q4.gguf", "v1")
    assert parse_hub_spec("o/r/m.GGUF@refs/pr/1").revision == "refs/pr/1"
    ref = parse_hub_spec("owner/repo/sub/q4.gguf@v1")
    assert str(ref) == "owner/repo/sub/q4.gguf@v1"
    assert ref.download_command() == "hf download owner/repo sub/q4.gguf --revision v1"


@pytest.mark.parametrize("spec, problem", [
    ("owner/model.gguf", "expected owner/repo/path"),
    ("model.gguf", "expected owner/repo/path"),
    ("owner/repo/", "empty"),
    ("owner/repo//model.gguf", "empty"),
    ("owner/repo/../x.gguf", "'..'"),
    ("owner/re--po/model.gguf", "repo 're--po'"),
    ("/repo/model.gguf", "owner ''"),
    ("owner/repo/model.bin", "must be a .gguf"),
    ("owner/repo/model.gguf@", "revision"),
])
def test_malformed_spec_is_a_config_error(spec: str, problem: str, no_network: None) -> None:
    with pytest.raises(ValueError, match="expected owner/repo") as info:
        parse_hub_spec(spec)
    assert problem in str(info.value)
    with pytest.raises(ConfigError, match="expected owner/repo"):
        resolve_hub_file(spec)


def test_malformed_spec_fails_at_start_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "shoal.yaml"
    path.write_text("models:\n  - id: m\n    deployments:\n      - type: local\n        hf: owner/model.gguf\n")
    with pytest.raises(ConfigError) as info:
        build_settings(path)
    message = str(info.value)
    assert message.startswith(f"{path}:5: "), message
    assert "hf 'owner/model.gguf'" in message and "owner/repo/path/in/repo.gguf" in message


def test_good_spec_passes_the_catalog() -> None:
    from shoal.catalog import LocalDeployment

    spec = LocalDeployment(type="local", hf="owner/repo/sub/q4.gguf@v1")
    assert spec.hf == "owner/repo/sub/q4.gguf@v1"


def test_resolves_from_the_cache_without_network(cache: Path, no_network: None) -> None:
    path = resolve_hub_file("owner/repo/model.gguf", cache, offline=False)
    assert path == cache / "models--owner--repo" / "snapshots" / MAIN / "model.gguf"
    assert path.read_bytes() == b"GGUF main"
    nested = resolve_hub_file("owner/repo/sub/dir/q4.gguf", cache, offline=False)
    assert nested.read_bytes() == b"GGUF nested"


def test_revision_by_tag_or_commit(cache: Path, no_network: None) -> None:
    assert resolve_hub_file("owner/repo/model.gguf@v1", cache).read_bytes() == b"GGUF old"
    assert resolve_hub_file(f"owner/repo/model.gguf@{OLD}", cache).read_bytes() == b"GGUF old"
    assert resolve_hub_file(f"owner/repo/model.gguf@{MAIN}", cache).read_bytes() == b"GGUF main"


def test_cache_location_follows_the_environment_at_call_time(cache: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             no_network: None) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert hub_cache_dir() == tmp_path / "home" / ".cache" / "huggingface" / "hub"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub_cache_dir() == tmp_path / "xdg" / "huggingface" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    assert hub_cache_dir() == tmp_path / "hf-home" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    assert hub_cache_dir() == cache
    # huggingface_hub read its own constants at import; the cache found is still the one the env names now.
    assert resolve_hub_file("owner/repo/model.gguf").read_bytes() == b"GGUF main"


def test_offline_flag_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not hub_offline()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_offline()
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert not hub_offline()
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "yes")
    assert hub_offline()


@pytest.mark.parametrize("spec, command", [
    ("owner/repo/missing.gguf", "hf download owner/repo missing.gguf"),
    ("owner/repo/model.gguf@v2", "hf download owner/repo model.gguf --revision v2"),
    ("other/repo/model.gguf", "hf download other/repo model.gguf"),
])
def test_missing_file_offline_says_how_to_get_it(cache: Path, monkeypatch: pytest.MonkeyPatch, spec: str,
                                                 command: str, no_network: None) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelFetchError) as info:
        resolve_hub_file(spec)
    message = str(info.value)
    assert "is not in the Hugging Face hub cache" in message and str(cache) in message
    assert "HF_HUB_OFFLINE=1" in message and f"`{command}`" in message


def test_missing_file_online_is_downloaded_into_the_cache(cache: Path, monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    calls: list[tuple[tuple[object, ...], dict[str, object]]] = []

    def download(*args: object, **kwargs: object) -> str:
        calls.append((args, kwargs))
        add_snapshot(cache, "owner/repo", MAIN, {"new.gguf": b"GGUF new"})
        return str(cache / "models--owner--repo" / "snapshots" / MAIN / "new.gguf")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    with caplog.at_level(logging.INFO, logger="shoal.models"):
        path = resolve_hub_file("owner/repo/new.gguf", cache, offline=False)
    assert path.read_bytes() == b"GGUF new"
    assert calls == [(("owner/repo", "new.gguf"), {"revision": None, "cache_dir": cache})]
    assert f"downloading new.gguf from owner/repo (revision main) into {cache}" in caplog.text


def test_failed_download_is_a_fetch_error(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def download(*args: object, **kwargs: object) -> str:
        raise OSError("no route to host")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    with pytest.raises(ModelFetchError, match="download failed: OSError: no route to host.*`hf download owner/repo x.gguf`"):
        resolve_hub_file("owner/repo/x.gguf", cache, offline=False)
