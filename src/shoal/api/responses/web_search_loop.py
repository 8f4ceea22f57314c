"""The server-side tool loop of the built-in ``web_search`` tool.

The model is offered web search as a function (``web_search(query)``). When
it calls it, the call is not returned to the client: the loop runs the search,
reports it as a ``web_search_call`` item (in_progress → searching → completed),
appends the call and the numbered results to the conversation and generates
again — at most ``max_searches`` times, after which the tool is withdrawn so
the model has to answer. A forced choice (``required``, or the tool named)
applies to the first round only.

Citations: every result URL the answer quotes, and every ``[n]`` marker naming
result n, becomes a ``url_citation`` annotation on that span. An answer that
cites nothing gets a short ``Sources:`` line (the top results as markdown
links) appended, each link annotated — so a searched answer always carries
its citations.

The loop is an async iterator of core events with ``aclose()``, so the
Responses service drives it exactly like a single generation.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

from shoal.api.encoding import new_id
from shoal.api.responses.tools import WEB_SEARCH
from shoal.core.context import RequestContext
from shoal.core.generation import Generation
from shoal.core.pipeline import Pipeline
from shoal.core.types import (
    Citation,
    Finish,
    GenerationEvent,
    GenerationRequest,
    Message,
    NamedTool,
    SearchSource,
    ServerToolCall,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from shoal.tools.web_search import SearchError, SearchProvider

MAX_SEARCHES = 3
RESULTS_PER_SEARCH = 5
SOURCES_LISTED = 3
_MARKER = re.compile(r"\[(\d{1,2})\]")


def with_web_search(generation: Generation, request: GenerationRequest, *, pipeline: Pipeline,
                    context: RequestContext, provider: SearchProvider | None, sources: bool = False,
                    max_searches: int | None = None) -> Generation:
    """``generation`` itself, or — when the request offers web search — the loop around it.

    ``max_searches`` (the request's ``max_tool_calls``) lowers the loop's own bound.
    """
    if provider is None or not any(t.name == WEB_SEARCH.name for t in request.tools):
        return generation
    limit = MAX_SEARCHES if max_searches is None else min(MAX_SEARCHES, max_searches)
    loop = WebSearchLoop(generation, request, pipeline=pipeline, context=context, provider=provider,
                         sources=sources, max_searches=limit)
    return cast(Generation, loop)  # same interface: iterate for events, aclose() to end


@dataclass
class _Search:
    """A web_search call the model made in the current round."""

    call_id: str
    arguments: list[str] = field(default_factory=list)

    @property
    def query(self) -> str:
        import json

        try:
            value: Any = json.loads("".join(self.arguments) or "{}")
        except ValueError:
            return "".join(self.arguments)
        return str(value.get("query", "")) if isinstance(value, dict) else str(value)


def _add(a: Usage, b: Usage) -> Usage:
    return Usage(a.input_tokens + b.input_tokens, a.output_tokens + b.output_tokens,
                 a.cached_tokens + b.cached_tokens, a.reasoning_tokens + b.reasoning_tokens,
                 a.tool_output_tokens + b.tool_output_tokens)


def format_results(query: str, results: Sequence[SearchSource], first_number: int) -> str:
    """The tool message the model reads: numbered results with title, URL and snippet."""
    if not results:
        return f'No results found for "{query}".'
    lines = [f'Search results for "{query}":']
    for number, result in enumerate(results, start=first_number):
        lines += ["", f"[{number}] {result.title}", f"URL: {result.url}"]
        if result.snippet:
            lines.append(result.snippet)
    lines += ["", "Answer using these results and cite them by URL."]
    return "\n".join(lines)


def citations(text: str, results: Sequence[SearchSource]) -> list[Citation]:
    """url_citation spans for result URLs quoted in ``text`` and ``[n]`` markers, in text order."""
    found: list[Citation] = []
    for result in results:
        url = result.url.rstrip("/")
        for match in re.finditer(re.escape(url) + "/?", text):
            found.append(Citation(result.url, result.title, match.start(), match.end()))
    for match in _MARKER.finditer(text):
        number = int(match.group(1))
        if 1 <= number <= len(results):
            result = results[number - 1]
            found.append(Citation(result.url, result.title, match.start(), match.end()))
    found.sort(key=lambda c: (c.start_index, c.end_index))
    return found


def sources_line(text: str, results: Sequence[SearchSource]) -> tuple[str, list[Citation]]:
    """The ``Sources:`` text appended to ``text`` and the citations of its links."""
    addition = "\n\nSources: " if text.strip() else "Sources: "
    spans: list[Citation] = []
    for position, result in enumerate(results[:SOURCES_LISTED]):
        if position:
            addition += ", "
        link = f"[{result.title}]({result.url})"
        start = len(text) + len(addition)
        addition += link
        spans.append(Citation(result.url, result.title, start, start + len(link)))
    return addition, spans


class WebSearchLoop:
    """Generation rounds with web searches between them, as one stream of core events."""

    def __init__(self, first: Generation, request: GenerationRequest, *, pipeline: Pipeline,
                 context: RequestContext, provider: SearchProvider, sources: bool = False,
                 max_searches: int = MAX_SEARCHES, results_per_search: int = RESULTS_PER_SEARCH) -> None:
        self.pipeline = pipeline
        self.context = context
        self.provider = provider
        self.sources = sources
        self.max_searches = max_searches
        self.results_per_search = results_per_search
        self._request = request
        self._current = first
        self.deployment = first.deployment
        self.stats = first.stats

    @property
    def model(self) -> str:
        """The id of the model that serves the turn."""
        return self._current.model

    async def aclose(self, status: str | None = None) -> None:
        """End the round in progress (and so the loop)."""
        await self._current.aclose(status)

    async def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        request = self._request
        messages = list(request.messages)
        results: list[SearchSource] = []
        usage = Usage()
        searches = 0
        offset = 0  # client call indices continue across rounds
        while True:
            searches_now: dict[int, _Search] = {}
            client_calls: set[int] = set()
            text: list[str] = []
            finish: Finish | None = None
            async for event in self._current:
                if isinstance(event, ToolCallDelta):
                    if event.index in searches_now or (event.index not in client_calls
                                                       and event.name == WEB_SEARCH.name):
                        search = searches_now.setdefault(event.index, _Search(event.id or new_id("call_")))
                        search.arguments.append(event.arguments)
                        continue
                    client_calls.add(event.index)
                    yield replace(event, index=event.index + offset)
                elif isinstance(event, Finish):
                    finish = event
                else:
                    if isinstance(event, TextDelta):
                        text.append(event.text)
                    yield event
            await self._current.aclose()
            if finish is None:
                return
            usage = _add(usage, finish.usage)
            if not searches_now or client_calls or finish.reason == "length":
                if results and not client_calls:
                    for event in self._cite("".join(text), results):
                        yield event
                reason = finish.reason if (client_calls or finish.reason != "tool_calls") else "stop"
                yield Finish(reason, usage)
                return
            offset += len(client_calls)
            turn_calls: list[ToolCall] = []
            replies: list[Message] = []
            for search in searches_now.values():
                searches += 1
                found: list[SearchSource] = []
                async for event in self._search(search, found):
                    yield event
                fresh = [r for r in found if r.url not in {x.url for x in results}]
                replies.append(Message("tool", format_results(search.query, fresh or found,
                                                              len(results) + 1 if fresh else 1),
                                       tool_call_id=search.call_id))
                results += fresh
                turn_calls.append(ToolCall(search.call_id, WEB_SEARCH.name, "".join(search.arguments) or "{}"))
            messages += [Message("assistant", "", tool_calls=tuple(turn_calls)), *replies]
            request = self._next_request(request, messages, searches)
            self._current = await self.pipeline.start(request, self.context)

    async def _search(self, search: _Search, found: list[SearchSource]) -> AsyncIterator[GenerationEvent]:
        ws_id = new_id("ws_")
        query = search.query
        yield ServerToolCall(ws_id, "web_search", "in_progress", query)
        yield ServerToolCall(ws_id, "web_search", "searching", query)
        try:
            found += await self.provider.search(query, self.results_per_search)
        except SearchError:
            yield ServerToolCall(ws_id, "web_search", "failed", query)
            return
        yield ServerToolCall(ws_id, "web_search", "completed", query, tuple(found) if self.sources else ())

    def _next_request(self, request: GenerationRequest, messages: list[Message], searches: int) -> GenerationRequest:
        tools = request.tools
        if searches >= self.max_searches:
            tools = tuple(t for t in tools if t.name != WEB_SEARCH.name)
        choice = request.tool_choice
        if choice == "required" or isinstance(choice, NamedTool):
            choice = "auto"  # forced for the first round only
        return replace(request, messages=tuple(messages), tools=tools, tool_choice=choice)

    def _cite(self, text: str, results: Sequence[SearchSource]) -> list[GenerationEvent]:
        found = citations(text, results)
        if found:
            return list(found)
        addition, spans = sources_line(text, results)
        return [TextDelta(addition), *spans]
