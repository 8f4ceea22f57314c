"""Request schema of ``POST /v1/responses``: the request fields and every input item."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from .chat import ChatTool, NamedToolChoice, ReasoningEffort, ToolCallParam, ToolName
from .common import (
    Flag,
    Penalty,
    Seed,
    StopMixin,
    StreamOptions,
    Temperature,
    TokenLimit,
    TopLogprobs,
    TopP,
    WireModel,
    check_message,
    check_metadata,
    check_tool_count,
)
from .images import ImageDetail, check_image_url


class InputPart(BaseModel):
    """A text content part of an input message."""

    model_config = ConfigDict(extra="allow")
    type: Literal["input_text", "output_text", "text", "summary_text", "reasoning_text"]
    text: str


class InputImage(BaseModel):
    """An ``input_image`` content part: ``image_url`` an http(s) or base64 ``data:image/...`` URL.

    ``file_id`` (an uploaded file) is refused by name: Shoal has no Files API.
    """

    model_config = ConfigDict(extra="allow")
    type: Literal["input_image"]
    # file_id comes first so that its error, the clearer one, is the one reported.
    file_id: str | None = None
    image_url: str
    detail: ImageDetail = "auto"

    @field_validator("file_id")
    @classmethod
    def _no_files(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError("input_image 'file_id' is not supported (Shoal has no Files API); "
                             "send the image as 'image_url', an https URL or a base64 data URL")
        return value

    @field_validator("image_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return check_image_url(value)


def _part_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return "image" if kind == "input_image" else "text"


MessagePart = Annotated[
    Union[Annotated[InputPart, Tag("text")], Annotated[InputImage, Tag("image")]],
    Discriminator(_part_kind),
]
"""A content part of an input message: text, or an image."""


def _text_or_list(value: Any) -> str:
    return "text" if isinstance(value, str) else "list"


# Tagged, so a bad part is reported as itself rather than also as "content should be a string".
MessageContent = Annotated[
    Union[Annotated[str, Tag("text")], Annotated[list[MessagePart], Tag("list")]],
    Discriminator(_text_or_list),
]


class InputMessage(BaseModel):
    """A message item (``type`` may be omitted: the "easy" input message)."""

    model_config = ConfigDict(extra="allow")
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer", "tool"]
    content: MessageContent | None = None
    id: str | None = None
    status: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[ToolCallParam] | None = None

    @model_validator(mode="after")
    def _check(self) -> "InputMessage":
        check_message(self.role, has_content=self.content is not None, has_calls=bool(self.tool_calls),
                      tool_call_id=self.tool_call_id, has_images=bool(self.images()),
                      noun="input messages", image_parts="input_image parts")
        return self

    def text(self) -> str:
        """The text parts joined as plain text (images left out)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content if isinstance(p, InputPart))

    def images(self) -> list[InputImage]:
        """The image parts, in order."""
        if not isinstance(self.content, list):
            return []
        return [p for p in self.content if isinstance(p, InputImage)]


class FunctionCallItem(BaseModel):
    """A ``function_call`` item replayed from an earlier output."""

    model_config = ConfigDict(extra="allow")
    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str
    id: str | None = None
    status: str | None = None


class FunctionCallOutputItem(BaseModel):
    """A ``function_call_output`` item: the result of a tool call."""

    model_config = ConfigDict(extra="allow")
    type: Literal["function_call_output"]
    call_id: str
    output: str | list[InputPart]
    id: str | None = None
    status: str | None = None

    def text(self) -> str:
        """The output as plain text."""
        if isinstance(self.output, str):
            return self.output
        return "".join(p.text for p in self.output)


class CustomToolCallItem(BaseModel):
    """A ``custom_tool_call`` item replayed from an earlier output: free-form ``input`` to a custom tool."""

    model_config = ConfigDict(extra="allow")
    type: Literal["custom_tool_call"]
    call_id: str
    name: str
    input: str
    namespace: str | None = None
    id: str | None = None
    status: str | None = None


class CustomToolCallOutputItem(BaseModel):
    """A ``custom_tool_call_output`` item: the result of a custom tool call."""

    model_config = ConfigDict(extra="allow")
    type: Literal["custom_tool_call_output"]
    call_id: str
    output: str | list[InputPart]
    id: str | None = None

    def text(self) -> str:
        """The output as plain text."""
        if isinstance(self.output, str):
            return self.output
        return "".join(p.text for p in self.output)


class ReasoningItem(BaseModel):
    """A ``reasoning`` item replayed from an earlier output."""

    model_config = ConfigDict(extra="allow")
    type: Literal["reasoning"]
    id: str | None = None
    summary: list[InputPart] = Field(default_factory=list)
    content: list[InputPart] | None = None
    encrypted_content: str | None = None

    def text(self) -> str:
        """The reasoning as plain text (content, else the summary)."""
        parts = self.content or self.summary
        return "".join(p.text for p in parts)


class WebSearchCallItem(BaseModel):
    """A ``web_search_call`` item sent back from an earlier output (kept for the record, not replayed)."""

    model_config = ConfigDict(extra="allow")
    type: Literal["web_search_call"]
    id: str | None = None
    status: str | None = None
    action: dict[str, Any] | None = None


def _item_kind(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("type") or "message")
    return str(getattr(value, "type", "message"))


InputItem = Annotated[
    Union[
        Annotated[InputMessage, Tag("message")],
        Annotated[FunctionCallItem, Tag("function_call")],
        Annotated[FunctionCallOutputItem, Tag("function_call_output")],
        Annotated[CustomToolCallItem, Tag("custom_tool_call")],
        Annotated[CustomToolCallOutputItem, Tag("custom_tool_call_output")],
        Annotated[ReasoningItem, Tag("reasoning")],
        Annotated[WebSearchCallItem, Tag("web_search_call")],
    ],
    Discriminator(_item_kind),
]


class FunctionTool(BaseModel):
    """A flat Responses function tool (``{"type": "function", "name": ...}``)."""

    model_config = ConfigDict(extra="allow")
    type: Literal["function"]
    name: ToolName
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: Flag | None = None


WEB_SEARCH_TYPES = ("web_search", "web_search_2025_08_26", "web_search_preview", "web_search_preview_2025_03_11")


class WebSearchTool(BaseModel):
    """The built-in web search tool (``web_search`` / ``web_search_2025_08_26``; the preview names too)."""

    model_config = ConfigDict(extra="allow")
    type: Literal["web_search", "web_search_2025_08_26", "web_search_preview", "web_search_preview_2025_03_11"]
    search_context_size: Literal["low", "medium", "high"] | None = None
    filters: dict[str, Any] | None = None
    user_location: dict[str, Any] | None = None


class CustomTool(BaseModel):
    """A ``custom`` tool: the model writes free-form text as its input (``format`` text or a grammar).

    Shoal offers it to the model as a function taking one string; a grammar is shown, not enforced.
    """

    model_config = ConfigDict(extra="allow")
    type: Literal["custom"]
    name: ToolName
    description: str | None = None
    format: dict[str, Any] | None = None


def _namespace_member_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return "custom" if kind == "custom" else "function"


NamespaceMember = Annotated[
    Union[Annotated[FunctionTool, Tag("function")], Annotated[CustomTool, Tag("custom")]],
    Discriminator(_namespace_member_kind),
]


class NamespaceTool(BaseModel):
    """A ``namespace`` tool: function and custom tools grouped under a shared name (``crm``).

    Its tools are offered to the model by their own names; a call comes back with ``namespace`` set.
    """

    model_config = ConfigDict(extra="allow")
    type: Literal["namespace"]
    name: ToolName
    description: str | None = None
    tools: list[NamespaceMember]


HOSTED_TOOL_TYPES = ("file_search", "computer", "computer_use_preview", "mcp", "code_interpreter",
                     "programmatic_tool_calling", "image_generation", "local_shell", "shell", "tool_search",
                     "apply_patch")
"""OpenAI's built-in tools that Shoal cannot run: accepted, then left out of the model's tools (docs/tools.md)."""


class HostedTool(BaseModel):
    """A built-in tool of :data:`HOSTED_TOOL_TYPES` (its settings kept as sent, for the echo)."""

    model_config = ConfigDict(extra="allow")
    type: Literal["file_search", "computer", "computer_use_preview", "mcp", "code_interpreter",
                  "programmatic_tool_calling", "image_generation", "local_shell", "shell", "tool_search",
                  "apply_patch"]


def _tool_kind(value: Any) -> str:
    data = value if isinstance(value, dict) else getattr(value, "__dict__", {})
    kind = str(data.get("type", ""))
    if kind.startswith("web_search"):
        return "web_search"
    if kind in ("namespace", "custom"):
        return kind
    if kind in HOSTED_TOOL_TYPES:
        return "hosted"
    return "chat" if "function" in data else "flat"


ResponsesTool = Annotated[
    Union[Annotated[FunctionTool, Tag("flat")], Annotated[ChatTool, Tag("chat")],
          Annotated[WebSearchTool, Tag("web_search")], Annotated[NamespaceTool, Tag("namespace")],
          Annotated[CustomTool, Tag("custom")], Annotated[HostedTool, Tag("hosted")]],
    Discriminator(_tool_kind),
]


class FunctionToolChoice(BaseModel):
    """OpenAI's named choice: ``{"type": "function", "name": ...}``."""

    type: Literal["function"]
    name: str


class HostedToolChoice(BaseModel):
    """``{"type": "web_search"}``: a built-in tool as the choice (the model still decides to search).

    The other built-in types are accepted here only to be refused by name (Shoal cannot run them).
    """

    model_config = ConfigDict(extra="allow")
    type: Literal["web_search", "web_search_2025_08_26", "web_search_preview", "web_search_preview_2025_03_11",
                  "file_search", "computer", "computer_use_preview", "mcp", "code_interpreter",
                  "programmatic_tool_calling", "image_generation", "local_shell", "shell", "tool_search",
                  "apply_patch"]


class CustomToolChoice(BaseModel):
    """``{"type": "custom", "name": ...}``: force a custom tool."""

    type: Literal["custom"]
    name: str


class ReasoningParam(BaseModel):
    """``reasoning``: effort and summary preferences."""

    model_config = ConfigDict(extra="allow")
    effort: ReasoningEffort | None = None
    summary: str | None = None


class TextFormatParam(BaseModel):
    """``text.format``: ``{"type": "text"}``, ``{"type": "json_object"}`` or
    ``{"type": "json_schema", "name", "schema", "strict", "description"}`` (structured outputs)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    type: Literal["text", "json_object", "json_schema"]
    name: ToolName | None = None
    json_schema: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: Flag | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _check(self) -> "TextFormatParam":
        if self.type == "json_schema" and (self.name is None or self.json_schema is None):
            raise ValueError("a 'json_schema' format needs a 'name' and a 'schema'")
        return self


class TextParam(BaseModel):
    """``text``: the output format (and verbosity, accepted)."""

    model_config = ConfigDict(extra="allow")
    format: TextFormatParam | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ResponsesRequest(StopMixin, WireModel):
    """The body of a create-response request."""

    model: str
    # Tagged, so a bad item is the error reported, not "input should be a string".
    input: Annotated[Union[Annotated[str, Tag("text")], Annotated[list[InputItem], Tag("list")]],
                     Discriminator(_text_or_list)]
    instructions: str | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    max_output_tokens: TokenLimit | None = None
    max_tokens: TokenLimit | None = None
    metadata: dict[str, Any] | None = None
    user: str | None = None
    stream: Flag = False
    stream_options: StreamOptions | None = None
    store: Flag = True
    previous_response_id: str | None = None
    background: Flag = False
    tools: list[ResponsesTool] | None = None
    tool_choice: (Literal["none", "auto", "required"] | FunctionToolChoice | NamedToolChoice | HostedToolChoice
                  | CustomToolChoice | None) = None
    parallel_tool_calls: Flag | None = None
    reasoning: ReasoningParam | None = None
    text: TextParam | None = None
    include: list[str] | None = None
    top_logprobs: TopLogprobs | None = None
    truncation: Literal["auto", "disabled"] | None = None
    seed: Seed | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    max_tool_calls: Annotated[int, Field(ge=0, le=2**31 - 1, strict=True)] | None = None
    """At most this many tool calls in the response (function and custom calls, and built-in searches)."""
    service_tier: Literal["auto", "default", "flex", "scale", "priority"] | None = None
    """Accepted; Shoal has one tier, reported as ``default``."""
    safety_identifier: Annotated[str, Field(max_length=64)] | None = None
    prompt_cache_key: Annotated[str, Field(max_length=1024)] | None = None
    """A hint that requests sharing it share a prompt prefix (kept on the request for routing and caching)."""

    @field_validator("tools", mode="before")
    @classmethod
    def _check_tools(cls, value: Any) -> Any:
        return check_tool_count(value)

    @field_validator("metadata")
    @classmethod
    def _check_metadata(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return check_metadata(value)

    @field_validator("input")
    @classmethod
    def _check_input(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise ValueError("input must not be empty")
        return value

    @property
    def output_limit(self) -> int | None:
        """``max_output_tokens``, or its DigitalOcean alias ``max_tokens``."""
        return self.max_output_tokens if self.max_output_tokens is not None else self.max_tokens
