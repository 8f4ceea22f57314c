"""Request schemas of Anthropic's Messages API: ``POST /v1/messages`` and ``/v1/messages/count_tokens``.

Only what a caller sends is modelled; the answer (a ``message`` object or its
stream events) is built by :mod:`shoal.api.messages.stream`. As everywhere,
unknown fields (``cache_control``, ``citations``, ``container``…) are kept aside
and ignored rather than rejected, so newer SDKs and Claude Code keep working.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from .chat import ToolName
from .common import MAX_STOP_CHARS, MAX_TOKEN_LIMIT, Flag, TokenLimit, WireModel, check_tool_count
from .images import IMAGE_MEDIA_TYPES, check_image_url


class _Block(BaseModel):
    model_config = ConfigDict(extra="allow")


class TextBlock(_Block):
    """``{"type": "text", "text": ...}``."""

    type: Literal["text"]
    text: str


class Base64Source(_Block):
    """An inline image: base64 ``data`` of ``media_type``."""

    type: Literal["base64"]
    media_type: str
    data: str

    @model_validator(mode="after")
    def _check(self) -> "Base64Source":
        if self.media_type.lower() not in IMAGE_MEDIA_TYPES:
            raise ValueError(f"unsupported image media_type {self.media_type!r}; supported: png, jpeg, gif, webp")
        check_image_url(self.data_url())
        return self

    def data_url(self) -> str:
        """The image as the ``data:`` URL the core types carry."""
        return f"data:{self.media_type};base64,{self.data}"


class URLSource(_Block):
    """An image on the web."""

    type: Literal["url"]
    url: str

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return check_image_url(value)


class ImageBlock(_Block):
    """``{"type": "image", "source": {...}}``."""

    type: Literal["image"]
    source: Annotated[Union[Base64Source, URLSource], Field(discriminator="type")]

    def url(self) -> str:
        """The image as a URL (``data:`` for inline images)."""
        return self.source.data_url() if isinstance(self.source, Base64Source) else self.source.url


class ToolUseBlock(_Block):
    """An assistant's tool call, replayed as history."""

    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any] = Field(default_factory=dict)


ToolResultPart = Annotated[Union[TextBlock, ImageBlock], Field(discriminator="type")]


def _content_kind(value: Any) -> str:
    return "text" if isinstance(value, str) else "blocks"


class ToolResultBlock(_Block):
    """A tool's answer, sent back in a user turn: a string or text and image blocks."""

    type: Literal["tool_result"]
    tool_use_id: str
    content: Annotated[
        Union[Annotated[str, Tag("text")], Annotated[list[ToolResultPart], Tag("blocks")]],
        Discriminator(_content_kind),
    ] = ""
    is_error: bool | None = None


class ThinkingBlock(_Block):
    """An assistant's earlier thinking, replayed as history (its signature is not checked)."""

    type: Literal["thinking"]
    thinking: str
    signature: str | None = None


class RedactedThinkingBlock(_Block):
    """Encrypted thinking of another provider: nothing a local model can read, so it is dropped."""

    type: Literal["redacted_thinking"]
    data: str = ""


ContentBlock = Annotated[
    Union[TextBlock, ImageBlock, ToolUseBlock, ToolResultBlock, ThinkingBlock, RedactedThinkingBlock],
    Field(discriminator="type"),
]

# A tagged union, so a bad block is reported as itself, not as "content should be a string" too.
Content = Annotated[
    Union[Annotated[str, Tag("text")], Annotated[list[ContentBlock], Tag("blocks")]],
    Discriminator(_content_kind),
]


class MessageParam(_Block):
    """One turn of ``messages``.

    A ``system`` turn (instructions in the middle of a conversation: Claude Code sends
    them, under the ``mid-conversation-system`` beta) holds text only.
    """

    role: Literal["user", "assistant", "system"]
    content: Content

    @model_validator(mode="after")
    def _check_blocks(self) -> "MessageParam":
        if isinstance(self.content, str):
            return self
        for block in self.content:
            if self.role == "system" and not isinstance(block, TextBlock):
                raise ValueError(f"system messages hold only text blocks, not '{block.type}'")
            if self.role == "user" and isinstance(block, (ToolUseBlock, ThinkingBlock, RedactedThinkingBlock)):
                raise ValueError(f"'{block.type}' blocks are only allowed in assistant messages")
            if self.role == "assistant" and isinstance(block, (ToolResultBlock, ImageBlock)):
                raise ValueError(f"'{block.type}' blocks are only allowed in user messages")
        return self


class ToolParam(_Block):
    """A client tool: ``name``, ``description`` and the JSON schema of its ``input``."""

    name: ToolName
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    type: str | None = None

    @model_validator(mode="after")
    def _check(self) -> "ToolParam":
        # Anthropic's server tools (web_search_…, bash_…, text_editor_…) run on Anthropic's side.
        if self.type not in (None, "custom"):
            raise ValueError(f"tool type '{self.type}' is not supported; only client tools with an 'input_schema'")
        if self.input_schema is None:
            raise ValueError(f"tool '{self.name}' has no 'input_schema'")
        return self


class ToolChoiceParam(_Block):
    """``tool_choice``: ``auto``, ``any`` (some tool), ``tool`` (the named one) or ``none``."""

    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None

    @model_validator(mode="after")
    def _check(self) -> "ToolChoiceParam":
        if self.type == "tool" and not self.name:
            raise ValueError("tool_choice of type 'tool' needs a 'name'")
        return self


class ThinkingEnabled(_Block):
    """Extended thinking with a token budget (Anthropic's minimum is 1,024)."""

    type: Literal["enabled"]
    budget_tokens: Annotated[int, Field(ge=1024)]


class ThinkingDisabled(_Block):
    """No extended thinking."""

    type: Literal["disabled"]


class ThinkingAdaptive(_Block):
    """The model decides how much to think (its default)."""

    type: Literal["adaptive"]


ThinkingParam = Annotated[Union[ThinkingEnabled, ThinkingDisabled, ThinkingAdaptive], Field(discriminator="type")]


class MetadataParam(_Block):
    """``metadata``: only ``user_id`` (an opaque caller id, kept as the request's user)."""

    user_id: str | None = None


class OutputFormat(_Block):
    """``output_config.format``: the answer must be JSON valid against ``schema`` (structured outputs)."""

    type: Literal["json_schema"]
    json_schema: dict[str, Any] = Field(alias="schema")


class OutputConfig(_Block):
    """``output_config``: how hard the model should think (``effort``), and the answer's ``format``."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    effort: Literal["low", "medium", "high", "max"] | None = None
    format: OutputFormat | None = None


class SystemText(_Block):
    """A text block of ``system``."""

    type: Literal["text"]
    text: str


class CountTokensRequest(WireModel):
    """The body of ``POST /v1/messages/count_tokens``: a message request without the sampling fields."""

    model: str
    messages: Annotated[list[MessageParam], Field(min_length=1)]
    system: str | list[SystemText] | None = None
    tools: list[ToolParam] | None = None
    tool_choice: ToolChoiceParam | None = None
    thinking: ThinkingParam | None = None
    output_config: OutputConfig | None = None

    @field_validator("tools", mode="before")
    @classmethod
    def _check_tools(cls, value: Any) -> Any:
        return check_tool_count(value)

    def system_text(self) -> str:
        """``system`` as one string (its text blocks joined)."""
        if self.system is None:
            return ""
        if isinstance(self.system, str):
            return self.system
        return "\n".join(block.text for block in self.system)


class MessagesRequest(CountTokensRequest):
    """The body of ``POST /v1/messages``."""

    max_tokens: TokenLimit
    stop_sequences: Annotated[list[Annotated[str, Field(max_length=MAX_STOP_CHARS)]],
                              Field(max_length=16)] | None = None
    stream: Flag = False
    temperature: Annotated[float, Field(ge=0, le=1, strict=True)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1, strict=True)] | None = None
    top_k: Annotated[int, Field(ge=0, le=MAX_TOKEN_LIMIT, strict=True)] | None = None
    metadata: MetadataParam | None = None

    @field_validator("stop_sequences")
    @classmethod
    def _check_stops(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(not s for s in value):
            raise ValueError("stop sequences must not be empty")
        return value
