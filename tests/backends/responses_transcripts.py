"""Recorded ``/v1/responses`` answers of vLLM, OpenAI and llama-server, for replay on loopback.

The vLLM and OpenAI streams follow what those servers send (event names, ids,
item layout, usage); llama-server's is a raw recording of xllamacpp's server on
Qwen2.5-Coder-0.5B writing a tool call as text (it sends no ``output_index``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent / "transcripts"


def sse(*events: dict[str, Any]) -> bytes:
    """Named SSE events with sequence numbers, as OpenAI and vLLM frame them."""
    return b"".join(f"event: {e['type']}\ndata: {json.dumps({**e, 'sequence_number': i})}\n\n".encode()
                    for i, e in enumerate(events))


RESP = {"id": "resp_1", "object": "response", "created_at": 1, "model": "served-name", "status": "in_progress",
        "output": []}

VLLM_USAGE = {"input_tokens": 120, "input_tokens_details": {"cached_tokens": 96}, "output_tokens": 20,
              "output_tokens_details": {"reasoning_tokens": 6}, "total_tokens": 140}

CALL = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather", "arguments": "",
        "status": "in_progress"}

# vLLM with a reasoning parser and a tool parser: reasoning text, then a streamed function call.
VLLM_STREAM = sse(
    {"type": "response.created", "response": RESP},
    {"type": "response.in_progress", "response": RESP},
    {"type": "response.output_item.added", "output_index": 0,
     "item": {"type": "reasoning", "id": "rs_1", "summary": [], "content": [], "status": "in_progress"}},
    {"type": "response.reasoning_text.delta", "item_id": "rs_1", "output_index": 0, "content_index": 0,
     "delta": "The user wants"},
    {"type": "response.reasoning_text.delta", "item_id": "rs_1", "output_index": 0, "content_index": 0,
     "delta": " weather."},
    {"type": "response.reasoning_text.done", "item_id": "rs_1", "output_index": 0, "content_index": 0,
     "text": "The user wants weather."},
    {"type": "response.output_item.done", "output_index": 0,
     "item": {"type": "reasoning", "id": "rs_1", "summary": [],
              "content": [{"type": "reasoning_text", "text": "The user wants weather."}], "status": "completed"}},
    {"type": "response.output_item.added", "output_index": 1, "item": CALL},
    {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "output_index": 1, "delta": "{\"city\": "},
    {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "output_index": 1, "delta": "\"Paris\"}"},
    {"type": "response.function_call_arguments.done", "item_id": "fc_1", "output_index": 1,
     "arguments": "{\"city\": \"Paris\"}"},
    {"type": "response.output_item.done", "output_index": 1,
     "item": {**CALL, "arguments": "{\"city\": \"Paris\"}", "status": "completed"}},
    {"type": "response.completed", "response": {**RESP, "status": "completed", "usage": VLLM_USAGE}},
)

# vLLM's non-streamed answer: the same turn as one response object.
VLLM_WHOLE = {**RESP, "status": "completed", "usage": VLLM_USAGE, "output": [
    {"type": "reasoning", "id": "rs_1", "summary": [],
     "content": [{"type": "reasoning_text", "text": "The user wants weather."}]},
    {**CALL, "arguments": "{\"city\": \"Paris\"}", "status": "completed"},
]}

# OpenAI: a reasoning summary, text with logprobs, cut short by max_output_tokens.
OPENAI_STREAM = sse(
    {"type": "response.created", "response": RESP},
    {"type": "response.output_item.added", "output_index": 0,
     "item": {"type": "reasoning", "id": "rs_9", "summary": []}},
    {"type": "response.reasoning_summary_part.added", "item_id": "rs_9", "output_index": 0, "summary_index": 0,
     "part": {"type": "summary_text", "text": ""}},
    {"type": "response.reasoning_summary_text.delta", "item_id": "rs_9", "output_index": 0, "summary_index": 0,
     "delta": "Greeting."},
    {"type": "response.output_item.added", "output_index": 1,
     "item": {"type": "message", "id": "msg_9", "role": "assistant", "status": "in_progress", "content": []}},
    {"type": "response.output_text.delta", "item_id": "msg_9", "output_index": 1, "content_index": 0, "delta": "Hi",
     "logprobs": [{"token": "Hi", "logprob": -0.25, "bytes": [72, 105],
                   "top_logprobs": [{"token": "Hello", "logprob": -1.5, "bytes": [72, 101, 108, 108, 111]}]}]},
    {"type": "response.output_text.delta", "item_id": "msg_9", "output_index": 1, "content_index": 0,
     "delta": " there", "logprobs": [{"token": " there", "logprob": -0.5, "bytes": [], "top_logprobs": []}]},
    {"type": "response.incomplete", "response": {
        **RESP, "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"},
        "usage": {"input_tokens": 9, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 4,
                  "output_tokens_details": {"reasoning_tokens": 2}, "total_tokens": 13}}},
)

LLAMA_SERVER_TOOL_STREAM = (HERE / "llama_server_responses_tool.sse").read_bytes()

FAILED_STREAM = sse(
    {"type": "response.created", "response": RESP},
    {"type": "response.failed", "response": {**RESP, "status": "failed",
                                             "error": {"code": "server_error", "message": "engine died"}}},
)

CUT_STREAM = sse(
    {"type": "response.created", "response": RESP},
    {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0,
     "delta": "Hel"},
)
