"""The console's own JavaScript modules, loaded by the page under its CSP: request bodies of both APIs, stream
parsing (chat chunks and Responses events), the reasoning fold and the per-reply stats, the code snippets."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def test_request_building_and_stream_parsing(page: Any) -> None:
    """The playground's pure modules, loaded by the page itself (under its CSP): bodies, streams, reasoning."""
    page.goto("/#playground")
    result = page.evaluate("""async () => {
        const c = await import('/console/static/js/conversation.js');
        const {ReplyView} = await import('/console/static/js/transcript.js');
        const {snippet} = await import('/console/static/js/snippets.js');
        const settings = {mode: 'chat', model: 'm', system: 'Be brief.', temperature: 0.2, maxTokens: 16,
            stop: ['END'],
            tools: c.parseTools('[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]'),
            toolChoice: 'fn:f', schema: {name: 'out', schema: {type: 'object'}}};
        const turns = [{kind: 'user', text: 'hi'},
            {kind: 'assistant', text: '', reasoning: '', toolCalls: [{id: 'call_1', name: 'f', arguments: '{}'}]},
            {kind: 'tool', callId: 'call_1', name: 'f', output: '42'}];
        const chat = c.buildRequest(settings, turns);
        const responses = c.buildRequest({...settings, mode: 'responses'}, turns);
        const reply = c.newReply('m');
        c.applyChatChunk(reply, {choices: [{index: 0, delta: {role: 'assistant', reasoning_content: 'Think'}}]});
        c.applyChatChunk(reply, {choices: [{index: 0, delta: {content: 'Hel'}}]});
        c.applyChatChunk(reply, {choices: [{index: 0, delta: {content: 'lo'}, finish_reason: 'stop'}]});
        c.applyChatChunk(reply, {choices: [], usage: {prompt_tokens: 10, completion_tokens: 3,
            prompt_tokens_details: {cached_tokens: 4}, completion_tokens_details: {reasoning_tokens: 1}}});
        reply.endedAt = reply.startedAt + 50;
        const view = new ReplyView(reply, {pricing: {input: 1e6, cached_input: 0, output: 1e6}, json: false,
            onAnswer: () => {}});
        view.finish();
        document.body.append(view.el);
        const r2 = c.newReply('m');
        for (const [type, data] of [
            ['response.reasoning_text.delta', {delta: 'Hmm'}],
            ['response.output_item.added', {item: {type: 'function_call', id: 'fc_1', call_id: 'call_9', name: 'g'}}],
            ['response.function_call_arguments.delta', {item_id: 'fc_1', delta: '{"a":'}],
            ['response.function_call_arguments.delta', {item_id: 'fc_1', delta: '1}'}],
            ['response.completed', {response: {status: 'completed', usage: {input_tokens: 7, output_tokens: 2,
                input_tokens_details: {cached_tokens: 0}, output_tokens_details: {reasoning_tokens: 1}}}}],
        ]) c.applyResponsesEvent(r2, type, data);
        return {chat: chat, responses: responses, reply: {text: reply.text, reasoning: reply.reasoning,
                usage: reply.usage, finish: reply.finish},
            order: [...view.el.children].map((e) => e.className),
            reasoningShown: !view.el.querySelector('details.reasoning').hidden,
            reasoningOpen: view.el.querySelector('details.reasoning').open,
            stats: view.el.querySelector('.stats').textContent,
            r2: {calls: r2.toolCalls.map((t) => [t.id, t.name, t.arguments]), reasoning: r2.reasoning, usage: r2.usage},
            curl: snippet('curl', chat, 'http://127.0.0.1:1')};
    }""")
    chat, responses = result["chat"], result["responses"]
    assert chat["path"] == "/v1/chat/completions"
    body = chat["body"]
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert body["messages"][2] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}
    assert body["messages"][3] == {"role": "tool", "tool_call_id": "call_1", "content": "42"}
    assert body["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert body["response_format"]["type"] == "json_schema" and body["response_format"]["json_schema"]["name"] == "out"
    assert body["stop"] == ["END"] and body["stream_options"] == {"include_usage": True}
    rbody = responses["body"]
    assert responses["path"] == "/v1/responses" and rbody["instructions"] == "Be brief."
    assert rbody["tool_choice"] == {"type": "function", "name": "f"} and rbody["max_output_tokens"] == 16
    assert rbody["text"]["format"] == {"type": "json_schema", "name": "out", "schema": {"type": "object"},
                                       "strict": True}
    assert {"type": "function_call_output", "call_id": "call_1", "output": "42"} in rbody["input"]
    assert result["reply"] == {"text": "Hello", "reasoning": "Think", "finish": "stop",
                               "usage": {"input": 10, "cached": 4, "output": 3, "reasoning": 1}}
    order = result["order"]
    assert order.index("reasoning") < order.index("answer msg-text"), "reasoning sits above the answer"
    assert result["reasoningShown"] and not result["reasoningOpen"], "reasoning is shown folded"
    stats = result["stats"]
    assert "in 10" in stats and "cached 4" in stats and "out 3" in stats and "$9" in stats, stats
    assert result["r2"] == {"calls": [["call_9", "g", '{"a":1}']], "reasoning": "Hmm",
                            "usage": {"input": 7, "cached": 0, "output": 2, "reasoning": 1}}
    assert "Authorization: Bearer $SHOAL_API_KEY" in result["curl"] and '"tool_call_id": "call_1"' in result["curl"]
