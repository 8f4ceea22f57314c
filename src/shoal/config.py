"""Server settings: defaults, overridden by a config file, the environment and flags."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import platformdirs

DEFAULT_MODEL = "qwen2.5-coder-0.5b-instruct"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


class ConfigError(Exception):
    """A setting is missing or malformed; the message says which and why."""


def default_data_dir() -> Path:
    """``SHOAL_HOME`` or the user's data directory."""
    env = os.environ.get("SHOAL_HOME")
    return Path(env) if env else Path(platformdirs.user_data_dir("shoal"))


@dataclass(frozen=True)
class Settings:
    """Everything ``shoal serve`` can be told."""

    host: str = "127.0.0.1"
    port: int = 8000
    models: tuple[str, ...] = (DEFAULT_MODEL,)
    api_keys: tuple[str, ...] = ()
    data_dir: Path = field(default_factory=default_data_dir)
    model_cache: Path | None = None
    database_url: str | None = None
    parallel: int = 4
    ctx_per_slot: int = 4096
    threads: int | None = None
    max_queue: int = 64
    max_body_bytes: int = 16 * 1024 * 1024
    keepalive_seconds: float = 15.0
    prime_timeout: float = 10.0
    log_level: str = "info"
    access_log: bool = False

    @property
    def auth_enabled(self) -> bool:
        """Whether /v1 calls need a key."""
        return bool(self.api_keys)

    @property
    def base_url(self) -> str:
        """The URL clients use (with ``/v1``)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/v1"

    def check(self) -> None:
        """Refuse unsafe or impossible combinations, with a message that says what to do."""
        if not self.api_keys and self.host not in LOOPBACK_HOSTS:
            raise ConfigError(
                f"Refusing to listen on {self.host} with auth off: no API keys are set. "
                "Pass --api-key KEY (or SHOAL_API_KEYS) or listen on 127.0.0.1."
            )
        if self.parallel < 1 or self.ctx_per_slot < 256 or self.max_queue < 0:
            raise ConfigError("parallel must be >= 1, ctx-per-slot >= 256 and max-queue >= 0.")
        if not self.models:
            raise ConfigError("No model to serve: pass --model PATH_OR_NAME.")


def _coerce(name: str, value: Any) -> Any:
    if name in ("models", "api_keys"):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",")]
        return tuple(v for v in value if v)
    if name in ("data_dir", "model_cache"):
        return Path(value).expanduser() if value is not None else None
    return value


def load_file(path: Path) -> dict[str, Any]:
    """Settings from a YAML (or JSON) file: a mapping of setting names to values."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such file") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: {getattr(exc, 'problem', exc)}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    known = {f.name for f in fields(Settings)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return data


def build_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Defaults < config file < environment (``SHOAL_API_KEYS``) < explicit overrides."""
    values: dict[str, Any] = {}
    if config_file is not None:
        values.update(load_file(config_file))
    env_keys = os.environ.get("SHOAL_API_KEYS")
    if env_keys:
        values["api_keys"] = env_keys
    env_db = os.environ.get("SHOAL_DATABASE_URL")
    if env_db:
        values["database_url"] = env_db
    values.update({k: v for k, v in overrides.items() if v is not None})
    settings = replace(Settings(), **{k: _coerce(k, v) for k, v in values.items()})
    settings.check()
    return settings
