"""Chat chunk translation: recorded llama.cpp (and upstream) chunks in, core events out."""

from __future__ import annotations

from shoal.backends.openai_wire.chunks import ChunkTranslator, plain_answer
from shoal.core.types import (
    Finish,
    GenerationRequest,
    Message,
    ReasoningDelta,
    TextDelta,
    TokenLogprob,
    ToolCallDelta,
    ToolSpec,
    Usage,
)

WEATHER = ToolSpec("get_weather", "Weather of a city",
                   {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
TIME = ToolSpec("get_time")


def req(**kw) -> GenerationRequest:  # type: ignore[no-untyped-def]
    kw.setdefault("messages", (Message("user", "hi"),))
    return GenerationRequest(model="m", **kw)


def chunk(delta: dict, finish=None, logprobs=None) -> dict:  # type: ignore[no-untyped-def]
    return {"choices": [{"finish_reason": finish, "index": 0, "delta": delta, "logprobs": logprobs}],
            "created": 1700000000, "id": "chatcmpl-x", "model": "m", "object": "chat.completion.chunk"}


USAGE_CHUNK = {"choices": [], "created": 1700000000, "id": "chatcmpl-x", "model": "m",
               "object": "chat.completion.chunk",
               "usage": {"completion_tokens": 8, "prompt_tokens": 31, "total_tokens": 39,
                         "prompt_tokens_details": {"cached_tokens": 24}},
               "timings": {"prompt_n": 7, "predicted_n": 8}}


def lp_entry(token: str, logprob: float) -> dict:  # type: ignore[type-arg]
    b = list(token.encode())
    return {"id": 9906, "token": token, "bytes": b, "logprob": logprob,
            "top_logprobs": [{"id": 9906, "token": token, "bytes": b, "logprob": logprob},
                             {"id": 13347, "token": "Hi", "bytes": [72, 105], "logprob": -2.25}]}


def run(*chunks: dict, request: GenerationRequest | None = None) -> tuple[list, Finish]:  # type: ignore[type-arg]
    t = ChunkTranslator(request)
    events = [ev for c in chunks for ev in t.feed(c)]
    *rest, finish = t.close()
    return events + rest, finish


def test_content_with_logprobs_then_length_and_usage() -> None:
    events, finish = run(
        chunk({"role": "assistant", "content": None}),
        chunk({"content": "Hello"}, logprobs={"content": [lp_entry("Hello", -0.5)]}),
        chunk({"content": " world"}, logprobs={"content": [lp_entry(" world", -0.25)]}),
        chunk({}, finish="length"),
        USAGE_CHUNK,
    )
    assert events == [
        TextDelta("Hello", (TokenLogprob("Hello", -0.5, tuple(b"Hello"),
                                         (("Hello", -0.5, tuple(b"Hello")), ("Hi", -2.25, (72, 105)))),)),
        TextDelta(" world", (TokenLogprob(" world", -0.25, tuple(b" world"),
                                          ((" world", -0.25, tuple(b" world")), ("Hi", -2.25, (72, 105)))),)),
    ]
    assert finish == Finish("length", Usage(input_tokens=31, output_tokens=8, cached_tokens=24))


def test_role_only_and_empty_chunks_make_no_events() -> None:
    t = ChunkTranslator()
    assert t.feed(chunk({"role": "assistant", "content": None})) == []
    assert t.feed(chunk({"content": ""})) == []
    assert t.feed({"choices": []}) == []


def test_no_finish_chunk_means_stop() -> None:
    _, finish = run(chunk({"content": "x"}))
    assert finish.reason == "stop"
    assert finish.usage == Usage()


def test_reasoning_then_content_counts_reasoning_tokens() -> None:
    events, finish = run(
        chunk({"reasoning_content": "Let me"}),
        chunk({"reasoning_content": " think"}),
        chunk({"content": "42"}),
        chunk({}, finish="stop"),
        USAGE_CHUNK,
    )
    assert events == [ReasoningDelta("Let me"), ReasoningDelta(" think"), TextDelta("42")]
    assert finish.reason == "stop"
    assert finish.usage.reasoning_tokens == 2


def test_reasoning_tokens_never_exceed_output_tokens() -> None:
    usage = {**USAGE_CHUNK, "usage": {"completion_tokens": 1, "prompt_tokens": 3, "total_tokens": 4}}
    _, finish = run(chunk({"reasoning_content": "a"}), chunk({"reasoning_content": "b"}), usage)
    assert finish.usage.reasoning_tokens == 1


def test_tool_call_deltas_and_finish_becomes_tool_calls() -> None:
    events, finish = run(
        chunk({"tool_calls": [{"index": 0, "id": "call_abc", "type": "function",
                               "function": {"name": "get_weather", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "call_def", "type": "function",
                               "function": {"name": "get_time", "arguments": "{}"}}]}),
        chunk({}, finish="stop"),
        USAGE_CHUNK,
    )
    assert events == [
        ToolCallDelta(0, id="call_abc", name="get_weather", arguments=""),
        ToolCallDelta(0, arguments='{"city":'),
        ToolCallDelta(0, arguments='"Paris"}'),
        ToolCallDelta(1, id="call_def", name="get_time", arguments="{}"),
    ]
    assert finish.reason == "tool_calls"


def test_tool_calls_keep_length_finish() -> None:
    _, finish = run(chunk({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": "{"}}]}),
                    chunk({}, finish="length"))
    assert finish.reason == "length"


def test_engine_tool_calls_finish_is_kept() -> None:
    _, finish = run(chunk({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f"}}]}),
                    chunk({}, finish="tool_calls"))
    assert finish.reason == "tool_calls"


def test_usage_without_details() -> None:
    _, finish = run({"choices": [], "usage": {"completion_tokens": 2, "prompt_tokens": 5, "total_tokens": 7}})
    assert finish.usage == Usage(input_tokens=5, output_tokens=2)


def test_usage_on_the_finish_chunk() -> None:
    final = chunk({}, finish="stop")
    final["usage"] = {"completion_tokens": 2, "prompt_tokens": 5, "total_tokens": 7,
                      "prompt_tokens_details": {"cached_tokens": None}}
    _, finish = run(chunk({"content": "a"}), final)
    assert finish == Finish("stop", Usage(5, 2))


# -- content parsing: think tags, lenient and constrained calls -------------------------

def content_chunks(*pieces: str, finish: str = "stop") -> list[dict]:  # type: ignore[type-arg]
    return [chunk({"role": "assistant", "content": None}), *(chunk({"content": p}) for p in pieces),
            chunk({}, finish=finish), USAGE_CHUNK]


def test_think_tags_in_content_become_reasoning_and_count() -> None:
    events, finish = run(*content_chunks("<think>", "\n", "Two", " and two", ".\n", "</think>", "\n\n", "4"))
    assert events == [ReasoningDelta("Two"), ReasoningDelta(" and two"), ReasoningDelta("."), TextDelta("4")]
    assert finish.reason == "stop" and finish.usage.reasoning_tokens == 6


def test_plain_content_streams_at_once_with_its_logprobs() -> None:
    t = ChunkTranslator(req(tools=(WEATHER,)))
    lp = {"content": [lp_entry("Hello", -0.5)]}
    assert t.feed(chunk({"content": "Hello"}, logprobs=lp)) == [
        TextDelta("Hello", (TokenLogprob("Hello", -0.5, tuple(b"Hello"),
                                         (("Hello", -0.5, tuple(b"Hello")), ("Hi", -2.25, (72, 105)))),))]


def test_auto_fenced_json_call_becomes_a_tool_call() -> None:
    pieces = ["```", "json", "\n{\n", '  "name": "get', '_weather",\n', '  "arguments": {"city": "Paris"}\n}', "\n```"]
    events, finish = run(*content_chunks(*pieces), request=req(tools=(WEATHER, TIME)))
    assert [type(e) for e in events] == [ToolCallDelta, ToolCallDelta]
    assert (events[0].index, events[0].name) == (0, "get_weather") and events[0].id.startswith("call_")
    assert events[1] == ToolCallDelta(0, arguments='{"city":"Paris"}')
    assert finish.reason == "tool_calls"


def test_auto_prose_is_text() -> None:
    events, finish = run(*content_chunks("It is ", "sunny."), request=req(tools=(WEATHER,)))
    assert events == [TextDelta("It is "), TextDelta("sunny.")] and finish.reason == "stop"


def test_constrained_output_streams_as_tool_call_fragments() -> None:
    pieces = ['[{"', 'name', '":', ' "get', '_weather', '",', ' "arguments":', ' {"', 'city', '":', ' "Paris', '"}}]']
    events, finish = run(*content_chunks(*pieces), request=req(tools=(WEATHER, TIME), tool_choice="required"))
    assert events[0].name == "get_weather" and events[0].index == 0
    assert all(e.name is None for e in events[1:]) and len(events) > 3
    assert "".join(e.arguments for e in events) == '{"city":"Paris"}'
    assert finish.reason == "tool_calls"


def test_native_and_parsed_calls_do_not_share_indices() -> None:
    events, _ = run(chunk({"tool_calls": [{"index": 0, "id": "call_x", "function": {"name": "get_time"}}]}),
                    chunk({"content": '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>'}),
                    request=req(tools=(WEATHER, TIME)))
    assert [e.index for e in events] == [0, 1, 1]


# -- plain_answer: the translator's result for whole answers that need no parsing -----------------

USAGE = {"prompt_tokens": 31, "completion_tokens": 8, "prompt_tokens_details": {"cached_tokens": 24}}
PLAIN_ANSWERS = [
    {**chunk({"role": "assistant", "content": "Hello there."}, "stop"), "usage": USAGE},
    {**chunk({"content": "Hi", "reasoning_content": "The user greets me."}, "length"), "usage": USAGE},
    {**chunk({"content": "Hi"}, None, {"content": [lp_entry("Hi", -0.25)]}), "usage": {"prompt_tokens": 3}},
    chunk({"content": "  indented answer"}, "stop"),
    chunk({"content": None, "reasoning_content": "only thinking"}, "length"),
    chunk({"content": ""}, "content_filter"),
    {**chunk({"content": "x"}, "stop"), "usage": {"prompt_tokens": 2, "completion_tokens": 0}},
]
NEEDS_PARSING = [
    chunk({"content": "<think>why</think>Hi"}, "stop"),
    chunk({"content": "  <think>why</think>Hi"}, "stop"),
    chunk({"content": "   "}, "stop"),
    chunk({"content": None, "tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{}"}}]},
          "tool_calls"),
    {"choices": [chunk({"content": "a"})["choices"][0], {**chunk({"content": "b"})["choices"][0], "index": 1}]},
]


def test_plain_answers_give_what_the_translator_gives() -> None:
    for answer in PLAIN_ANSWERS:
        translator = ChunkTranslator(req())
        expected = [*translator.feed(answer), *translator.close()]
        assert plain_answer(answer, req()) == expected, answer


def test_answers_that_need_parsing_or_tools_go_to_the_translator() -> None:
    for answer in NEEDS_PARSING:
        assert plain_answer(answer, req()) is None, answer
    assert plain_answer(PLAIN_ANSWERS[0], req(tools=(WEATHER,))) is None
