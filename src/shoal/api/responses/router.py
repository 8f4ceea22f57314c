"""HTTP routes of the Responses API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from shoal import sse
from shoal.api.deps import authenticated, log_ignored, services
from shoal.api.responses.builder import ResponseBuilder
from shoal.api.responses.translate import LOGPROBS_INCLUDE, to_generation
from shoal.core.pipeline import Generation
from shoal.errors import InvalidRequestError, ShoalError
from shoal.protocol.chat import ChatTool
from shoal.protocol.responses import ResponsesRequest

router = APIRouter(dependencies=[Depends(authenticated)])


def echo_fields(body: ResponsesRequest, model: str) -> dict[str, Any]:
    """The request fields a Response object repeats back."""
    tools = []
    for tool in body.tools or ():
        if isinstance(tool, ChatTool):
            fn = tool.function
            tools.append({"type": "function", "name": fn.name, "description": fn.description,
                          "parameters": fn.parameters, "strict": fn.strict})
        else:
            tools.append(tool.model_dump(exclude_none=False))
    choice = body.tool_choice
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
        "text": {"format": {"type": "text"}},
        "tool_choice": choice if isinstance(choice, str) else (choice.model_dump() if choice else "auto"),
        "tools": tools,
        "top_logprobs": body.top_logprobs or 0,
        "truncation": body.truncation or "disabled",
        "user": body.user,
    }


async def _stream(builder: ResponseBuilder, generation: Generation) -> AsyncIterator[bytes]:
    try:
        for event in builder.start():
            yield sse.event_frame(event["type"], event)
        try:
            async for ev in generation:
                for event in builder.feed(ev):
                    yield sse.event_frame(event["type"], event)
        except ShoalError as exc:
            for event in builder.fail(exc):
                yield sse.event_frame(event["type"], event)
    finally:
        await generation.aclose()


@router.post("/v1/responses")
async def create_response(body: ResponsesRequest, request: Request) -> Response:
    """Create a model response, streamed as semantic events or returned whole."""
    log_ignored(body, "responses")
    if body.previous_response_id is not None:
        raise InvalidRequestError("previous_response_id is not supported by this server yet.",
                                  param="previous_response_id")
    if body.background:
        raise InvalidRequestError("background mode is not supported by this server yet.", param="background")
    svc = services(request)
    generation = await svc.pipeline.start(to_generation(body))
    builder = ResponseBuilder(echo_fields(body, generation.model),
                              logprobs=LOGPROBS_INCLUDE in (body.include or ()))
    headers = {"x-shoal-model": generation.model}
    if body.stream:
        return sse.sse_response(_stream(builder, generation), headers=headers,
                                keepalive=svc.settings.keepalive_seconds)
    try:
        async for ev in generation:
            builder.feed(ev)
    finally:
        await generation.aclose()
    return Response(sse.dumps(builder.response), media_type="application/json", headers=headers)
