"""Core request and event types shared by every front-end and backend.

These are deliberately independent of any wire format: the chat and responses
front-ends translate their JSON bodies into a :class:`GenerationRequest`, and a
backend answers with a stream of :data:`GenerationEvent` values that each
front-end encodes its own way.
"""

from __future__ import annotations

import json
import math

from collections.abc import AsyncIterator, Sequence
from dataclasses import field
from functools import cached_property
from typing import Any, ClassVar, Literal, Protocol, Union

from shoal.core.records import record


GENERATE = "generate"
"""The operation of text generation (``GenerationRequest.kind``; listed in ``Backend.operations``)."""

Role = Literal["system", "developer", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error"]


@record
class ToolCall:
    """A complete function call made by the model (or replayed from history)."""

    id: str
    name: str
    arguments: str


ImageDetail = Literal["auto", "low", "high"]

LOW_DETAIL_IMAGE_TOKENS = 85
HIGH_DETAIL_IMAGE_TOKENS = 765
"""Prompt tokens an image is guessed at before the engine counts it: OpenAI's figures for a low-detail
image and a 1024x1024 high-detail one (4 tiles). ``auto`` counts as high, the safer side for routing."""


@record
class ImageInput:
    """An image the model is shown: an http(s) URL or a base64 ``data:image/...`` URL (checked at the edge)."""

    url: str
    detail: ImageDetail = "auto"

    @property
    def estimated_tokens(self) -> int:
        """A rough prompt-token cost, without fetching or decoding the image."""
        return LOW_DETAIL_IMAGE_TOKENS if self.detail == "low" else HIGH_DETAIL_IMAGE_TOKENS

    def inline(self) -> tuple[str, str] | None:
        """``(media_type, base64_data)`` of a data URL; None for a web URL."""
        if not self.url.startswith("data:"):
            return None
        head, _, data = self.url[len("data:"):].partition(",")
        return head.partition(";")[0].lower(), data


ContentPart = Union[str, ImageInput]
"""A piece of a message's content: text, or an image."""


@record
class Message:
    """One turn of a conversation in the engine-neutral form.

    ``content`` is always the message's text (its text parts joined), so code that
    only handles text keeps working. ``parts`` is set only when the message has
    images: its text and images in the order the client sent them, for the
    backends that can show images (routing sends image requests only to those).
    """

    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    reasoning: str | None = None
    parts: tuple[ContentPart, ...] = ()

    @classmethod
    def of_parts(cls, role: Role, parts: Sequence[ContentPart], **fields: Any) -> Message:
        """A message from ordered text and image parts (``parts`` kept only if there is an image)."""
        content = "".join(p for p in parts if isinstance(p, str))
        has_image = any(isinstance(p, ImageInput) for p in parts)
        return cls(role=role, content=content, parts=tuple(parts) if has_image else (), **fields)

    @property
    def images(self) -> tuple[ImageInput, ...]:
        """The message's images, in order."""
        if not self.parts:  # a text-only message, the usual case, keeps no parts
            return ()
        return tuple(p for p in self.parts if isinstance(p, ImageInput))


@record
class SamplingParams:
    """Sampling controls; ``None`` means the model's default."""

    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    max_tokens: int | None = None
    logprobs: bool = False
    top_logprobs: int = 0
    presence_penalty: float | None = None
    frequency_penalty: float | None = None


@record
class ToolSpec:
    """A function the model may call; ``parameters`` is a JSON schema."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool = False


@record
class NamedTool:
    """A tool choice that forces one named function."""

    name: str


ToolChoice = Union[Literal["none", "auto", "required"], NamedTool]


@record
class ResponseFormat:
    """What shape the visible answer must take.

    ``text`` is free text; ``json_object`` any JSON object; ``json_schema`` JSON
    that validates against ``schema`` (enforced by constrained decoding where the
    backend can).
    """

    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str | None = None
    schema: dict[str, Any] | None = None
    strict: bool = False
    description: str | None = None


@record
class GenerationRequest:
    """Everything a backend needs to generate one completion."""

    model: str
    messages: tuple[Message, ...]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice = "auto"
    parallel_tool_calls: bool = True
    user: str | None = None
    response_format: ResponseFormat | None = None
    reasoning_effort: str | None = None
    """``none`` / ``minimal`` / ``low`` / ``medium`` / ``high`` / ``xhigh``, passed on where the model supports it."""
    stream: bool = True
    """Whether the caller reads the answer as it is made; when False, an upstream may be asked for it whole."""
    prompt_cache_key: str | None = None
    """The caller's hint that requests with the same key share a prompt prefix (OpenAI's ``prompt_cache_key``):
    for routing them to the same replica, where the prefix is already cached."""

    @cached_property
    def images(self) -> tuple[ImageInput, ...]:
        """Every image of every message, in order (asked for by routing and estimates, so kept)."""
        return tuple(image for msg in self.messages for image in msg.images)

    # The Operation protocol (core/operation.py): what routing and metering ask of a request.
    kind: ClassVar[str] = GENERATE

    def needs(self) -> tuple[str, ...]:
        """Capabilities a deployment must list: ``tools``, ``json_schema``, ``vision``."""
        return needs(self)

    def hard_needs(self) -> tuple[str, ...]:
        """Needs a model named directly cannot fall back on (images)."""
        return tuple(n for n in self.needs() if n in HARD_NEEDS)

    def prefers(self) -> tuple[str, ...]:
        """``reasoning`` when the request asks for it (a preference, not a requirement)."""
        return ("reasoning",) if self.reasoning_effort not in (None, "none") else ()

    def typical_input_tokens(self) -> int:
        """A likely prompt size in tokens."""
        return typical_input_tokens(self)

    def upper_input_tokens(self, context_length: int) -> int:
        """At most this many prompt tokens."""
        return upper_input_tokens(self, context_length)

    def max_output_tokens(self, context_length: int) -> int:
        """``max_tokens`` if set, else the context window."""
        return max_output_tokens(self, context_length)

    def requested_output_tokens(self) -> int | None:
        """``max_tokens``, if the caller set it."""
        return self.sampling.max_tokens

    def run(self, backend: Generator) -> AsyncIterator[GenerationEvent]:
        """The backend's generation."""
        return backend.generate(self)


# Estimates made before a generation starts (the engine's real counts come at the end): the typical
# prompt size is what a tokens-per-minute hold reserves, settled to the truth afterwards; the upper bound
# (a token covers at least one byte, plus what the chat template adds) is what a budget reserves.

PER_MESSAGE_TOKENS = 16
TEMPLATE_ALLOWANCE_TOKENS = 256
CHARS_PER_TOKEN = 4
IMAGE_UPPER_TOKENS = 1600
"""The most one image is taken to cost: above OpenAI's largest high-detail tiling (1,445) and
Anthropic's cap (~1,600 for a 1.15-megapixel image)."""
HARD_NEEDS = frozenset({"vision"})
"""Needs a model named directly cannot fall back on: its backend would fail or silently drop the images."""


def _texts(request: GenerationRequest) -> list[str]:
    texts: list[str] = []
    for message in request.messages:
        texts.append(message.content or "")
        if message.reasoning:
            texts.append(message.reasoning)
        for call in message.tool_calls:
            texts += [call.name, call.arguments]
    for tool in request.tools:
        texts.append(json.dumps({"name": tool.name, "description": tool.description,
                                 "parameters": tool.parameters}, separators=(",", ":")))
    return texts


def typical_input_tokens(request: GenerationRequest) -> int:
    """A likely prompt size in tokens."""
    chars = sum(len(t) for t in _texts(request))
    images = sum(image.estimated_tokens for image in request.images)
    return math.ceil(chars / CHARS_PER_TOKEN) + 4 * len(request.messages) + 8 + images


def upper_input_tokens(request: GenerationRequest, context_length: int) -> int:
    """At most this many prompt tokens (never more than the context window)."""
    size = sum(len(t.encode()) for t in _texts(request)) + IMAGE_UPPER_TOKENS * len(request.images)
    return min(size + PER_MESSAGE_TOKENS * len(request.messages) + TEMPLATE_ALLOWANCE_TOKENS, context_length)


def max_output_tokens(request: GenerationRequest, context_length: int) -> int:
    """``max_tokens`` if set, else the context window (the most any generation can emit)."""
    limit = request.sampling.max_tokens
    return min(limit, context_length) if limit else context_length


def needs(request: GenerationRequest) -> tuple[str, ...]:
    """The capabilities a deployment must have to serve ``request``."""
    out = []
    if request.tools and request.tool_choice != "none":
        out.append("tools")
    if request.response_format is not None and request.response_format.type == "json_schema":
        out.append("json_schema")
    if request.images:
        out.append("vision")
    return tuple(out)


@record
class TokenLogprob:
    """Log-probability of one sampled token, with its alternatives."""

    token: str
    logprob: float
    bytes: tuple[int, ...]
    top: tuple[tuple[str, float, tuple[int, ...]], ...] = ()


@record
class Usage:
    """Token accounting of one generation."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    tool_output_tokens: int = 0
    draft_tokens: int = 0
    """Speculative decoding: tokens a draft (model or n-gram lookup) proposed."""
    draft_accepted_tokens: int = 0
    """Speculative decoding: drafted tokens the model accepted."""

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens


@record
class TextDelta:
    """A piece of the visible answer."""

    text: str
    logprobs: tuple[TokenLogprob, ...] = ()


@record
class ReasoningDelta:
    """A piece of the model's reasoning (thinking) text."""

    text: str


@record
class ToolCallDelta:
    """A fragment of a tool call; id and name arrive once, arguments in pieces."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@record
class Finish:
    """The last event of every successful generation."""

    reason: FinishReason
    usage: Usage
    stop_sequence: str | None = None
    """Which of the request's stop sequences ended the answer, when the backend says (Anthropic upstreams do;
    llama.cpp and OpenAI do not, so their ``stop`` covers both a stop sequence and the model's own end)."""


@record
class SearchSource:
    """One web page a built-in search returned."""

    url: str
    title: str = ""
    snippet: str = ""


@record
class ServerToolCall:
    """Progress of a built-in tool the server runs itself (web search), between model rounds.

    The same ``id`` goes ``in_progress`` → ``searching`` → ``completed`` (or ``failed``).
    """

    id: str
    kind: Literal["web_search"]
    status: Literal["in_progress", "searching", "completed", "failed"]
    query: str = ""
    sources: tuple[SearchSource, ...] = ()


@record
class Citation:
    """A span of the current answer (character offsets into its text) that cites a web page."""

    url: str
    title: str
    start_index: int
    end_index: int


GenerationEvent = Union[TextDelta, ReasoningDelta, ToolCallDelta, ServerToolCall, Citation, Finish]


class Generator(Protocol):
    """What :meth:`GenerationRequest.run` needs of a backend (``core.backend.Backend`` has it)."""

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        """Stream the events of ``request``."""
        ...
