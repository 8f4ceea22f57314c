"""Server settings: defaults, overridden by a config file, the environment and flags."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import platformdirs

from shoal.errors import ConfigError

DEFAULT_MODEL = "qwen2.5-coder-0.5b-instruct"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
MIN_STATIC_KEY_LENGTH = 16
"""Shortest static API key accepted: a short key is guessed, or brute-forced, too easily."""


ENV_SETTINGS: tuple[tuple[str, str], ...] = (
    ("SHOAL_DATABASE_URL", "database_url"), ("SHOAL_ADMIN_TOKEN", "admin_token"), ("SHOAL_REDIS_URL", "redis_url"),
    ("SHOAL_REDIS_PREFIX", "redis_prefix"), ("SHOAL_WEB_SEARCH_URL", "web_search_url"),
    ("SHOAL_DRAIN_SECONDS", "drain_seconds"),
)
"""Environment variables read by :func:`build_settings`, with the setting each sets (besides ``SHOAL_API_KEYS``)."""


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
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    data_dir: Path = field(default_factory=default_data_dir)
    model_cache: Path | None = None
    database_url: str | None = None
    parallel: int = 4
    ctx_per_slot: int = 16384
    """Context tokens of each parallel slot (capped at the model's own context). 16k fits a coding agent's
    prompt (Codex CLI sends ~8.6k tokens); the cost in memory and speed is in docs/benchmarks/context.md."""
    threads: int | None = None
    max_queue: int = 64
    max_body_bytes: int = 16 * 1024 * 1024
    keepalive_seconds: float = 15.0
    write_timeout_seconds: float = 30.0
    """How long one write of a stream may wait for a client that reads nothing before the stream is
    dropped and its slot freed."""
    prime_timeout: float = 10.0
    log_level: str = "info"
    access_log: bool = False
    admin_token: str | None = field(default=None, repr=False)
    """Token of the admin API (/admin/...); unset = admin API off. Also SHOAL_ADMIN_TOKEN."""
    redis_url: str | None = None
    """Redis for rate limits and budgets shared by replicas; unset = in-process. Also SHOAL_REDIS_URL."""
    redis_prefix: str = "shoal"
    """Prefix of every Redis key (several deployments can share one Redis). Also SHOAL_REDIS_PREFIX."""
    prices: dict[str, Any] = field(default_factory=dict)
    """Model id -> {input, cached_input, output} in USD per 1M tokens (until the catalog has prices)."""
    key_cache_seconds: float = 2.0
    """How long a replica trusts a looked-up model access key (bounds how late a revocation lands)."""
    web_search_url: str | None = None
    """SearxNG-compatible JSON search endpoint for the built-in web_search tool; unset = tool refused (400).
    Also SHOAL_WEB_SEARCH_URL."""
    catalog: Any = None
    """The model catalog (``shoal.catalog.Catalog``): ``models:`` entries that are mappings, and ``routers:``."""
    retries: int = 1
    """Rounds of retries over a request's deployments (with backoff) after every one failed before its first byte."""
    memory_limit_mb: int | None = None
    """Memory shared by every local model (dedicated ones count, serverless ones are evicted to fit); unset = none."""
    memory_wait_seconds: float = 5.0
    """How long a serverless load waits for busy models to free memory before answering 503."""
    response_lease_seconds: float = 15.0
    """A background response's lease: its replica renews it every third of this; once it runs out (the replica
    stopped), any replica marks the response failed."""
    first_byte_deadline: float = 60.0
    """Seconds a streamed request may wait for its first byte across every failover attempt (then 504)."""
    max_concurrency_per_key: int = 32
    """Generations one key may have in flight (running or queued) at once; past it 429. 0 = no cap."""
    drain_seconds: float = 30.0
    """On SIGTERM: how long requests in flight may take to finish before they are cut and the server exits.
    Also SHOAL_DRAIN_SECONDS."""

    @property
    def auth_enabled(self) -> bool:
        """Whether /v1 calls need a key."""
        return bool(self.api_keys or self.admin_token)

    @property
    def base_url(self) -> str:
        """The URL clients use (with ``/v1``)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/v1"

    def check(self) -> None:
        """Refuse unsafe or impossible combinations, with a message that says what to do."""
        if not self.auth_enabled and self.host not in LOOPBACK_HOSTS:
            raise ConfigError(
                f"Refusing to listen on {self.host} with auth off: no API keys are set. "
                "Pass --api-key KEY (or SHOAL_API_KEYS), set --admin-token (or SHOAL_ADMIN_TOKEN) to use "
                "managed keys, or listen on 127.0.0.1."
            )
        short = [key for key in self.api_keys if len(key) < MIN_STATIC_KEY_LENGTH]
        if short:
            # Name the key by its length and start only: the message is printed, the key is a secret.
            raise ConfigError(
                f"{len(short)} static API key(s) shorter than {MIN_STATIC_KEY_LENGTH} characters "
                f"(the first has {len(short[0])}). Use long random keys, e.g. "
                "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`."
            )
        if self.admin_token is not None and (not isinstance(self.admin_token, str) or not self.admin_token.strip()
                                             or self.admin_token in self.api_keys):
            raise ConfigError("admin_token must be a non-empty string and must not also be an API key.")
        if not self.write_timeout_seconds > 0:
            raise ConfigError("write_timeout_seconds must be > 0.")
        if self.key_cache_seconds < 0:
            raise ConfigError("key_cache_seconds must be >= 0.")
        from shoal.usage.pricing import parse_prices

        try:
            parse_prices(self.prices)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        if self.parallel < 1 or self.ctx_per_slot < 256 or self.max_queue < 0:
            raise ConfigError("parallel must be >= 1, ctx-per-slot >= 256 and max-queue >= 0.")
        if not self.models and not (self.catalog is not None and self.catalog.models):
            raise ConfigError("No model to serve: pass --model PATH_OR_NAME.")
        if self.memory_limit_mb is not None and (isinstance(self.memory_limit_mb, bool)
                                                 or not isinstance(self.memory_limit_mb, int)
                                                 or self.memory_limit_mb < 1):
            raise ConfigError(f"memory_limit_mb must be a positive integer (MiB), got {self.memory_limit_mb!r}.")
        if self.first_byte_deadline <= 0:
            raise ConfigError("first_byte_deadline must be > 0 seconds.")
        if self.max_concurrency_per_key < 0:
            raise ConfigError("max_concurrency_per_key must be >= 0 (0: no cap).")
        if self.drain_seconds < 0:
            raise ConfigError("drain_seconds must be >= 0.")
        if self.memory_wait_seconds < 0:
            raise ConfigError("memory_wait_seconds must be >= 0.")
        if not self.response_lease_seconds > 0:
            raise ConfigError("response_lease_seconds must be > 0.")
        if self.web_search_url and not self.web_search_url.startswith(("http://", "https://")):
            raise ConfigError(f"web_search_url must be an http:// or https:// URL, got {self.web_search_url!r}.")


def _coerce(name: str, value: Any) -> Any:
    if name in ("models", "api_keys"):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",")]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"setting '{name}' must be a list of strings (or one comma-separated string)")
        return tuple(v for v in value if v)
    if name == "catalog":
        return value
    if name in ("data_dir", "model_cache"):
        if value is not None and not isinstance(value, (str, Path)):
            raise ConfigError(f"setting '{name}' must be a path")
        return Path(value).expanduser() if value is not None else None
    default = next((f.default for f in fields(Settings) if f.name == name), None)
    if value is None or default is None or not isinstance(default, (bool, int, float, str)):
        return value
    if isinstance(default, bool) or isinstance(value, bool):
        if not (isinstance(default, bool) and isinstance(value, bool)):
            raise ConfigError(f"setting '{name}' must be {type(default).__name__}, got {value!r}")
        return value
    if isinstance(default, float) and isinstance(value, int):
        return float(value)
    if not isinstance(value, type(default)):
        raise ConfigError(f"setting '{name}' must be {type(default).__name__}, got {value!r}")
    return value


def _from_env(env_name: str, setting: str, value: str) -> Any:
    """An environment variable's text as its setting's type (the environment holds only strings)."""
    default = next(f.default for f in fields(Settings) if f.name == setting)
    if isinstance(default, float):
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{env_name} must be a number, got {value!r}") from None
    return value


def load_file(path: Path) -> dict[str, Any]:
    """Settings from a YAML (or JSON) file: a mapping of setting names to values.

    ``models`` entries that are mappings, and ``routers``, form the catalog
    (``shoal.catalog``); plain strings in ``models`` stay ``--model`` shortcuts.
    """
    import yaml

    try:
        text = path.read_text()
        data = yaml.safe_load(text)
        root = yaml.compose(text)
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
    known = {f.name for f in fields(Settings) if f.name != "catalog"} | {"routers"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return _split_catalog(data, root, path)


def _split_catalog(data: dict[str, Any], root: Any, path: Path) -> dict[str, Any]:
    """Move catalog entries (mappings under ``models``, and ``routers``) into the ``catalog`` setting."""
    import yaml

    models = data.get("models")
    if "catalog" in data:
        raise ConfigError(f"{path}: 'catalog' is not a setting; list catalog entries under models: and routers:")
    if not (isinstance(models, list) and any(isinstance(m, dict) for m in models)) and "routers" not in data:
        return data
    from shoal.catalog import parse_catalog

    model_nodes: list[Any] = []
    router_node = None
    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            if key.value == "models" and isinstance(value, yaml.SequenceNode):
                model_nodes = [n for n in value.value if isinstance(n, yaml.MappingNode)]
            elif key.value == "routers":
                router_node = value
    anchor = root.start_mark if root is not None else None
    fake_root = yaml.MappingNode("tag:yaml.org,2002:map", [
        (yaml.ScalarNode("tag:yaml.org,2002:str", "models"),
         yaml.SequenceNode("tag:yaml.org,2002:seq", model_nodes, anchor, anchor)),
        *([(yaml.ScalarNode("tag:yaml.org,2002:str", "routers"), router_node)] if router_node is not None else []),
    ], anchor, anchor)
    entries = [m for m in models or () if isinstance(m, dict)]
    catalog = parse_catalog({"models": entries, "routers": data.get("routers") or []}, fake_root, path)
    out = {k: v for k, v in data.items() if k != "routers"}
    out["models"] = [m for m in models or () if not isinstance(m, dict)]
    out["catalog"] = catalog
    return out


def build_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Defaults < config file < environment (``SHOAL_API_KEYS``) < explicit overrides."""
    values: dict[str, Any] = {}
    if config_file is not None:
        values.update(load_file(config_file))
    env_keys = os.environ.get("SHOAL_API_KEYS")
    if env_keys:
        values["api_keys"] = env_keys
    for env_name, setting in ENV_SETTINGS:
        if os.environ.get(env_name):
            values[setting] = _from_env(env_name, setting, os.environ[env_name])
    values.update({k: v for k, v in overrides.items() if v is not None})
    settings = replace(Settings(), **{k: _coerce(k, v) for k, v in values.items()})
    settings.check()
    return settings
