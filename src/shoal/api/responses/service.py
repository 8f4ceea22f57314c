"""Stateful Responses logic: history, storage, truncation and background runs."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from shoal.api.responses.builder import ResponseBuilder
from shoal.api.responses.items import drop_oldest_turn, output_as_input, parse_items, stored_input_items
from shoal.api.responses.leases import LeaseKeeper
from shoal.api.responses.translate import SOURCES_INCLUDE, check_request, input_messages, to_generation
from shoal.api.responses.web_search_loop import with_web_search
from shoal.core.context import RequestContext
from shoal.core.generation import Generation
from shoal.core.pipeline import Pipeline
from shoal.errors import InvalidRequestError, NotFoundError, ShoalError, StorageUnavailableError
from shoal.protocol.responses import ResponsesRequest
from shoal.storage.responses import ACTIVE, ResponseStore, StoredResponse
from shoal.tools.web_search import SearchProvider

TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})
"""The events that end a Responses stream."""

log = logging.getLogger("shoal.responses")

MAX_TRUNCATION_STEPS = 64
KEPT_RUNS = 256


@dataclass
class Turn:
    """One create-response call: its request, its history and how it is being built."""

    body: ResponsesRequest
    context: RequestContext
    history: list[dict[str, Any]]
    input_items: list[dict[str, Any]]
    builder: ResponseBuilder
    error: ShoalError | None = None


@dataclass
class BackgroundRun:
    """A background response running on this instance, with its event log for resuming streams."""

    turn: Turn
    events: list[dict[str, Any]] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    done: bool = False
    task: asyncio.Task[None] | None = None
    finishing: bool = False
    """Its final write is under way: nothing may cancel it any more."""
    stopped: str | None = None
    """Set when another replica cancelled or deleted it (or failed it): the stored state, which stands."""


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

    # -- building a turn ---------------------------------------------------
    async def open_turn(self, body: ResponsesRequest, context: RequestContext, echo: dict[str, Any],
                        logprobs: bool = False, seal: bool = False, context_length: int | None = None) -> Turn:
        """Check the request, load the history of ``previous_response_id`` (404 if unknown) and set up the builder.

        ``context_length`` bounds the request's own text (translate.check_request).
        """
        history: list[dict[str, Any]] = []
        if body.previous_response_id:
            prev = await self.store.get(body.previous_response_id, context.owner)
            if prev is None:
                raise NotFoundError(f"Previous response with id '{body.previous_response_id}' not found.",
                                    param="previous_response_id", code="previous_response_not_found")
            if prev.status in ACTIVE:
                raise InvalidRequestError(f"Previous response '{prev.id}' is still {prev.status}.",
                                          param="previous_response_id")
            history = list(prev.conversation)
        if body.background and not body.store:
            raise InvalidRequestError("background mode requires store=true.", param="background")
        offered = await check_request(body, search_available=self.search is not None, context_length=context_length)
        builder = ResponseBuilder(echo, logprobs=logprobs, seal=seal, tools=offered, max_tool_calls=body.max_tool_calls)
        return Turn(body, context, history, stored_input_items(body), builder)

    async def start(self, turn: Turn) -> Generation:
        """Start generating; with ``truncation: auto`` drop the oldest turns until the prompt fits."""
        for _ in range(MAX_TRUNCATION_STEPS):
            request = to_generation(turn.body, input_messages(parse_items(turn.history)),
                                    search_available=self.search is not None)
            try:
                generation = await self.pipeline.start(request, turn.context)
                # Behind a router the deployment picked decides which model answered.
                turn.builder.response["model"] = generation.model
                return with_web_search(generation, request, pipeline=self.pipeline, context=turn.context,
                                       provider=self.search, sources=SOURCES_INCLUDE in (turn.body.include or ()),
                                       max_searches=turn.body.max_tool_calls)
            except InvalidRequestError as exc:
                if exc.code != "context_length_exceeded":
                    raise
                shorter = drop_oldest_turn(turn.history) if turn.body.truncation == "auto" else None
                if shorter is None or shorter == turn.history:
                    raise InvalidRequestError(
                        "The input (with the conversation so far) does not fit in the model's context window. "
                        "Shorten it, or set truncation to 'auto' to drop the oldest turns.",
                        param="input", code="context_length_exceeded") from exc
                log.info("truncation=auto: dropped the oldest turn of %s", turn.builder.id)
                turn.history = shorter
        raise InvalidRequestError("The input does not fit in the model's context window.", param="input",
                                  code="context_length_exceeded")

    def record(self, turn: Turn) -> StoredResponse:
        """The stored form of the turn as it stands."""
        response = turn.builder.response
        return StoredResponse(
            id=turn.builder.id, owner=turn.context.owner, status=response["status"], model=response["model"],
            body=response, input_items=turn.input_items,
            conversation=turn.history + turn.input_items + output_as_input(response["output"]),
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
    async def events(self, turn: Turn, generation: Generation) -> AsyncIterator[dict[str, Any]]:
        """Every stream event of the turn, ending with exactly one terminal event."""
        for event in turn.builder.start():
            yield event
        try:
            async for ev in generation:
                for event in turn.builder.feed(ev):
                    yield event
        except ShoalError as exc:
            turn.error = exc
            for event in turn.builder.fail(exc):
                yield event
        finally:
            await generation.aclose()

    async def run_foreground(self, turn: Turn) -> dict[str, Any]:
        """Generate to the end and return the response object; a failure is stored, then raised."""
        generation = await self.start(turn)
        async for _ in self.events(turn, generation):
            pass
        await self.save(turn)
        if turn.error is not None:
            raise turn.error
        return turn.builder.response

    async def stream_foreground(self, turn: Turn, generation: Generation) -> AsyncIterator[dict[str, Any]]:
        """Stream the events and store the result however the stream ends.

        A stored response is written before its terminal event goes out: a client that saw
        ``response.completed`` can retrieve it. If that write fails, the stream ends with
        ``response.failed`` instead, so a response that was not kept never looks like a success.
        """
        saved = False
        try:
            async for event in self.events(turn, generation):
                if event["type"] in TERMINAL_EVENTS and turn.body.store:
                    try:
                        await self.save(turn)
                        saved = True
                    except StorageUnavailableError as exc:
                        event = turn.builder.fail(exc)[-1]
                yield event
        finally:
            if not saved:
                if turn.builder.response["status"] == "in_progress":
                    turn.builder.response["status"] = "cancelled"
                self.save_later(turn)

    async def start_background(self, turn: Turn) -> BackgroundRun:
        """Queue the turn, store it as ``queued`` and run it in a task."""
        turn.builder.response["status"] = "queued"
        await self.save(turn)
        run = BackgroundRun(turn)
        run.events.append(turn.builder.event("response.queued", response=turn.builder.snapshot()))
        self.runs[turn.builder.id] = run
        while len(self.runs) > KEPT_RUNS:
            oldest = next(iter(self.runs))
            if not self.runs[oldest].done:
                break
            self.runs.pop(oldest)
        run.task = asyncio.ensure_future(self._run_background(run))
        return run

    async def _publish(self, run: BackgroundRun, event: dict[str, Any]) -> None:
        async with run.changed:
            run.events.append(event)
            run.changed.notify_all()

    async def _run_background(self, run: BackgroundRun) -> None:
        turn = run.turn
        response_id = turn.builder.id
        try:
            try:
                generation = await self.start(turn)
            except ShoalError as exc:
                await self._publish(run, turn.builder.start()[0])
                for event in turn.builder.fail(exc):
                    await self._publish(run, event)
                return
            turn.builder.response["status"] = "in_progress"
            if not await self.store.set_status(response_id, "in_progress", was=("queued",)):
                await generation.aclose()
                run.stopped = await self.store.status(response_id) or "deleted"
                await self._publish_stop(run)
                return
            async for event in self.events(turn, generation):
                await self._publish(run, event)
        except asyncio.CancelledError:
            if run.stopped is not None:
                await self._publish_stop(run)
            elif self._closing:
                for event in turn.builder.fail(ShoalError("The server shut down before this response finished.")):
                    await self._publish(run, event)
            else:
                turn.builder.response["status"] = "cancelled"
                await self._publish(run, turn.builder.event(
                    "error", code="response_cancelled", message="The response was cancelled.", param=None))
        except Exception:
            # Not a ShoalError (events() turns those into response.failed): a bug or an unexpected
            # library error. The row must still end, not stay queued / in_progress.
            log.exception("background response %s failed", response_id)
            if len(run.events) == 1:  # only response.queued so far
                await self._publish(run, turn.builder.start()[0])
            for event in turn.builder.fail(ShoalError("The server failed while generating this response.")):
                await self._publish(run, event)
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
                         "is not stored", turn.builder.id, turn.builder.response["status"])
        except Exception:
            # The lease is no longer renewed: within lease_seconds a replica marks the row failed.
            log.exception("could not store the result of background response %s", turn.builder.id)

    async def _publish_stop(self, run: BackgroundRun) -> None:
        """Tell this replica's followers that the stored state (set elsewhere) ended the run."""
        turn = run.turn
        state = run.stopped or "cancelled"
        turn.builder.response["status"] = state if state in ("cancelled", "failed") else "cancelled"
        await self._publish(run, turn.builder.event(
            "error", code="response_cancelled" if state != "failed" else "server_error",
            message=f"The response was {state} while it ran.", param=None))

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

    async def follow(self, run: BackgroundRun, starting_after: int | None) -> AsyncIterator[dict[str, Any]]:
        """Replay a background run's events after ``starting_after``, then follow it live."""
        position = 0
        while True:
            async with run.changed:
                while position >= len(run.events) and not run.done:
                    await run.changed.wait()
                fresh = run.events[position:]
                position = len(run.events)
                finished = run.done and position >= len(run.events)
            for event in fresh:
                if starting_after is None or event["sequence_number"] > starting_after:
                    yield event
            if finished:
                return

    async def cancel(self, response_id: str, owner: str | None) -> dict[str, Any]:
        """Cancel a background response; 404 if unknown, 400 if not in background."""
        stored = await self.store.get(response_id, owner)
        if stored is None:
            raise NotFoundError(f"Response with id '{response_id}' not found.", param="response_id")
        if not stored.background:
            raise InvalidRequestError("Only background responses can be cancelled.", param="response_id")
        run = self.runs.get(response_id)
        if run is not None and run.task is not None and not run.done:
            if not run.finishing:  # a cancel would cut its final write short: let it end as it ends
                run.task.cancel()
            await asyncio.gather(run.task, return_exceptions=True)
            return run.turn.builder.response
        if stored.status in ACTIVE:
            # Running on another replica (or orphaned): the stored status is what everyone reads, and
            # the running replica sees it at its next lease renewal and stops.
            stored.status = "cancelled"
            stored.body = {**stored.body, "status": "cancelled"}
            if not await self.store.update_if_active(stored):
                # It ended meanwhile: report how.
                current = await self.store.get(response_id, owner)
                if current is None:
                    raise NotFoundError(f"Response with id '{response_id}' not found.", param="response_id")
                return current.body
        return stored.body

    async def aclose(self) -> None:
        """Stop background runs (stored as failed: the server went away) and finish pending saves."""
        self._closing = True
        await self.leases.aclose()
        for run in list(self.runs.values()):
            if run.task is not None and not run.done:
                run.task.cancel()
        await asyncio.gather(*(r.task for r in self.runs.values() if r.task), *self._tasks, return_exceptions=True)
