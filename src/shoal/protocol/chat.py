"""Request schema of ``POST /v1/chat/completions``."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Strict, Tag, field_validator, model_validator

from .common import (
    Flag,
    LogitBias,
    Penalty,
    Seed,
    StopMixin,
    StreamOptions,
    Temperature,
    TokenLimit,
    TopLogprobs,
    TopP,
    WireModel,
    check_logit_bias,
    check_message,
    check_metadata,
    check_tool_count,
)
from .images import ImageDetail, check_image_url

ToolName = Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]


class TextPart(BaseModel):
    """A ``{"type": "text", "text": ...}`` content part."""

    model_config = ConfigDict(extra="allow")
    type: Literal["text", "input_text", "output_text"]
    text: str


class ImageURL(BaseModel):
    """``image_url`` of an image part: an http(s) or base64 ``data:image/...`` URL, and the detail wanted."""

    model_config = ConfigDict(extra="allow")
    url: str
    detail: ImageDetail = "auto"

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return check_image_url(value)


class ImagePart(BaseModel):
    """A ``{"type": "image_url", "image_url": {"url": ..., "detail": ...}}`` content part."""

    model_config = ConfigDict(extra="allow")
    type: Literal["image_url"]
    image_url: ImageURL


ContentPart = Annotated[Union[TextPart, ImagePart], Field(discriminator="type")]


def _content_kind(value: Any) -> str:
    return "text" if isinstance(value, str) else "parts"


# A tagged union, so a bad part is reported as itself, not as "content should be a string" too.
Content = Annotated[
    Union[Annotated[str, Tag("text")], Annotated[list[ContentPart], Tag("parts")]],
    Discriminator(_content_kind),
]


class FunctionCall(BaseModel):
    """``function`` of an assistant tool call."""

    model_config = ConfigDict(extra="allow")
    name: str
    arguments: str = ""


class ToolCallParam(BaseModel):
    """An assistant message's tool call, replayed as history."""

    model_config = ConfigDict(extra="allow")
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    """One message of ``messages``."""

    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Content | None = None
    name: str | None = None
    tool_calls: list[ToolCallParam] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None

    @model_validator(mode="after")
    def _check_role_fields(self) -> "ChatMessage":
        check_message(self.role, has_content=self.content is not None, has_calls=bool(self.tool_calls),
                      tool_call_id=self.tool_call_id, has_images=bool(self.images()))
        return self

    def text(self) -> str:
        """The message's text parts joined as plain text (images left out)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content if isinstance(part, TextPart))

    def images(self) -> list[ImageURL]:
        """The message's images, in order."""
        if not isinstance(self.content, list):
            return []
        return [part.image_url for part in self.content if isinstance(part, ImagePart)]


class FunctionDef(BaseModel):
    """``function`` of a chat tool definition."""

    model_config = ConfigDict(extra="allow")
    name: ToolName
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: Flag | None = None


class ChatTool(BaseModel):
    """A ``{"type": "function", "function": {...}}`` tool."""

    model_config = ConfigDict(extra="allow")
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(BaseModel):
    """``{"name": ...}`` inside a named tool choice."""

    name: str


class NamedToolChoice(BaseModel):
    """``{"type": "function", "function": {"name": ...}}``."""

    model_config = ConfigDict(extra="allow")
    type: Literal["function"]
    function: NamedFunction


ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh"]


class JsonSchemaSpec(BaseModel):
    """``json_schema`` of a ``json_schema`` response format."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    name: ToolName
    json_schema: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: Flag | None = None
    description: str | None = None


class ChatResponseFormat(BaseModel):
    """``response_format``: ``text``, ``json_object`` (JSON mode) or ``json_schema`` (structured outputs)."""

    model_config = ConfigDict(extra="allow")
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaSpec | None = None

    @model_validator(mode="after")
    def _check(self) -> "ChatResponseFormat":
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("response_format of type 'json_schema' needs a 'json_schema' object")
        return self


class ChatCompletionRequest(StopMixin, WireModel):
    """The body of a chat completion request."""

    model: str
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    temperature: Temperature | None = None
    top_p: TopP | None = None
    seed: Seed | None = None
    max_tokens: TokenLimit | None = None
    max_completion_tokens: TokenLimit | None = None
    n: Annotated[int, Strict(), Field(ge=1, le=1)] | None = None
    stream: Flag = False
    stream_options: StreamOptions | None = None
    logprobs: Flag | None = None
    top_logprobs: TopLogprobs | None = None
    # Accepted and range-checked as OpenAI does; not passed to the engine.
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    logit_bias: dict[str, LogitBias] | None = None
    user: str | None = None
    metadata: dict[str, Any] | None = None
    tools: list[ChatTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: Flag | None = None
    response_format: ChatResponseFormat | None = None
    reasoning_effort: ReasoningEffort | None = None
    prompt_cache_key: Annotated[str, Field(max_length=1024)] | None = None
    """Requests with the same key share a prompt prefix: a model that balances by ``prefix`` routes them to the
    same replica."""

    @field_validator("metadata")
    @classmethod
    def _check_metadata(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return check_metadata(value)

    @field_validator("tools", mode="before")
    @classmethod
    def _check_tools(cls, value: Any) -> Any:
        return check_tool_count(value)

    @field_validator("logit_bias")
    @classmethod
    def _check_logit_bias(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        return check_logit_bias(value)

    @model_validator(mode="after")
    def _check_logprobs(self) -> "ChatCompletionRequest":
        if self.top_logprobs and not self.logprobs:
            raise ValueError("'top_logprobs' requires 'logprobs' to be true")
        return self
