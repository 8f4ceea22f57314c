"""Core request and event types shared by every front-end and backend.

These are deliberately independent of any wire format: the chat and responses
front-ends translate their JSON bodies into a :class:`GenerationRequest`, and a
backend answers with a stream of :data:`GenerationEvent` values that each
front-end encodes its own way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Union

Role = Literal["system", "developer", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error"]


@dataclass(frozen=True)
class ToolCall:
    """A complete function call made by the model (or replayed from history)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Message:
    """One turn of a conversation in the engine-neutral form."""

    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    reasoning: str | None = None


@dataclass(frozen=True)
class SamplingParams:
    """Sampling controls; ``None`` means the model's default."""

    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    max_tokens: int | None = None
    logprobs: bool = False
    top_logprobs: int = 0


@dataclass(frozen=True)
class ToolSpec:
    """A function the model may call; ``parameters`` is a JSON schema."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool = False


@dataclass(frozen=True)
class NamedTool:
    """A tool choice that forces one named function."""

    name: str


ToolChoice = Union[Literal["none", "auto", "required"], NamedTool]


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class TokenLogprob:
    """Log-probability of one sampled token, with its alternatives."""

    token: str
    logprob: float
    bytes: tuple[int, ...]
    top: tuple[tuple[str, float, tuple[int, ...]], ...] = ()


@dataclass(frozen=True)
class Usage:
    """Token accounting of one generation."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    tool_output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class TextDelta:
    """A piece of the visible answer."""

    text: str
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True)
class ReasoningDelta:
    """A piece of the model's reasoning (thinking) text."""

    text: str


@dataclass(frozen=True)
class ToolCallDelta:
    """A fragment of a tool call; id and name arrive once, arguments in pieces."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True)
class Finish:
    """The last event of every successful generation."""

    reason: FinishReason
    usage: Usage


@dataclass(frozen=True)
class SearchSource:
    """One web page a built-in search returned."""

    url: str
    title: str = ""
    snippet: str = ""


@dataclass(frozen=True)
class ServerToolCall:
    """Progress of a built-in tool the server runs itself (web search), between model rounds.

    The same ``id`` goes ``in_progress`` → ``searching`` → ``completed`` (or ``failed``).
    """

    id: str
    kind: Literal["web_search"]
    status: Literal["in_progress", "searching", "completed", "failed"]
    query: str = ""
    sources: tuple[SearchSource, ...] = ()


@dataclass(frozen=True)
class Citation:
    """A span of the current answer (character offsets into its text) that cites a web page."""

    url: str
    title: str
    start_index: int
    end_index: int


GenerationEvent = Union[TextDelta, ReasoningDelta, ToolCallDelta, ServerToolCall, Citation, Finish]
