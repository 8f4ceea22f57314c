"""Encoders of the chat front-end: a ``chat.completion`` body or ``chat.completion.chunk`` SSE."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from shoal import sse
from shoal.api.encoding import logprob_dicts, new_id
from shoal.core.accumulate import Accumulator
from shoal.core.types import Finish, GenerationEvent, ReasoningDelta, TextDelta, ToolCallDelta, Usage
from shoal.errors import ShoalError


def usage_dict(usage: Usage) -> dict[str, Any]:
    """Chat-style usage with cached and reasoning token details."""
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def message_dict(acc: Accumulator) -> dict[str, Any]:
    """The assistant message of a finished generation."""
    message: dict[str, Any] = {"role": "assistant", "content": acc.text, "refusal": None}
    if acc.reasoning:
        message["reasoning_content"] = acc.reasoning
    calls = acc.tool_calls
    if calls:
        message["content"] = acc.text or None
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in calls
        ]
    return message


async def completion_body(events: AsyncIterable[GenerationEvent], *, completion_id: str, created: int,
                          model: str, logprobs: bool) -> dict[str, Any]:
    """Run the generation to the end and build the ``chat.completion`` object."""
    acc = Accumulator()
    async for event in events:
        acc.add(event)
    choice: dict[str, Any] = {
        "index": 0,
        "message": message_dict(acc),
        "finish_reason": acc.finish_reason or "stop",
        "logprobs": {"content": logprob_dicts(acc.logprobs), "refusal": None} if logprobs else None,
    }
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [choice],
        "usage": usage_dict(acc.usage),
        "system_fingerprint": None,
    }


async def chunk_frames(events: AsyncIterable[GenerationEvent], *, completion_id: str, created: int, model: str,
                       include_usage: bool, logprobs: bool) -> AsyncIterator[bytes]:
    """SSE frames: role first, deltas, one ``finish_reason``, optional usage chunk, ``[DONE]``."""
    base: dict[str, Any] = {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                            "model": model, "system_fingerprint": None}
    if include_usage:
        base["usage"] = None

    def chunk(delta: dict[str, Any], finish: str | None = None, lp: Any = None) -> bytes:
        choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": lp}
        return sse.data_frame({**base, "choices": [choice]})

    yield chunk({"role": "assistant", "content": ""})
    named: set[int] = set()  # calls whose id and name went out already
    try:
        async for event in events:
            if isinstance(event, TextDelta):
                lp = {"content": logprob_dicts(event.logprobs), "refusal": None} if logprobs else None
                yield chunk({"content": event.text}, lp=lp)
            elif isinstance(event, ReasoningDelta):
                yield chunk({"reasoning_content": event.text})
            elif isinstance(event, ToolCallDelta):
                # index, id and name once, in the call's first delta; then argument fragments.
                call: dict[str, Any] = {"index": event.index}
                fn: dict[str, Any] = {}
                if event.index not in named:
                    named.add(event.index)
                    call.update(id=event.id or new_id("call_"), type="function")
                    fn["name"] = event.name or ""
                elif not event.arguments:
                    continue
                fn["arguments"] = event.arguments
                call["function"] = fn
                yield chunk({"tool_calls": [call]})
            elif isinstance(event, Finish):
                yield chunk({}, finish=event.reason)
                if include_usage:
                    yield sse.data_frame({**base, "choices": [], "usage": usage_dict(event.usage)})
    except ShoalError as exc:
        yield sse.data_frame({"error": exc.to_dict()})
    yield sse.DONE
