"""The request body llama.cpp's ``handle_chat_completions`` takes, from a core request.

The fields are OpenAI's (:mod:`shoal.backends.openai_wire.body`); what is
llama.cpp's own here is prompt caching, the template's reasoning switches, the
hint after tool results, and tool choices enforced by a JSON schema.
"""

from __future__ import annotations

from typing import Any

from shoal.backends.openai_wire.body import message_dict, sampling_fields, tool_fields
from shoal.backends.openai_wire.chunks import constrained_tools, forced_parallel
from shoal.core.types import GenerationRequest
from shoal.parsers.constrained import tool_call_schema

TOOL_RESULT_HINT = "Answer the user's question in plain language using the tool results above."
"""Added after tool results: without it small models (Qwen2.5-Coder-0.5B) repeat their call instead of answering."""


def to_llama_body(request: GenerationRequest, *, tool_result_hint: bool = True) -> dict[str, Any]:
    """The OpenAI-style body llama.cpp's ``handle_chat_completions`` takes (always streamed).

    Tools are rendered by the model's template. ``auto`` leaves the choice to the
    model (llama.cpp parses its native format; the chunk translator the
    lenient ones). ``required`` and a named function are enforced by a JSON
    schema over the allowed calls (``tool_choice`` is sent as ``none`` so that
    llama.cpp accepts the schema next to the tools and leaves the output to us).
    ``parallel_tool_calls`` is always sent with tools: llama.cpp's default is
    not OpenAI's. A conversation that ends with tool results gets a one-line
    system hint to answer from them (``tool_result_hint``).
    """
    messages = [message_dict(m) for m in request.messages]
    if tool_result_hint and request.messages and request.messages[-1].role == "tool":
        messages.append({"role": "system", "content": TOOL_RESULT_HINT})
    body: dict[str, Any] = {
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
        "cache_prompt": True,
        **sampling_fields(request),
    }
    if request.reasoning_effort:
        kwargs: dict[str, Any] = {"reasoning_effort": request.reasoning_effort}
        if request.reasoning_effort == "none":
            kwargs["enable_thinking"] = False
        body["chat_template_kwargs"] = kwargs
    forced = constrained_tools(request)
    if forced:
        parallel = forced_parallel(request)
        body.update(tool_fields(forced, "none", parallel, explicit_parallel=True))
        body["json_schema"] = tool_call_schema(forced, parallel=parallel)
        body.pop("response_format", None)
    elif request.tool_choice != "none":
        body.update(tool_fields(request.tools, "auto", request.parallel_tool_calls, explicit_parallel=True))
    return body
