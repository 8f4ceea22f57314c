"""The Responses tool kinds, as the model is offered them and as its calls come back.

Agents (Codex CLI among them) send more than flat functions:

* ``namespace``: functions (and custom tools) grouped under a name. The model is
  offered each by its own name; a call comes back as a ``function_call`` item
  with ``namespace`` set, as OpenAI returns it.
* ``custom``: a tool whose input is free-form text. The model is offered a
  function taking one string (``input``); the call comes back as a
  ``custom_tool_call`` item whose ``input`` is that string. A grammar format is
  shown to the model in the description but not enforced.
* OpenAI's built-in tools Shoal cannot run (:data:`HOSTED_TOOL_TYPES`, and
  ``web_search`` when no search provider is configured) are left out of the
  model's tools with a warning; only a ``tool_choice`` that forces one is a 400.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from shoal.api.formats import check_tools
from shoal.core.types import ToolSpec
from shoal.errors import InvalidRequestError
from shoal.protocol.chat import ChatTool
from shoal.protocol.responses import (
    CustomTool,
    FunctionTool,
    HostedTool,
    NamespaceTool,
    ResponsesRequest,
    WebSearchTool,
)

CUSTOM_INPUT = "input"
"""The one parameter of the function a custom tool is offered as."""

WEB_SEARCH = ToolSpec(
    "web_search",
    "Search the web for current information. Returns numbered results with title, URL and snippet; "
    "cite them in the answer by their URL.",
    {"type": "object", "properties": {"query": {"type": "string", "description": "What to search for"}},
     "required": ["query"]},
)
"""How the built-in web search is offered to the model: as a function it may call."""


@dataclass(frozen=True)
class CallShape:
    """How a call of one offered tool is shown to the client: its item type and namespace."""

    kind: Literal["function", "custom"] = "function"
    namespace: str | None = None


PLAIN_CALL = CallShape()


@dataclass(frozen=True)
class OfferedTools:
    """The tools the model is offered, how their calls come back, and what was left out."""

    specs: tuple[ToolSpec, ...] = ()
    shapes: dict[str, CallShape] = field(default_factory=dict)
    """Shapes of the calls that are not plain function calls, by the name the model calls."""
    dropped: tuple[str, ...] = ()
    """Types of the tools left out (Shoal cannot run them)."""

    def shape(self, name: str) -> CallShape:
        """How a call of ``name`` is shown (a plain function call unless listed)."""
        return self.shapes.get(name, PLAIN_CALL)


def custom_spec(tool: CustomTool) -> ToolSpec:
    """A custom tool as the function the model sees: one string, its free-form input."""
    description = tool.description or ""
    fmt = tool.format or {}
    if fmt.get("type") == "grammar" and fmt.get("definition"):
        description += (f"\n\nThe input must follow this {fmt.get('syntax', '')} grammar:\n{fmt['definition']}"
                        ).rstrip()
    parameters = {"type": "object",
                  "properties": {CUSTOM_INPUT: {"type": "string", "description": "The tool's input, as raw text."}},
                  "required": [CUSTOM_INPUT]}
    return ToolSpec(tool.name, description.strip() or None, parameters)


def custom_input(arguments: str) -> str:
    """The free-form input of a custom call from the arguments the model wrote (``{"input": ...}``)."""
    try:
        value: Any = json.loads(arguments)
    except ValueError:
        return arguments
    if isinstance(value, dict) and isinstance(value.get(CUSTOM_INPUT), str):
        return str(value[CUSTOM_INPUT])
    return arguments if not isinstance(value, str) else value


def custom_arguments(text: str) -> str:
    """A custom call's input as the arguments the model would have written (for replayed history)."""
    return json.dumps({CUSTOM_INPUT: text}, ensure_ascii=False)


def _function_spec(tool: FunctionTool) -> ToolSpec:
    return ToolSpec(tool.name, tool.description, tool.parameters, bool(tool.strict))


def offered_tools(body: ResponsesRequest, *, search_available: bool = True) -> OfferedTools:
    """``body.tools`` as the model's tools (schemas checked: 400 naming the problem)."""
    specs: list[ToolSpec] = []
    shapes: dict[str, CallShape] = {}
    dropped: list[str] = []
    web_search = False
    for tool in body.tools or ():
        if isinstance(tool, ChatTool):
            fn = tool.function
            specs.append(ToolSpec(fn.name, fn.description, fn.parameters, bool(fn.strict)))
        elif isinstance(tool, FunctionTool):
            specs.append(_function_spec(tool))
        elif isinstance(tool, CustomTool):
            specs.append(custom_spec(tool))
            shapes[tool.name] = CallShape("custom")
        elif isinstance(tool, NamespaceTool):
            for member in tool.tools:
                if isinstance(member, CustomTool):
                    specs.append(custom_spec(member))
                    shapes[member.name] = CallShape("custom", tool.name)
                else:
                    specs.append(_function_spec(member))
                    shapes[member.name] = CallShape("function", tool.name)
        elif isinstance(tool, WebSearchTool) and search_available:
            web_search = True
        elif isinstance(tool, (WebSearchTool, HostedTool)):
            dropped.append(tool.type)
    check_tools(specs)
    if web_search:
        if any(spec.name == WEB_SEARCH.name for spec in specs):
            raise InvalidRequestError(f"A function named '{WEB_SEARCH.name}' cannot be used together with the "
                                      "built-in web_search tool.", param="tools")
        specs.append(WEB_SEARCH)
    return OfferedTools(tuple(specs), shapes, tuple(dropped))
