"""Stateful Responses logic: history, storage, truncation and background runs.

:meth:`ResponsesService.create` is the one entry of a create call; it returns what the
router frames (:mod:`shoal.api.responses.results`). The service never hands a generation out.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any, cast

from shoal.api.responses.builder import ResponseBuilder, cancelled_copy
from shoal.api.responses.echo import echo_fields
from shoal.api.responses.items import output_as_input, stored_input_items
from shoal.api.responses.leases import LeaseKeeper
from shoal.api.responses.results import Background, Stream, Whole
from shoal.api.responses.runs import BackgroundRun, Turn
from shoal.api.responses.translate import (
    ENCRYPTED_INCLUDE,
    LOGPROBS_INCLUDE,
    SOURCES_INCLUDE,
    History,
    translate,
)
from shoal.api.responses.web_search_loop import with_web_search
from shoal.core.context import RequestContext
from shoal.core.generation import Generation
from shoal.core.pipeline import Pipeline
from shoal.errors import InvalidRequestError, NotFoundError, ShoalError, StorageUnavailableError
from shoal.protocol.responses import ResponsesRequest
from shoal.protocol.responses_output import TERMINAL_EVENTS, Response, ResponseStreamEvent
from shoal.storage.responses import ACTIVE, ResponseStore, StoredResponse
from shoal.tools.web_search import SearchProvider

log = logging.getLogger("shoal.responses")

MAX_TRUNCATION_STEPS = 64
KEPT_RUNS = 256


class ResponsesService:
    """Creates, stores, continues, cancels and replays responses."""

    def __init__(self, pipeline: Pipeline, store: ResponseStore, search: SearchProvider | None = None) -> None:
        self.pipeline = pipeline
        self.store = store
        self.search = search
        self.runs: OrderedDict[str, BackgroundRun] = OrderedDict()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        self.leases = LeaseKeeper(store, self._running_ids, self._stop_elsewhere)

    def open(self) -> None:
        """Start the lease upkeep of background responses (needs a running loop)."""
        self.leases.start()

    async def create(self, body: ResponsesRequest, context: RequestContext, *,
                     context_length: int | None = None) -> Whole | Stream | Background:
        """Create a response: generated whole, streamed, or queued to run in the background.

        ``context_length`` bounds the request's own text (:func:`translate`). A background
        response asked with ``stream`` is a :class:`Stream` that follows the run.
        """
        model = self.pipeline.resolve(body.model, context).card.id
        turn = await self.open_turn(body, context, model, context_length=context_length)
        if body.background:
            run = await self.start_background(turn)
            if body.stream:
                return Stream(model, run.follow(None))
            return Background(model, turn.builder.snapshot())
        if body.stream:
            generation = await self._start(turn)
            return Stream(generation.model, self._stream(turn, generation))
        response = await self._whole(turn)
        return Whole(response["model"], response)

    # -- building a turn ---------------------------------------------------
    async def open_turn(self, body: ResponsesRequest, context: RequestContext, model: str,
                        context_length: int | None = None) -> Turn:
        """Check and translate the request, load the history of ``previous_response_id`` (404 if unknown)."""
        stored: list[dict[str, Any]] = []
        if body.previous_response_id:
            prev = await self.store.get(body.previous_response_id, context.owner)
            if prev is None:
                raise NotFoundError(f"Previous response with id '{body.previous_response_id}' not found.",
                                    param="previous_response_id", code="previous_response_not_found")
            if prev.status in ACTIVE:
                raise InvalidRequestError(f"Previous response '{prev.id}' is still {prev.status}.",
                                          param="previous_response_id")
            stored = list(prev.conversation)
        if body.background and not body.store:
            raise InvalidRequestError("background mode requires store=true.", param="background")
        translation = await translate(body, search_available=self.search is not None, context_length=context_length)
        include = body.include or ()
        builder = ResponseBuilder(echo_fields(body, model), logprobs=LOGPROBS_INCLUDE in include,
                                  seal=ENCRYPTED_INCLUDE in include, tools=translation.offered,
                                  max_tool_calls=body.max_tool_calls)
        # For routing by cache affinity: a follow-up goes where this conversation's prefix is cached.
        context.response_id, context.previous_response_id = builder.id, body.previous_response_id
        return Turn(body, context, translation, History(stored), stored_input_items(body), builder)

    async def _start(self, turn: Turn) -> Generation:
        """Start generating; with ``truncation: auto`` drop the oldest turns until the prompt fits."""
        for _ in range(MAX_TRUNCATION_STEPS):
            request = turn.translation.with_history(turn.history.messages)
            try:
                generation = await self.pipeline.start(request, turn.context)
                turn.builder.answered_by(generation.model)
                return with_web_search(generation, request, pipeline=self.pipeline, context=turn.context,
                                       provider=self.search, sources=SOURCES_INCLUDE in (turn.body.include or ()),
                                       max_searches=turn.body.max_tool_calls)
            except InvalidRequestError as exc:
                if exc.code != "context_length_exceeded":
                    raise
                if turn.body.truncation != "auto" or not turn.history.drop_oldest_turn():
                    raise InvalidRequestError(
                        "The input (with the conversation so far) does not fit in the model's context window. "
                        "Shorten it, or set truncation to 'auto' to drop the oldest turns.",
                        param="input", code="context_length_exceeded") from exc
                log.info("truncation=auto: dropped the oldest turn of %s", turn.builder.id)
        raise InvalidRequestError("The input does not fit in the model's context window.", param="input",
                                  code="context_length_exceeded")

    def record(self, turn: Turn) -> StoredResponse:
        """The stored form of the turn as it stands."""
        response = turn.builder.response
        return StoredResponse(
            id=turn.builder.id, owner=turn.context.owner, status=response["status"], model=response["model"],
            body=cast(dict[str, Any], response), input_items=turn.input_items,
            conversation=turn.history.items + turn.input_items + output_as_input(response["output"]),
            previous_response_id=turn.body.previous_response_id, background=turn.body.background,
        )

    async def save(self, turn: Turn) -> None:
        """Store the turn if the request asked for it.

        A database failure is a 503 (:class:`StorageUnavailableError`).
        """
        if not turn.body.store:
            return
        try:
            await self.store.save(self.record(turn))
        except Exception as exc:
            log.error("could not store response %s: %s", turn.builder.id, type(exc).__name__)
            raise StorageUnavailableError("The response could not be stored: the database is unavailable. "
                                          "Retry shortly.", headers={"retry-after": "1"}) from exc

    def save_later(self, turn: Turn) -> None:
        """Store from a context that may be cancelled (a client that went away)."""
        task = asyncio.ensure_future(self._save_quietly(turn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _save_quietly(self, turn: Turn) -> None:
        # Nobody is left to tell: save() has logged the failure.
        try:
            await self.save(turn)
        except StorageUnavailableError:
            pass

    # -- running -----------------------------------------------------------
    async def _events(self, turn: Turn, generation: Generation) -> AsyncIterator[ResponseStreamEvent]:
        """Every stream event of the turn, ending with exactly one terminal event."""
        event: ResponseStreamEvent
        for event in turn.builder.start():
            yield event
        try:
            async for ev in generation:
                for event in turn.builder.feed(ev):
                    yield event
        except ShoalError as exc:
            if not turn.builder.active:
                # Its terminal event went out already; a second one would break the stream.
                log.warning("response %s: error after it ended, ignored: %s", turn.builder.id, exc.message)
                return
            turn.error = exc
            for event in turn.builder.fail(exc):
                yield event
        finally:
            await generation.aclose()

    async def _whole(self, turn: Turn) -> Response:
        """Generate to the end and return the response object; a failure is stored, then raised."""
        generation = await self._start(turn)
        async for _ in self._events(turn, generation):
            pass
        await self.save(turn)
        if turn.error is not None:
            raise turn.error
        return turn.builder.response

    async def _stream(self, turn: Turn, generation: Generation) -> AsyncIterator[ResponseStreamEvent]:
        """Stream the events and store the result however the stream ends.

        A stored response is written before its terminal event goes out: a client that saw
        ``response.completed`` can retrieve it. If that write fails, the stream ends with
        ``response.failed`` instead, so a response that was not kept never looks like a success.
        """
        saved = False
        try:
            async for event in self._events(turn, generation):
                if event["type"] in TERMINAL_EVENTS and turn.body.store:
                    try:
                        await self.save(turn)
                        saved = True
                    except StorageUnavailableError as exc:
                        event = turn.builder.unkept(exc)
                yield event
        finally:
            if not saved:
                if turn.builder.active:
                    turn.builder.cancel()  # the client went away: nobody to send the event to
                self.save_later(turn)

    async def start_background(self, turn: Turn) -> BackgroundRun:
        """Queue the turn, store it as ``queued`` and run it in a task."""
        queued = turn.builder.queue()
        await self.save(turn)
        run = BackgroundRun(turn)
        run.events.append(queued)
        self.runs[turn.builder.id] = run
        while len(self.runs) > KEPT_RUNS:
            oldest = next(iter(self.runs))
            if not self.runs[oldest].done:
                break
            self.runs.pop(oldest)
        run.task = asyncio.ensure_future(self._run_background(run))
        return run

    async def _run_background(self, run: BackgroundRun) -> None:
        turn = run.turn
        builder = turn.builder
        response_id = builder.id
        try:
            try:
                generation = await self._start(turn)
            except ShoalError as exc:
                await run.publish(*builder.fail(exc))  # response.created, response.failed
                return
            if not await self.store.set_status(response_id, "in_progress", was=("queued",)):
                await generation.aclose()
                run.stopped = await self.store.status(response_id) or "deleted"
                await self._publish_stop(run)
                return
            async for event in self._events(turn, generation):
                await run.publish(event)
        except asyncio.CancelledError:
            if run.stopped is not None:
                await self._publish_stop(run)
            elif not builder.active:
                pass  # it ended before the cancel landed: its terminal event stands
            elif self._closing:
                await run.publish(*builder.fail(ShoalError("The server shut down before this response "
                                                                  "finished.")))
            else:
                await run.publish(builder.cancel())
        except Exception:
            # Not a ShoalError (_events() turns those into response.failed): a bug or an unexpected
            # library error. The row must still end, not stay queued / in_progress.
            log.exception("background response %s failed", response_id)
            if builder.active:
                await run.publish(*builder.fail(ShoalError("The server failed while generating this "
                                                                  "response.")))
        finally:
            run.finishing = True
            if run.stopped is None:
                await asyncio.shield(self._store_final(turn))
            async with run.changed:
                run.done = True
                run.changed.notify_all()

    async def _store_final(self, turn: Turn) -> None:
        """The run's last write, only over a row still active: a cancel, delete or sweep done elsewhere stands."""
        try:
            if not await self.store.update_if_active(self.record(turn)):
                log.info("background response %s was cancelled, deleted or failed elsewhere; its %s result "
                         "is not stored", turn.builder.id, turn.builder.status)
        except Exception:
            # The lease is no longer renewed: within lease_seconds a replica marks the row failed.
            log.exception("could not store the result of background response %s", turn.builder.id)

    async def _publish_stop(self, run: BackgroundRun) -> None:
        """Tell this replica's followers that the stored state (set elsewhere) ended the run."""
        builder = run.turn.builder
        if not builder.active:
            return  # it ended first: its terminal event went out
        state = run.stopped or "cancelled"
        if state == "failed":
            event = builder.abort("failed", "server_error", "The response was failed while it ran.")
        else:
            event = builder.abort("cancelled", "response_cancelled", f"The response was {state} while it ran.")
        await run.publish(event)

    def _running_ids(self) -> list[str]:
        """Background responses running here whose leases need renewing."""
        return [rid for rid, run in self.runs.items() if not run.done and not run.finishing]

    def _stop_elsewhere(self, response_id: str, stored: str) -> None:
        """Another replica cancelled, deleted or failed this run's row: stop generating, write nothing."""
        run = self.runs.get(response_id)
        if run is None or run.done or run.finishing or run.task is None:
            return
        log.info("background response %s was %s elsewhere: stopping it here", response_id, stored)
        run.stopped = stored
        run.task.cancel()

    # -- reading, deleting -------------------------------------------------
    async def retrieve(self, response_id: str, owner: str | None) -> Response:
        """A response as it stands: live if it runs here, else as stored (404 if unknown)."""
        stored = await self._stored(response_id, owner)
        run = self.runs.get(response_id)
        if run is not None and not run.done:
            return run.turn.builder.snapshot()
        return cast(Response, stored.body)

    async def replay(self, response_id: str, owner: str | None,
                     starting_after: int | None = None) -> AsyncIterator[ResponseStreamEvent]:
        """A background response's events after ``starting_after``, then live (400 unless it runs here)."""
        await self._stored(response_id, owner)
        run = self.runs.get(response_id)
        if run is None:
            raise InvalidRequestError("Only background responses running on this server can be streamed; "
                                      "fetch it without stream=true.", param="stream")
        return run.follow(starting_after)

    async def input_items(self, response_id: str, owner: str | None) -> list[dict[str, Any]]:
        """The response's input items, oldest first (404 if unknown)."""
        return list((await self._stored(response_id, owner)).input_items)

    async def delete(self, response_id: str, owner: str | None) -> None:
        """Delete a stored response, cancelling it first if it is still running here (404 if unknown)."""
        run = self.runs.get(response_id)
        if run is not None and run.turn.context.owner == owner and run.running:
            await self.cancel(response_id, owner)
        if not await self.store.delete(response_id, owner):
            raise NotFoundError(f"Response with id '{response_id}' not found.", param="response_id")
        self.runs.pop(response_id, None)

    async def _stored(self, response_id: str, owner: str | None) -> StoredResponse:
        stored = await self.store.get(response_id, owner)
        if stored is None:
            raise NotFoundError(f"Response with id '{response_id}' not found.", param="response_id")
        return stored

    async def cancel(self, response_id: str, owner: str | None) -> Response:
        """Cancel a background response; 404 if unknown, 400 if not in background."""
        stored = await self._stored(response_id, owner)
        if not stored.background:
            raise InvalidRequestError("Only background responses can be cancelled.", param="response_id")
        run = self.runs.get(response_id)
        if run is not None and run.task is not None and not run.done:
            if not run.finishing:  # a cancel would cut its final write short: let it end as it ends
                run.task.cancel()
            await asyncio.gather(run.task, return_exceptions=True)
            return run.turn.builder.response
        body = cast(Response, stored.body)
        if stored.status in ACTIVE:
            # Running on another replica (or orphaned): the stored status is what everyone reads, and
            # the running replica sees it at its next lease renewal and stops.
            body = cancelled_copy(body)
            stored.status, stored.body = body["status"], cast(dict[str, Any], body)
            if not await self.store.update_if_active(stored):
                # It ended meanwhile: report how.
                current = await self.store.get(response_id, owner)
                if current is None:
                    raise NotFoundError(f"Response with id '{response_id}' not found.", param="response_id")
                return cast(Response, current.body)
        return body

    async def aclose(self) -> None:
        """Stop background runs (stored as failed: the server went away) and finish pending saves."""
        self._closing = True
        await self.leases.aclose()
        for run in list(self.runs.values()):
            if run.task is not None and not run.done:
                run.task.cancel()
        await asyncio.gather(*(r.task for r in self.runs.values() if r.task), *self._tasks, return_exceptions=True)
