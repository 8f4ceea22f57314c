"""HTTP route of ``POST /v1/chat/completions``."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import Response

from shoal import sse
from shoal.api.chat.stream import chunk_frames, completion_body
from shoal.api.chat.translate import translate
from shoal.api.deps import (
    authenticated,
    closing,
    context,
    context_window,
    log_ignored,
    read_body,
    services,
    stream_response,
)
from shoal.api.encoding import new_id
from shoal.protocol.chat import ChatCompletionRequest

router = APIRouter()


async def create_chat_completion(request: Request) -> Response:
    """Create a chat completion, streamed or not (the body is a :class:`ChatCompletionRequest`)."""
    await authenticated(request)
    body = await read_body(request, ChatCompletionRequest)
    log_ignored(body, "chat.completions")
    svc = services(request)
    ctx = context(request)
    generation = await svc.pipeline.start(await translate(body, context_window(request, body.model)), ctx)
    completion_id = new_id("chatcmpl-")
    created = int(time.time())
    # The context's headers (deployment, rate limits) are added by the edge.
    headers = {"x-shoal-model": generation.model}
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        frames = chunk_frames(generation, completion_id=completion_id, created=created, model=generation.model,
                              include_usage=include_usage, logprobs=bool(body.logprobs))
        return stream_response(request, closing(generation, frames), headers)
    try:
        result = await completion_body(generation, completion_id=completion_id, created=created,
                                       model=generation.model, logprobs=bool(body.logprobs))
    finally:
        await generation.aclose()
    return Response(sse.dumps(result), media_type="application/json", headers=headers)


# A plain route, called straight from the edge (shoal.api.edge); registered here for the router too.
router.add_route("/v1/chat/completions", create_chat_completion, methods=["POST"])
