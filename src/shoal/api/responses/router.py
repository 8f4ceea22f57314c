"""HTTP routes of the Responses API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from shoal import sse
from shoal.api.deps import (
    authenticated,
    context,
    context_window,
    log_ignored,
    owner,
    read_body,
    services,
    stream_response,
)
from shoal.api.responses.results import Stream
from shoal.errors import InvalidRequestError
from shoal.protocol.responses import ResponsesRequest
from shoal.protocol.responses_output import ResponseStreamEvent

router = APIRouter(dependencies=[Depends(authenticated)])


def _json(obj: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(sse.dumps(obj), media_type="application/json", headers=headers)


async def _frames(events: AsyncIterator[ResponseStreamEvent]) -> AsyncIterator[bytes]:
    async for event in events:
        yield sse.event_frame(event["type"], event)


async def create_response(request: Request) -> Response:
    """Create a model response: returned whole, streamed as semantic events, or run in the background.

    The body is a :class:`ResponsesRequest`. A plain route (the edge calls it directly), so it
    authenticates itself.
    """
    await authenticated(request)
    body = await read_body(request, ResponsesRequest)
    log_ignored(body, "responses")
    result = await services(request).responses.create(body, context(request),
                                                      context_length=context_window(request, body.model))
    headers = {"x-shoal-model": result.model}
    if isinstance(result, Stream):
        return stream_response(request, _frames(result.events), headers)
    return _json(result.response, headers)


# A plain route, called straight from the edge (shoal.api.edge); registered here for the router too.
router.add_route("/v1/responses", create_response, methods=["POST"])


@router.get("/v1/responses/{response_id}")
async def get_response(response_id: str, request: Request, stream: bool = False,
                       starting_after: int | None = None) -> Response:
    """A stored response; with ``stream=true`` a background response's events (resumable)."""
    svc = services(request).responses
    if stream:
        return stream_response(request, _frames(await svc.replay(response_id, owner(request), starting_after)))
    return _json(await svc.retrieve(response_id, owner(request)))


@router.delete("/v1/responses/{response_id}")
async def delete_response(response_id: str, request: Request) -> Response:
    """Delete a stored response (cancelling it first if it is still running here)."""
    await services(request).responses.delete(response_id, owner(request))
    return _json({"id": response_id, "object": "response.deleted", "deleted": True})


@router.post("/v1/responses/{response_id}/cancel")
async def cancel_response(response_id: str, request: Request) -> Response:
    """Cancel a background response."""
    return _json(await services(request).responses.cancel(response_id, owner(request)))


@router.get("/v1/responses/{response_id}/input_items")
async def list_input_items(
    response_id: str, request: Request, after: str | None = None, before: str | None = None,
    limit: int = Query(20, ge=1, le=100), order: Literal["asc", "desc"] = "desc",
) -> Response:
    """The response's input items, paginated like every OpenAI list."""
    items = await services(request).responses.input_items(response_id, owner(request))
    if order == "desc":
        items.reverse()
    ids = [i.get("id") for i in items]
    for cursor, name in ((after, "after"), (before, "before")):
        if cursor is not None and cursor not in ids:
            raise InvalidRequestError(f"No input item with id '{cursor}' in this response.", param=name)
    if after is not None:
        items = items[ids.index(after) + 1:]
    if before is not None:
        remaining = [i.get("id") for i in items]
        # A ``before`` that ``after`` already skipped past leaves nothing between them.
        items = items[:remaining.index(before)] if before in remaining else []
    page = items[:limit]
    return _json({
        "object": "list", "data": page, "has_more": len(items) > limit,
        "first_id": page[0]["id"] if page else None, "last_id": page[-1]["id"] if page else None,
    })
