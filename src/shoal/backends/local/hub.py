"""Local GGUF models named by a Hugging Face repo and file: ``owner/repo/path/in/repo.gguf[@revision]``.

The file comes from the local Hugging Face hub cache when it is there (the same
cache, and the same ``HF_HUB_CACHE`` / ``HF_HOME`` / ``XDG_CACHE_HOME`` settings,
as ``huggingface_hub`` and the ``hf`` command), and is downloaded into that cache
otherwise, unless ``HF_HUB_OFFLINE=1`` forbids any network access.

Parsing is pure and cheap (the catalog validates ``hf:`` with it when the config
file is read); ``huggingface_hub`` is only imported to resolve a file.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from shoal.backends.local.fetch import ModelFetchError
from shoal.errors import ConfigError

__all__ = ["HubFile", "hub_cache_dir", "hub_offline", "parse_hub_spec", "resolve_hub_file"]

log = logging.getLogger("shoal.models")

# The hub's repo-name rule, simplified: letters, digits, '-', '_', '.'; '--' and '..' are
# refused because the cache folder ``models--owner--repo`` uses '--' as its separator.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
_FORM = "owner/repo/path/in/repo.gguf, optionally followed by @revision"
# What huggingface_hub counts as true for its boolean environment variables.
_TRUE = {"1", "ON", "YES", "TRUE"}


@dataclass(frozen=True)
class HubFile:
    """One file of a Hugging Face model repo, at a revision (a branch, tag or commit; None = main)."""

    repo_id: str
    """``owner/repo``."""
    filename: str
    """The file's path inside the repo, ``/``-separated."""
    revision: str | None = None

    def __str__(self) -> str:
        return f"{self.repo_id}/{self.filename}" + (f"@{self.revision}" if self.revision else "")

    def download_command(self) -> str:
        """The ``hf`` command that puts this file in the hub cache."""
        return f"hf download {self.repo_id} {self.filename}" + (f" --revision {self.revision}" if self.revision
                                                                   else "")


def parse_hub_spec(spec: str) -> HubFile:
    """``owner/repo/path/in/repo.gguf[@revision]`` as a :class:`HubFile`; ValueError saying what is wrong."""
    text = spec.strip()
    # The revision follows the last '@' (a branch such as refs/pr/1 may hold '/'; a file name rarely holds '@').
    path, at, revision = text.rpartition("@") if "@" in text else (text, "", "")
    if at and (not revision or any(c.isspace() for c in revision)):
        raise ValueError(f"hf {spec!r}: empty or malformed revision after '@'; expected {_FORM}")
    parts = path.split("/")
    if len(parts) < 3:
        raise ValueError(f"hf {spec!r}: expected {_FORM}")
    owner, repo, *file_parts = parts
    for label, name in (("owner", owner), ("repo", repo)):
        if not _NAME.fullmatch(name) or "--" in name or ".." in name or name.endswith((".", "-")):
            raise ValueError(f"hf {spec!r}: {label} {name!r} is not a valid Hugging Face name; expected {_FORM}")
    if any(p in ("", ".", "..") or "\\" in p for p in file_parts):
        raise ValueError(f"hf {spec!r}: the file path in the repo has an empty, '.' or '..' part; expected {_FORM}")
    filename = "/".join(file_parts)
    if not filename.lower().endswith(".gguf"):
        raise ValueError(f"hf {spec!r}: the file must be a .gguf; expected {_FORM}")
    return HubFile(f"{owner}/{repo}", filename, revision or None)


def hub_cache_dir() -> Path:
    """The hub cache huggingface_hub uses, read from the environment now (it reads it once, at import)."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(os.path.expandvars(explicit)).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "hub"


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` (or the older ``TRANSFORMERS_OFFLINE``) forbids network access."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in _TRUE


def resolve_hub_file(spec: str | HubFile, cache_dir: Path | None = None, *, offline: bool | None = None) -> Path:
    """The local path of ``spec``: from the hub cache, else downloaded into it (with huggingface_hub's progress bar).

    ``cache_dir`` defaults to :func:`hub_cache_dir`, ``offline`` to :func:`hub_offline`.
    Raises :class:`ConfigError` for a malformed spec and :class:`ModelFetchError` when the
    file is not cached and cannot be downloaded (offline, unknown repo or file, gated repo).
    """
    try:
        ref = spec if isinstance(spec, HubFile) else parse_hub_spec(spec)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    cache = Path(cache_dir) if cache_dir is not None else hub_cache_dir()
    offline = hub_offline() if offline is None else offline
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    cached = try_to_load_from_cache(ref.repo_id, ref.filename, cache_dir=cache, revision=ref.revision)
    if isinstance(cached, str) and os.path.isfile(cached):
        log.info("hf %s: from the hub cache (%s)", ref, cached)
        return Path(cached)
    if offline:
        raise ModelFetchError(
            f"hf {ref}: {ref.filename} (revision {ref.revision or 'main'}) is not in the Hugging Face hub cache "
            f"{cache}, and HF_HUB_OFFLINE=1 forbids downloading it. Put it there with `{ref.download_command()}` "
            "(on a machine with a network, then copy the cache; HF_HUB_CACHE or HF_HOME choose where the cache "
            "is), or unset HF_HUB_OFFLINE.")
    log.info("hf %s: not in the hub cache; downloading %s from %s (revision %s) into %s", ref, ref.filename,
             ref.repo_id, ref.revision or "main", cache)
    try:
        return Path(hf_hub_download(ref.repo_id, ref.filename, revision=ref.revision, cache_dir=cache))
    except Exception as exc:  # no network, unknown repo/file/revision, gated repo: all end the start
        raise ModelFetchError(
            f"hf {ref}: not in the Hugging Face hub cache {cache} and the download failed: "
            f"{type(exc).__name__}: {exc}. Check the repo, file and revision, or fetch it with "
            f"`{ref.download_command()}`.") from exc
