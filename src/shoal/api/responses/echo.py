"""The request fields a Response object repeats back."""

from __future__ import annotations

from typing import Any

from shoal.protocol.chat import ChatTool
from shoal.protocol.responses import CustomToolChoice, FunctionTool, HostedToolChoice, ResponsesRequest


def text_echo(body: ResponsesRequest) -> dict[str, Any]:
    """``text`` as the Response object shows it: the format asked for (``text`` by default)."""
    fmt = body.text.format if body.text is not None else None
    out: dict[str, Any]
    if fmt is not None and fmt.type == "json_schema":
        out = {"type": "json_schema", "name": fmt.name, "schema": fmt.json_schema, "strict": fmt.strict,
               "description": fmt.description}
    elif fmt is not None and fmt.type == "json_object":
        out = {"type": "json_object"}
    else:
        out = {"type": "text"}
    echo: dict[str, Any] = {"format": out}
    if body.text is not None and body.text.verbosity is not None:
        echo["verbosity"] = body.text.verbosity
    return echo


def echo_fields(body: ResponsesRequest, model: str) -> dict[str, Any]:
    """Response fields taken from the request (tools in the flat Responses form)."""
    tools = []
    for tool in body.tools or ():
        if isinstance(tool, ChatTool):
            fn = tool.function
            tools.append({"type": "function", "name": fn.name, "description": fn.description,
                          "parameters": fn.parameters, "strict": fn.strict})
        elif isinstance(tool, FunctionTool):
            tools.append(tool.model_dump(exclude_none=False))
        else:
            # namespace, custom and built-in tools: as sent (those Shoal cannot run included, as OpenAI echoes them).
            tools.append(tool.model_dump(exclude_none=True))
    choice = body.tool_choice
    if isinstance(choice, HostedToolChoice):
        choice_echo: Any = {"type": choice.type}
    elif isinstance(choice, CustomToolChoice):
        choice_echo = {"type": "custom", "name": choice.name}
    elif choice is not None and not isinstance(choice, str):
        name = getattr(choice, "name", None) or choice.function.name  # type: ignore[union-attr]
        choice_echo = {"type": "function", "name": name}
    else:
        choice_echo = choice or "auto"
    return {
        "model": model,
        "instructions": body.instructions,
        "max_output_tokens": body.output_limit,
        "metadata": body.metadata or {},
        "parallel_tool_calls": body.parallel_tool_calls if body.parallel_tool_calls is not None else True,
        "previous_response_id": body.previous_response_id,
        "reasoning": {"effort": body.reasoning.effort if body.reasoning else None,
                      "summary": body.reasoning.summary if body.reasoning else None},
        "store": body.store,
        "background": body.background,
        "temperature": body.temperature if body.temperature is not None else 1.0,
        "top_p": body.top_p if body.top_p is not None else 1.0,
        "text": text_echo(body),
        "tool_choice": choice_echo,
        "tools": tools,
        "top_logprobs": body.top_logprobs or 0,
        "truncation": body.truncation or "disabled",
        "user": body.user,
        # Required by the Open Responses schema (numbers and a tier, never null).
        "presence_penalty": body.presence_penalty if body.presence_penalty is not None else 0.0,
        "frequency_penalty": body.frequency_penalty if body.frequency_penalty is not None else 0.0,
        "max_tool_calls": body.max_tool_calls,
        "service_tier": "default",
        "safety_identifier": body.safety_identifier,
        "prompt_cache_key": body.prompt_cache_key,
    }
