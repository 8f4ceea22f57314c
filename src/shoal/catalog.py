"""The model catalog: models (with prices, capabilities, deployments) and routers, from the config file.

Validated with pydantic; a malformed catalog fails at start with ``file:line: problem``
(the line comes from the YAML node the problem is in).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shoal.core.backend import ModelCard
from shoal.core.embeddings import EMBEDDINGS_CAPABILITY
from shoal.backends.local.hub import parse_hub_spec
from shoal.backends.timeouts import Timeouts as UpstreamTimeouts
from shoal.routing.affinity import BalanceSpec
from shoal.routing.router import RouterSpec
from shoal.routing.strategies import POLICIES

EMBEDDINGS = EMBEDDINGS_CAPABILITY
CAPABILITIES = ("tools", "json_schema", "reasoning", "vision", EMBEDDINGS)
"""An embedding model: it serves ``/v1/embeddings`` only (no chat, responses or streaming)."""
BASE_CAPABILITIES = ("chat", "responses", "streaming")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Pricing(_Strict):
    """USD per 1M tokens."""

    input: float = Field(0.0, ge=0)
    cached_input: float | None = Field(None, ge=0)
    output: float = Field(0.0, ge=0)


_TIMEOUTS = UpstreamTimeouts()
"""The defaults, defined once by the backend's dataclass."""


class Timeouts(_Strict):
    """Seconds to connect, to the first byte, between two reads, and for a whole non-streamed answer.

    The catalog's check (each positive, nothing else) of the backend's :class:`UpstreamTimeouts`.
    """

    connect: float = Field(_TIMEOUTS.connect, gt=0)
    first_byte: float = Field(_TIMEOUTS.first_byte, gt=0)
    read: float = Field(_TIMEOUTS.read, gt=0)
    total: float = Field(_TIMEOUTS.total, gt=0)

    def upstream(self) -> UpstreamTimeouts:
        """The backend's timeouts."""
        return UpstreamTimeouts(**self.model_dump())


class LocalDeployment(_Strict):
    """A GGUF run by llama.cpp in this process: ``path``, a ``packaged`` name, or ``hf: owner/repo/file.gguf``."""

    type: Literal["local"]
    name: str | None = None
    path: str | None = None
    packaged: str | None = None
    hf: str | None = None
    """``owner/repo/path/in/repo.gguf[@revision]``: from the local Hugging Face hub cache, else downloaded."""
    parallel: int | None = Field(None, ge=1)
    ctx_per_slot: int | None = Field(None, ge=256)
    threads: int | None = Field(None, ge=1)
    capabilities: tuple[str, ...] | None = None
    mode: Literal["dedicated", "serverless"] = "dedicated"
    """``dedicated``: loaded at start and pinned in memory; ``serverless``: loaded by its first request."""
    idle_unload_seconds: float = Field(300.0, gt=0)
    """Serverless: unload after this long with no request in flight."""
    memory_mb: int | None = Field(None, ge=1)
    """Memory this model takes, for the shared local memory limit (default: its GGUF file size)."""
    reserved_for: tuple[str, ...] = ()
    """Dedicated: only these model access keys (ids or names) may use this deployment."""
    max_concurrency: int | None = Field(None, ge=1)
    """At most this many requests in flight (capped by the engine's parallel slots)."""
    pooling: Literal["mean", "cls", "last"] | None = None
    """An embedding model's pooling in llama.cpp (default: the packaged model's, else ``mean``)."""
    draft: str | None = None
    """Speculative decoding: a draft model (packaged name or path, sharing the model's tokenizer), or
    ``ngram`` for prompt lookup (no second model). Unset: no speculation."""
    draft_max: int | None = Field(None, ge=1, le=64)
    """Most tokens drafted per step (default 8 for a draft model, 64 for ngram)."""
    draft_min: int | None = Field(None, ge=0, le=64)
    """A draft model's fewest tokens worth verifying (default 0)."""
    draft_ngram_size: int | None = Field(None, ge=2, le=64)
    """n-gram lookup: how many tokens must repeat before what followed them is proposed (default 16)."""
    draft_min_acceptance: float = Field(0.3, ge=0.0, le=1.0)
    """Speculation turns itself off while the recent acceptance rate (accepted / drafted) is below this."""
    draft_max_streams: int | None = Field(None, ge=1)
    """Speculate only while fewer than this many requests run on the deployment; the others decode on
    the plain server (default: all its slots; a lower value runs both servers at once, which on a
    machine with few cores slows both: see docs/speculative.md)."""

    @field_validator("capabilities")
    @classmethod
    def _text_only(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and "vision" in value:
            raise ValueError("a local llama.cpp deployment runs text-only GGUFs (no multimodal projector): "
                             "it cannot have 'vision'")
        return value

    @field_validator("hf")
    @classmethod
    def _hub_file(cls, value: str | None) -> str | None:
        # Checked here, not when the model loads, so a malformed spec fails at start with its file:line.
        if value is not None:
            parse_hub_spec(value)
        return value

    @model_validator(mode="after")
    def _one_source(self) -> LocalDeployment:
        given = [k for k in ("path", "packaged", "hf") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("a local deployment needs exactly one of path, packaged, hf")
        if self.mode == "serverless" and self.reserved_for:
            raise ValueError("reserved_for is for dedicated deployments (mode: dedicated)")
        if self.mode == "dedicated" and "idle_unload_seconds" in self.model_fields_set:
            raise ValueError("idle_unload_seconds is for serverless deployments (mode: serverless)")
        drafting = {"draft_max", "draft_min", "draft_min_acceptance", "draft_max_streams",
                    "draft_ngram_size"} & self.model_fields_set
        if drafting and not self.draft:
            raise ValueError(f"{', '.join(sorted(drafting))} need draft (a draft model, or ngram)")
        if self.draft_min is not None and self.draft_max is not None and self.draft_min > self.draft_max:
            raise ValueError("draft_min must not exceed draft_max")
        if self.draft_min is not None and self.draft == "ngram":
            raise ValueError("draft_min is for a draft model (n-gram lookup drafts whatever it finds)")
        if self.draft_ngram_size is not None and self.draft != "ngram":
            raise ValueError("draft_ngram_size is for n-gram lookup (draft: ngram)")
        return self

    @property
    def source(self) -> str:
        """What to resolve: the path or packaged name (hf is resolved separately)."""
        return str(self.path or self.packaged or self.hf)


def _check_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("base_url must start with http:// or https://")
    return value


class Discover(_Strict):
    """Replicas found by resolving a DNS name (every A/AAAA record, as a Kubernetes headless service gives)."""

    dns: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    scheme: Literal["http", "https"] = "http"
    path: str = "/v1"
    """The base path on each replica (``/v1`` for an OpenAI-compatible server)."""
    interval_seconds: float = Field(10.0, gt=0)
    """How often the name is resolved again."""


class HealthCheck(_Strict):
    """The probe that takes a replica out of balancing before it fails requests, and back in."""

    path: str = "models"
    """Probed as ``GET <base_url>/<path>``; any answer below 500 counts as up."""
    interval_seconds: float = Field(5.0, gt=0)
    timeout_seconds: float = Field(2.0, gt=0)
    unhealthy_after: int = Field(2, ge=1)
    """Consecutive failed probes that mark a replica down."""
    healthy_after: int = Field(1, ge=1)
    """Consecutive good probes that mark it up again."""


class _Upstream(_Strict):
    name: str | None = None
    base_url: str | None = None
    base_urls: tuple[str, ...] = ()
    """Several replicas of one upstream, each balanced (and health-checked) as a deployment of its own."""
    discover: Discover | None = None
    health_check: HealthCheck = HealthCheck()
    """For replicas (``base_urls``, ``discover``, or added through the admin API)."""
    api_key_env: str | None = None
    model: str
    max_concurrency: int = Field(64, ge=1)
    timeouts: Timeouts = Timeouts()
    headers: dict[str, str] = Field(default_factory=dict)
    extra_body: dict[str, Any] = Field(default_factory=dict)
    capabilities: tuple[str, ...] | None = None

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else _check_url(value)

    @field_validator("base_urls")
    @classmethod
    def _urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for url in value:
            _check_url(url)
        if len(set(value)) != len(value):
            raise ValueError("base_urls lists a URL twice")
        return value

    @model_validator(mode="after")
    def _one_address(self) -> _Upstream:
        given = [k for k in ("base_url", "base_urls", "discover") if k in self.model_fields_set]
        if len(given) > 1:
            raise ValueError(f"give one of base_url, base_urls, discover (not {' and '.join(given)})")
        if not given and self.base_url is None:
            raise ValueError("an upstream needs base_url, base_urls or discover")
        return self

    @property
    def replicated(self) -> bool:
        """Whether this deployment is a set of replicas (``base_urls`` or ``discover``), not one ``base_url``."""
        return bool(self.base_urls) or self.discover is not None


class OpenAIDeployment(_Upstream):
    """An OpenAI-compatible upstream (vLLM, SGLang, llama-server, Ollama, OpenAI, DigitalOcean)."""

    type: Literal["openai"]
    api: Literal["chat", "responses"] = "chat"
    """Which of the upstream's endpoints generates: ``/chat/completions``, or its native ``/responses``."""


class AnthropicDeployment(_Upstream):
    """An Anthropic Messages API upstream."""

    type: Literal["anthropic"]
    base_url: str | None = "https://api.anthropic.com"
    max_tokens: int = Field(4096, ge=1)
    """Sent when the request sets none (Anthropic requires it)."""
    cache_prompt: bool = True
    """Mark the system prompt and the conversation prefix with ``cache_control``."""


class Balance(_Strict):
    """How a model's deployments share its requests: ``least_outstanding`` (default) or ``prefix``.

    ``prefix`` sends a request to the replica that likely holds its prompt prefix in cache (same
    conversation, ``prompt_cache_key``, or longest matching prompt prefix) unless that replica has more
    than ``abs_threshold`` requests outstanding beyond the least-loaded one and more than ``rel_threshold``
    times as many; then the least-loaded one gets it.
    """

    policy: Literal["least_outstanding", "prefix"] = "least_outstanding"
    abs_threshold: int = Field(4, ge=0)
    rel_threshold: float = Field(1.5, ge=1)

    def spec(self) -> BalanceSpec:
        """The routing form."""
        return BalanceSpec(policy=self.policy, abs_threshold=self.abs_threshold, rel_threshold=self.rel_threshold)


DeploymentSpec = Annotated[Union[LocalDeployment, OpenAIDeployment, AnthropicDeployment],
                           Field(discriminator="type")]


class ModelEntry(_Strict):
    """One model of the catalog."""

    id: str = Field(min_length=1)
    aliases: tuple[str, ...] = ()
    description: str = ""
    context_length: int = Field(8192, ge=1)
    capabilities: tuple[str, ...] = ()
    pricing: Pricing = Pricing()
    owned_by: str = "shoal"
    deployments: tuple[DeploymentSpec, ...] = Field(min_length=1)
    balance: Balance = Balance()
    """How requests are shared among the deployments (``balance: prefix`` or a mapping with thresholds)."""

    @field_validator("balance", mode="before")
    @classmethod
    def _balance_shorthand(cls, value: Any) -> Any:
        return {"policy": value} if isinstance(value, str) else value

    @field_validator("capabilities", mode="before")
    @classmethod
    def _caps(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return tuple(k for k, v in value.items() if v)
        return value

    @field_validator("capabilities")
    @classmethod
    def _known_caps(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [c for c in value if c not in CAPABILITIES]
        if unknown:
            raise ValueError(f"unknown capability {', '.join(unknown)}; known: {', '.join(CAPABILITIES)}")
        return value

    @model_validator(mode="after")
    def _embedding_deployments(self) -> ModelEntry:
        if EMBEDDINGS not in self.capabilities:
            if any(isinstance(d, LocalDeployment) and d.pooling for d in self.deployments):
                raise ValueError(f"model {self.id}: pooling is for embedding models (capabilities: [embeddings])")
            return self
        if len(self.capabilities) > 1:
            raise ValueError(f"model {self.id}: an embedding model has no other capability")
        for d in self.deployments:
            if isinstance(d, AnthropicDeployment) or (isinstance(d, OpenAIDeployment) and d.api != "chat"):
                raise ValueError(f"model {self.id}: embeddings come from local or OpenAI-compatible (api: chat) "
                                 "deployments")
            if isinstance(d, LocalDeployment) and d.mode != "dedicated":
                raise ValueError(f"model {self.id}: a local embedding model is dedicated (mode: dedicated)")
        return self

    @property
    def embeddings(self) -> bool:
        """Whether this is an embedding model."""
        return EMBEDDINGS in self.capabilities

    def card(self, capabilities: tuple[str, ...] | None = None, extra: dict[str, Any] | None = None) -> ModelCard:
        """The card of this model (``capabilities`` of one deployment, if it overrides them)."""
        caps = self.capabilities if capabilities is None else capabilities
        return ModelCard(
            id=self.id, owned_by=self.owned_by, created=0, context_length=self.context_length,
            capabilities=caps if EMBEDDINGS in caps else (*BASE_CAPABILITIES, *caps), aliases=self.aliases,
            description=self.description,
            extra={**(extra or {}), "pricing": self.pricing.model_dump(exclude_none=True)},
        )


class RouterEntry(_Strict):
    """A name that picks among several models per request."""

    id: str = Field(min_length=1)
    aliases: tuple[str, ...] = ()
    description: str = ""
    policy: Literal["cheapest", "fastest", "quality"] = "quality"
    models: tuple[str, ...] = Field(min_length=1)

    def spec(self) -> RouterSpec:
        """The routing form."""
        assert self.policy in POLICIES
        return RouterSpec(id=self.id, models=self.models, policy=self.policy, aliases=self.aliases,
                          description=self.description)


class Catalog(_Strict):
    """Every catalog model and router."""

    models: tuple[ModelEntry, ...] = ()
    routers: tuple[RouterEntry, ...] = ()

    @model_validator(mode="after")
    def _names(self) -> Catalog:
        seen: dict[str, str] = {}
        for kind, entries in (("model", self.models), ("router", self.routers)):
            for entry in entries:
                for name in (entry.id, *entry.aliases):
                    if name in seen:
                        raise ValueError(f"{kind} {entry.id}: the name {name!r} is already used by {seen[name]}")
                    seen[name] = entry.id
        ids = {m.id for m in self.models} | {a for m in self.models for a in m.aliases}
        for router in self.routers:
            unknown = [m for m in router.models if m not in ids]
            if unknown:
                raise ValueError(f"router {router.id}: unknown model(s) {', '.join(unknown)}")
        return self

    def entry(self, model_id: str) -> ModelEntry | None:
        """The entry with this id, if any."""
        return next((m for m in self.models if m.id == model_id), None)


def _node_line(root: Any, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the YAML node at ``loc`` (or of its closest existing parent)."""
    import yaml

    node = root
    if node is None:
        return None
    for part in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            match = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
            if match is None:
                continue  # a missing field or a union tag: stay on the parent
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
    return node.start_mark.line + 1


def _entry_loc(data: dict[str, Any], message: str) -> tuple[Any, ...]:
    """Where a whole-catalog problem ("router X: ...") is: that entry's position."""
    kind, _, rest = message.partition(" ")
    name = rest.partition(":")[0]
    section = {"model": "models", "router": "routers"}.get(kind)
    for index, entry in enumerate(data.get(section or "", ()) or ()):
        if isinstance(entry, dict) and entry.get("id") == name:
            return (section, index)
    return ()


def parse_catalog(data: dict[str, Any], root: Any, path: Path | str) -> Catalog:
    """Validate ``data`` (``models`` entries that are mappings, and ``routers``); ``file:line: problem`` on error."""
    from shoal.errors import ConfigError

    try:
        return Catalog.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err.get("loc", ()))
            message = err.get("msg", "invalid").removeprefix("Value error, ")
            if not loc:
                loc = _entry_loc(data, message)
            line = _node_line(root, loc)
            where = ".".join(str(p) for p in loc)
            problems.append(f"{path}{f':{line}' if line else ''}: {where}: {message}")
        raise ConfigError("\n".join(problems)) from exc
