"""The shared parser contract: the same output split at every boundary parses to the same result.

Every registered parser is fed each of its sample outputs whole, split in two at
every position, split in three at every pair of positions (short samples), and
one character at a time; the merged events must be identical every time, and
equal to the expected result.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shoal.core.types import ToolCallDelta, ToolSpec
from shoal.parsers import PARSERS, build, merge
from shoal.parsers.base import Merged, MergedCall, Parsed, counter_ids

TOOLS = (ToolSpec("get_weather", parameters={"type": "object", "properties": {"city": {"type": "string"}}}),
         ToolSpec("get_time"), ToolSpec("web_search"))
WEATHER = '{"city":"Paris"}'


def call(index: int, name: str, arguments: str) -> tuple[int, MergedCall]:
    return index, MergedCall(f"call_{index}", name, arguments)


def expect(*runs: tuple[str, str], calls: tuple[tuple[int, MergedCall], ...] = ()) -> Merged:
    return Merged(runs=list(runs), calls=dict(calls))


# (parser chain, sample output, expected merged result)
CASES: dict[str, tuple[list[str], str, Merged]] = {
    "think: block then answer": (
        ["think"], "<think>\nLet me see: 2+2.\n</think>\n\nIt is 4.",
        expect(("reasoning", "Let me see: 2+2."), ("text", "It is 4."))),
    "think: no block": (["think"], "  Plain <think> answer.", expect(("text", "  Plain <think> answer."))),
    "think: almost a tag": (["think"], "<thin>k", expect(("text", "<thin>k"))),
    "think: unclosed (cut off)": (["think"], "<think> still going  ", expect(("reasoning", "still going"))),
    "think: empty block": (["think"], "<think></think>Hi", expect(("text", "Hi"))),
    "think_open: prompt opened the block": (
        ["think_open"], "reasoning here</think>answer", expect(("reasoning", "reasoning here"), ("text", "answer"))),
    "hermes: text then a call": (
        ["hermes"], 'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
        expect(("text", "Let me check.\n"), ("call", "0"), calls=(call(0, "get_weather", WEATHER),))),
    "hermes: two calls": (
        ["hermes"], ('<tool_call>{"name":"get_weather","arguments":{"city":"Paris"}}</tool_call>\n'
                     '<tool_call>{"name":"get_time","arguments":"{}"}</tool_call>'),
        expect(("call", "0"), ("text", "\n"), ("call", "1"),
               calls=(call(0, "get_weather", WEATHER), call(1, "get_time", "{}")))),
    "hermes: unknown tool stays text": (
        ["hermes"], '<tool_call>{"name":"nope","arguments":{}}</tool_call>',
        expect(("text", '<tool_call>{"name":"nope","arguments":{}}</tool_call>'))),
    "hermes: broken json stays text": (
        ["hermes"], "a <tool_call>{oops</tool_call> b", expect(("text", "a <tool_call>{oops</tool_call> b"))),
    "hermes: < that is not a tag": (["hermes"], "x < y <tool", expect(("text", "x < y <tool"))),
    "json: fenced call": (
        ["json"], '```json\n{\n  "name": "get_weather",\n  "arguments": {\n    "city": "Paris"\n  }\n}\n```',
        expect(("call", "0"), calls=(call(0, "get_weather", WEATHER),))),
    "json: bare calls, one per line": (
        ["json"], '{"name": "get_weather", "arguments": {"city": "Paris"}}\n{"name": "get_time", "arguments": {}}\n',
        expect(("call", "0"), ("call", "1"), calls=(call(0, "get_weather", WEATHER), call(1, "get_time", "{}")))),
    "json: call missing its last brace (small models stop early)": (
        ["json"], '{"name": "web_search", "arguments": {"query": "shoal of fish"}',
        expect(("call", "0"), calls=(call(0, "web_search", '{"query":"shoal of fish"}'),))),
    "json: call cut off before its arguments stays text": (
        ["json"], '{"name": "get_time"', expect(("text", '{"name": "get_time"'))),
    "json: array of calls in a fence": (
        ["json"], '```\n[{"name": "get_time", "parameters": {}}]\n```',
        expect(("call", "0"), calls=(call(0, "get_time", "{}"),))),
    "json: call mentioned in passing stays text": (
        ["json"], 'You could call it like this: {"name": "get_weather", "arguments": {"city": "Paris"}}',
        expect(("text", 'You could call it like this: {"name": "get_weather", "arguments": {"city": "Paris"}}'))),
    "json: call followed by prose stays text": (
        ["json"], '```json\n{"name": "get_time", "arguments": {}}\n```\nThis returns the time.',
        expect(("text", '```json\n{"name": "get_time", "arguments": {}}\n```\nThis returns the time.'))),
    "json: data with a name key stays text": (
        ["json"], '{"name": "Qwen", "age": 1}', expect(("text", '{"name": "Qwen", "age": 1}'))),
    "json: python code block stays text": (
        ["json"], "```python\nprint(1)\n```", expect(("text", "```python\nprint(1)\n```"))),
    "constrained: one call": (
        ["constrained"], '{\n  "name": "get_weather",\n  "arguments": {\n    "city": "Pa\\"ris"\n  }\n}',
        expect(("call", "0"), calls=(call(0, "get_weather", '{"city":"Pa\\"ris"}'),))),
    "constrained: array of calls": (
        ["constrained"], ('[{"name": "get_weather", "arguments": {"city": "Paris, FR", "days": [1, 2]}},'
                          ' {"name": "get_time", "arguments": {}}]'),
        expect(("call", "0"), ("call", "1"),
               calls=(call(0, "get_weather", '{"city":"Paris, FR","days":[1,2]}'), call(1, "get_time", "{}")))),
    "constrained: arguments before the name": (
        ["constrained"], '{"arguments": {"a": 1}, "name": "get_time"}',
        expect(("call", "0"), calls=(call(0, "get_time", '{"a":1}'),))),
    "harmony: analysis, call": (
        ["harmony"], ("<|channel|>analysis<|message|>Need the weather.<|end|><|start|>assistant<|channel|>commentary "
                      'to=functions.get_weather <|constrain|>json<|message|>{"city":"Paris"}<|call|>'),
        expect(("reasoning", "Need the weather."), ("call", "0"), calls=(call(0, "get_weather", WEATHER),))),
    "harmony: analysis, final": (
        ["harmony"], ("<|channel|>analysis<|message|>Easy.<|end|><|start|>assistant<|channel|>final<|message|>"
                      "Paris.<|return|>"),
        expect(("reasoning", "Easy."), ("text", "Paris."))),
    "harmony: plain text": (["harmony"], "no channels <| here", expect(("text", "no channels <| here"))),
    "auto chain: think, then fenced call": (
        ["think", "hermes", "json"], '<think>call it</think>\n```json\n{"name": "get_time", "arguments": {}}\n```',
        expect(("reasoning", "call it"), ("call", "0"), calls=(call(0, "get_time", "{}"),))),
    "auto chain: plain answer": (
        ["think", "hermes", "json"], "The weather is nice.", expect(("text", "The weather is nice."))),
}


def splits(text: str) -> Iterator[list[str]]:
    """The text whole, in two at every position, in three (short texts), and char by char."""
    yield [text]
    for i in range(1, len(text)):
        yield [text[:i], text[i:]]
    if len(text) <= 90:
        for i in range(1, len(text)):
            for j in range(i + 1, len(text)):
                yield [text[:i], text[i:j], text[j:]]
    yield list(text)


def parse(names: list[str], pieces: list[str]) -> list[Parsed]:
    parser = build(names, TOOLS, counter_ids())
    events: list[Parsed] = []
    for piece in pieces:
        events += parser.feed(piece)
    return events + parser.finish()


@pytest.mark.parametrize("case", list(CASES))
def test_same_result_at_every_split(case: str) -> None:
    names, text, expected = CASES[case]
    whole = merge(parse(names, [text]))
    assert whole == expected
    for pieces in splits(text):
        assert merge(parse(names, pieces)) == whole, pieces


def test_every_registered_parser_has_cases() -> None:
    covered = {name for names, _, _ in CASES.values() for name in names}
    assert covered == set(PARSERS)


@pytest.mark.parametrize("names", [["hermes"], ["json"], ["constrained"], ["harmony"]])
def test_no_parallel_calls_means_at_most_one(names: list[str]) -> None:
    text = {
        "hermes": '<tool_call>{"name":"get_time","arguments":{}}</tool_call><tool_call>{"name":"get_time",'
                  '"arguments":{}}</tool_call>',
        "json": '{"name":"get_time","arguments":{}}\n{"name":"get_time","arguments":{}}',
        "constrained": '[{"name":"get_time","arguments":{}},{"name":"get_time","arguments":{}}]',
        "harmony": "<|channel|>commentary to=functions.get_time<|message|>{}<|call|>"
                   "<|start|>assistant<|channel|>commentary to=functions.get_time<|message|>{}<|call|>",
    }[names[0]]
    for pieces in ([text], list(text)):
        parser = build(names, TOOLS, counter_ids(), parallel=False)
        events = [e for piece in pieces for e in parser.feed(piece)] + parser.finish()
        assert list(merge(events).calls) == [0]


def test_constrained_streams_name_first_then_argument_fragments() -> None:
    parser = build(["constrained"], TOOLS, counter_ids())
    text = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
    events = [e for ch in text for e in parser.feed(ch)] + parser.finish()
    first, *rest = events
    assert isinstance(first, ToolCallDelta)
    assert (first.index, first.id, first.name, first.arguments) == (0, "call_0", "get_weather", "")
    assert len(rest) > 5 and all(e.id is None and e.name is None for e in rest)  # type: ignore[union-attr]


@pytest.mark.parametrize(("text", "closers"), [
    ('{"a": {"b": 1}', "}"), ('[{"a": [1, 2]', "}]"), ('{"a": "x}"', "}"), ('{"a": 1}', None),
    ('{"a": ', None), ('{"a": 1,', None), ('{"a": "open', None), ('{"a": 1]', None),
])
def test_missing_closers(text: str, closers: str | None) -> None:
    from shoal.parsers.json_calls import missing_closers

    assert missing_closers(text) == closers
