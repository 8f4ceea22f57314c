"""An OpenAI-compatible upstream: vLLM, SGLang, llama-server, Ollama, OpenAI, DigitalOcean.

Every request goes out as a streamed chat completion (``stream_options.include_usage``)
and comes back through the same chunk translator the local engine uses, so
tools, reasoning (``reasoning_content`` or ``reasoning`` deltas), logprobs and
cached tokens (``usage.prompt_tokens_details.cached_tokens``) arrive as the
same core events. An upstream that only speaks chat completions therefore
serves the whole Responses API too.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import orjson

from shoal.backends.openai_wire.body import message_dict, sampling_fields, tool_fields
from shoal.backends.openai_wire.chunks import ChunkTranslator, plain_answer
from shoal.core.backend import BackendFailure, BaseBackend, ModelCard
from shoal.backends.upstream import UpstreamConfig, UpstreamHTTP, dropped
from shoal.core.types import (
    Finish,
    GenerationEvent,
    GenerationRequest,
    Usage,
)


def chat_body(request: GenerationRequest, model: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``/chat/completions`` body of ``request`` for the upstream's ``model``, streamed as the caller is.

    A caller that does not stream gets the upstream's whole answer, parsed once.
    """
    body: dict[str, Any] = {
        "model": model,
        "messages": [message_dict(m, null_content_with_calls=True) for m in request.messages],
        "stream": request.stream,
    }
    if request.stream:
        body["stream_options"] = {"include_usage": True}
    for name, value in (("user", request.user), ("reasoning_effort", request.reasoning_effort)):
        if value is not None:
            body[name] = value
    body.update(sampling_fields(request))
    body.update(tool_fields(request.tools, request.tool_choice, request.parallel_tool_calls))
    if extra:
        body.update(extra)
    return body


def normalize_chunk(chunk: dict[str, Any]) -> dict[str, Any]:
    """Map the ``reasoning`` delta field (vLLM ≥0.9, Ollama, OpenRouter) to ``reasoning_content``."""
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta")
        if isinstance(delta, dict) and delta.get("reasoning") and not delta.get("reasoning_content"):
            delta["reasoning_content"] = delta.pop("reasoning")
    return chunk


def reported_reasoning_tokens(chunk: dict[str, Any]) -> int | None:
    """``usage.completion_tokens_details.reasoning_tokens`` when the upstream counts them."""
    usage = chunk.get("usage") or {}
    details = usage.get("completion_tokens_details") or {}
    value = details.get("reasoning_tokens")
    return int(value) if isinstance(value, (int, float)) else None


def as_chunk(answer: dict[str, Any]) -> dict[str, Any]:
    """A non-streamed completion as one chunk: each choice's ``message`` becomes its ``delta``."""
    choices = []
    for choice in answer.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        delta = dict(choice.get("message") or {})
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            delta["tool_calls"] = [{**call, "index": i} for i, call in enumerate(calls) if isinstance(call, dict)]
        choices.append({"index": choice.get("index", 0), "delta": delta,
                        "finish_reason": choice.get("finish_reason"), "logprobs": choice.get("logprobs")})
    return {**answer, "choices": choices}


def estimated_reasoning_tokens(chunk: dict[str, Any]) -> int | None:
    """A whole answer's reasoning tokens when the upstream does not count them: its share of the output text."""
    usage = chunk.get("usage") or {}
    output = usage.get("completion_tokens")
    reasoning = answer_text = 0
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        reasoning += len(delta.get("reasoning_content") or delta.get("reasoning") or "")
        answer_text += len(delta.get("content") or "")
        for call in delta.get("tool_calls") or ():
            answer_text += len(str((call.get("function") or {}).get("arguments") or ""))
    if not reasoning or not isinstance(output, int):
        return None
    return max(1, round(output * reasoning / (reasoning + answer_text)))


def translation_view(request: GenerationRequest) -> GenerationRequest:
    """The request as the chunk translator should parse the upstream's content.

    Upstreams that parse calls send ``delta.tool_calls``; those that do not (a
    model writing its call as JSON or ``<tool_call>`` text, as small models behind
    llama-server do) get the same lenient parsing as the local engine. The choice
    was enforced upstream, so content is always parsed as under ``auto``.
    """
    if not request.tools:
        return request  # nothing to parse calls for, whatever tool_choice says
    if request.tool_choice != "none":
        return replace(request, tool_choice="auto")
    return replace(request, tools=(), tool_choice="none")


class OpenAICompatBackend(BaseBackend):
    """Serves one catalog model from an OpenAI-compatible ``/chat/completions`` upstream.

    A subclass speaking another endpoint of the same upstream sets ``path`` and
    overrides :meth:`body`, :meth:`_answer` and :meth:`_chunks` to produce chat chunks; the rest
    (translation, reasoning counts, errors) is shared.
    """

    path = "chat/completions"

    def __init__(self, name: str, card: ModelCard, config: UpstreamConfig, capacity: int = 64) -> None:
        self.name = name
        self.capacity = capacity
        self.card = card
        self.config = config
        self.http = UpstreamHTTP.bearer(config, name)

    def __repr__(self) -> str:
        return f"OpenAICompatBackend({self.name!r}, {self.config.base_url!r})"

    def models(self) -> list[ModelCard]:
        """The catalog model this deployment serves."""
        return [self.card]

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        """The upstream's answer (streamed or whole, as ``chat_body`` asked) as core events.

        :class:`BackendFailure` on any failure.
        """
        whole = not request.stream
        body = self.body(request)
        reasoning_tokens: int | None = None
        async with self.http.post(self.path, body, whole=whole) as response:
            # The raw header, not aiohttp's parsed ``content_type``: parsing it cost more than the test.
            if whole and not response.headers.get("Content-Type", "").startswith("text/event-stream"):
                # One piece, read before anything is yielded: the connection goes back to the
                # pool at once, and no stream framing (a generator per request) is needed.
                answer = normalize_chunk(self._checked(await self._answer(response)))
                reasoning_tokens = reported_reasoning_tokens(answer) or estimated_reasoning_tokens(answer)
                events = plain_answer(answer, request)
                if events is None:
                    translator = ChunkTranslator(translation_view(request))
                    events = [*translator.feed(answer), *translator.close()]
            else:
                translator = ChunkTranslator(translation_view(request))
                done = False
                async for chunk in self._chunks(response):
                    if chunk is None:
                        done = True
                        break
                    self._checked(chunk)
                    reasoning_tokens = reported_reasoning_tokens(chunk) or reasoning_tokens
                    if whole and reasoning_tokens is None:
                        reasoning_tokens = estimated_reasoning_tokens(chunk)
                    for event in translator.feed(normalize_chunk(chunk)):
                        yield event
                if not done and translator.finish_reason is None:
                    raise dropped(self.http.who)
                events = translator.close()
        for event in events:
            if isinstance(event, Finish) and reasoning_tokens is not None:
                u = event.usage
                event = Finish(event.reason, Usage(u.input_tokens, u.output_tokens, u.cached_tokens,
                                                   min(reasoning_tokens, u.output_tokens) or reasoning_tokens,
                                                   u.tool_output_tokens))
            yield event

    def _checked(self, chunk: dict[str, Any]) -> dict[str, Any]:
        """``chunk``, unless it is an error the upstream sent in place of an answer."""
        if "error" in chunk and not chunk.get("choices"):
            err = chunk["error"]
            message = err.get("message") if isinstance(err, dict) else str(err)
            raise BackendFailure(f"{self.http.who} failed while streaming: {message}", code="upstream_error")
        return chunk

    def body(self, request: GenerationRequest) -> dict[str, Any]:
        """What to POST to :attr:`path` for ``request``."""
        return chat_body(request, self.config.model, self.config.extra_body)

    async def _answer(self, response: Any) -> dict[str, Any]:
        """A whole (non-streamed) answer as one chat chunk."""
        answer = await self.http.json_body(response)
        if not isinstance(answer, dict):
            raise dropped(self.http.who, "malformed answer")
        return as_chunk(answer)

    async def _chunks(self, response: Any) -> AsyncIterator[dict[str, Any] | None]:
        """A streamed answer as chunk dicts, then None at ``[DONE]``."""
        async for _, data in self.http.sse(response):
            if data.strip() == "[DONE]":
                yield None
                return
            try:
                chunk = orjson.loads(data)
            except ValueError as exc:
                raise dropped(self.http.who, "malformed chunk") from exc
            if isinstance(chunk, dict):
                yield chunk

    async def health(self) -> dict[str, Any]:
        """``ok`` when the upstream lists its models."""
        started = time.perf_counter()
        try:
            await self.http.get_json("models")
        except BackendFailure as exc:
            return {"status": "error", "error": exc.message}
        return {"status": "ok", "latency_ms": round((time.perf_counter() - started) * 1000, 1)}

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.http.aclose()
