"""Folding an event stream into a complete result."""

from __future__ import annotations

from shoal.core.accumulate import Accumulator
from shoal.core.types import Finish, ReasoningDelta, TextDelta, TokenLogprob, ToolCall, ToolCallDelta, Usage


def fold(*events) -> Accumulator:  # type: ignore[no-untyped-def]
    acc = Accumulator()
    for ev in events:
        acc.add(ev)
    return acc


def test_empty() -> None:
    acc = Accumulator()
    assert acc.text == "" and acc.reasoning == "" and acc.tool_calls == []
    assert acc.finish_reason is None and acc.usage == Usage()


def test_text_reasoning_logprobs_finish() -> None:
    lp1 = TokenLogprob("He", -0.1, (72, 101))
    lp2 = TokenLogprob("llo", -0.2, (108, 108, 111), top=(("llo", -0.2, (108, 108, 111)),))
    acc = fold(ReasoningDelta("think "), ReasoningDelta("hard"), TextDelta("He", (lp1,)), TextDelta("llo", (lp2,)),
               Finish("length", Usage(3, 4, reasoning_tokens=2)))
    assert acc.reasoning == "think hard"
    assert acc.text == "Hello"
    assert acc.logprobs == [lp1, lp2]
    assert acc.finish_reason == "length"
    assert acc.usage == Usage(3, 4, reasoning_tokens=2)


def test_tool_calls_assembled_in_index_order_from_fragments() -> None:
    acc = fold(
        ToolCallDelta(1, id="call_b", name="b", arguments='{"y"'),
        ToolCallDelta(0, id="call_a", name="a"),
        ToolCallDelta(0, arguments='{"x": '),
        ToolCallDelta(1, arguments=": 2}"),
        ToolCallDelta(0, arguments="1}"),
        Finish("tool_calls", Usage()),
    )
    assert acc.tool_calls == [ToolCall("call_a", "a", '{"x": 1}'), ToolCall("call_b", "b", '{"y": 2}')]
    assert acc.finish_reason == "tool_calls"


def test_later_fragments_without_id_or_name_keep_them() -> None:
    acc = fold(ToolCallDelta(0, id="c", name="f", arguments="{"), ToolCallDelta(0, id=None, name=None, arguments="}"))
    assert acc.tool_calls == [ToolCall("c", "f", "{}")]
