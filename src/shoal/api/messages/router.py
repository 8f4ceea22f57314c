"""HTTP routes of ``POST /v1/messages`` and ``POST /v1/messages/count_tokens`` (Anthropic's Messages API).

The same path as chat completions (keys, limits, budgets, routing, failover,
metering under the endpoint ``/v1/messages``); only the wire differs. Errors,
whatever raised them, are answered in Anthropic's shape
``{"type": "error", "error": {"type", "message"}}`` with the status and headers
(``retry-after``, rate-limit state) the one error mapping gives them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from shoal import sse
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
from shoal.api.messages.count import count_tokens
from shoal.api.messages.stream import error_body, event_frames, message_body
from shoal.api.messages.translate import translate
from shoal.errors import response_for
from shoal.protocol.messages import CountTokensRequest, MessagesRequest

router = APIRouter()

Endpoint = Callable[[Request], Awaitable[Response]]


def anthropic_errors(endpoint: Endpoint) -> Endpoint:
    """``endpoint`` with every error it raises answered in Anthropic's shape."""
    async def answer(request: Request) -> Response:
        try:
            return await endpoint(request)
        except Exception as exc:  # noqa: BLE001 - every error is rendered, as the app's handlers would
            return anthropic_error(exc)
    answer.__name__ = endpoint.__name__
    answer.__doc__ = endpoint.__doc__
    return answer


def anthropic_error(exc: Exception) -> Response:
    """The one error mapping's status and headers, with an Anthropic-shaped body."""
    plain = response_for(exc)
    error = orjson.loads(plain.body).get("error") or {}
    headers = {k: v for k, v in plain.headers.items() if k not in ("content-length", "content-type")}
    return Response(sse.dumps(error_body(plain.status_code, str(error.get("message", "")))),
                    status_code=plain.status_code, media_type="application/json", headers=headers)


async def _create_message(request: Request) -> Response:
    """Create a message, streamed or not (the body is a :class:`MessagesRequest`)."""
    await authenticated(request)
    body = await read_body(request, MessagesRequest)
    log_ignored(body, "messages")
    svc = services(request)
    generation = await svc.pipeline.start(await translate(body, context_window(request, body.model)), context(request))
    message_id = new_id("msg_")
    # The context's headers (deployment, rate limits) are added by the edge.
    headers = {"x-shoal-model": generation.model}
    if body.stream:
        frames = event_frames(generation, message_id=message_id, model=generation.model)
        return stream_response(request, closing(generation, frames), headers)
    try:
        result = await message_body(generation, message_id=message_id, model=generation.model)
    finally:
        await generation.aclose()
    return Response(sse.dumps(result), media_type="application/json", headers=headers)


async def _count_message_tokens(request: Request) -> Response:
    """Count a message request's prompt tokens (the body is a :class:`CountTokensRequest`)."""
    await authenticated(request)
    body = await read_body(request, CountTokensRequest)
    svc = services(request)
    tokens = await count_tokens(svc.pipeline, await translate(body, context_window(request, body.model)),
                                  context(request))
    return Response(sse.dumps({"input_tokens": tokens}), media_type="application/json")


create_message = anthropic_errors(_create_message)
count_message_tokens = anthropic_errors(_count_message_tokens)

# Plain routes, called straight from the edge (shoal.api.edge); registered here for the router too.
router.add_route("/v1/messages", create_message, methods=["POST"])
router.add_route("/v1/messages/count_tokens", count_message_tokens, methods=["POST"])
