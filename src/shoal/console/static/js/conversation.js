// The playground's conversation, independent of the page: request bodies for both APIs and
// the accumulation of a streamed reply (chat chunks or Responses events) into one object.

/**
 * A turn of the conversation, the same in both modes:
 *   {kind: 'user', text}
 *   {kind: 'assistant', text, reasoning, toolCalls: [{id, name, arguments}]}
 *   {kind: 'tool', callId, name, output}
 */

/** Tool definitions from the textarea: chat-style ({type, function}) or flat ({type, name}) JSON. */
export function parseTools(text) {
  const trimmed = text.trim();
  if (!trimmed) return [];
  let value;
  try {
    value = JSON.parse(trimmed);
  } catch (err) {
    throw new Error(`Tool definitions are not valid JSON: ${err.message}`);
  }
  if (!Array.isArray(value)) value = [value];
  return value.map((tool, i) => {
    const fn = tool && tool.function ? tool.function : tool;
    if (!fn || typeof fn.name !== 'string' || !fn.name) throw new Error(`Tool ${i + 1} has no "name".`);
    return {name: fn.name, description: fn.description || undefined, parameters: fn.parameters || undefined};
  });
}

/** The JSON schema of JSON-schema output mode. */
export function parseSchema(text) {
  let schema;
  try {
    schema = JSON.parse(text);
  } catch (err) {
    throw new Error(`The JSON schema is not valid JSON: ${err.message}`);
  }
  if (!schema || typeof schema !== 'object' || Array.isArray(schema)) throw new Error('The JSON schema must be an object.');
  return schema;
}

function chatMessages(turn) {
  if (turn.kind === 'user') return [{role: 'user', content: turn.text}];
  if (turn.kind === 'tool') return [{role: 'tool', tool_call_id: turn.callId, content: turn.output}];
  const message = {role: 'assistant', content: turn.text || (turn.toolCalls.length ? null : '')};
  if (turn.toolCalls.length) {
    message.tool_calls = turn.toolCalls.map((c) => ({
      id: c.id, type: 'function', function: {name: c.name, arguments: c.arguments},
    }));
  }
  return [message];
}

function responsesItems(turn) {
  if (turn.kind === 'user') return [{role: 'user', content: turn.text}];
  if (turn.kind === 'tool') return [{type: 'function_call_output', call_id: turn.callId, output: turn.output}];
  const items = turn.text ? [{role: 'assistant', content: turn.text}] : [];
  for (const c of turn.toolCalls) items.push({type: 'function_call', call_id: c.id, name: c.name, arguments: c.arguments});
  return items;
}

/**
 * The exact request body Send makes. settings: {mode, model, system, temperature, maxTokens,
 * stop: [], tools: [{name, description, parameters}], toolChoice: 'auto'|'required'|'none'|'fn:NAME',
 * schema: {name, schema} | null}.
 */
export function buildRequest(settings, turns) {
  const s = settings;
  const body = {model: s.model};
  const named = s.toolChoice && s.toolChoice.startsWith('fn:') ? s.toolChoice.slice(3) : null;
  if (s.mode === 'chat') {
    body.messages = [...(s.system ? [{role: 'system', content: s.system}] : []), ...turns.flatMap(chatMessages)];
    if (s.temperature !== null) body.temperature = s.temperature;
    if (s.maxTokens !== null) body.max_completion_tokens = s.maxTokens;
    if (s.stop.length) body.stop = s.stop;
    if (s.tools.length) {
      body.tools = s.tools.map((t) => ({type: 'function', function: strip(t)}));
      body.tool_choice = named ? {type: 'function', function: {name: named}} : s.toolChoice;
    }
    if (s.schema) body.response_format = {type: 'json_schema', json_schema: {name: s.schema.name, schema: s.schema.schema, strict: true}};
    body.stream = true;
    body.stream_options = {include_usage: true};
    return {path: '/v1/chat/completions', body};
  }
  body.input = turns.flatMap(responsesItems);
  if (s.system) body.instructions = s.system;
  if (s.temperature !== null) body.temperature = s.temperature;
  if (s.maxTokens !== null) body.max_output_tokens = s.maxTokens;
  if (s.stop.length) body.stop = s.stop;
  if (s.tools.length) {
    body.tools = s.tools.map((t) => ({type: 'function', ...strip(t)}));
    body.tool_choice = named ? {type: 'function', name: named} : s.toolChoice;
  }
  if (s.schema) body.text = {format: {type: 'json_schema', name: s.schema.name, schema: s.schema.schema, strict: true}};
  body.store = false;
  body.stream = true;
  return {path: '/v1/responses', body};
}

function strip(obj) {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined));
}

/** A reply being streamed. */
export function newReply(model) {
  return {
    kind: 'assistant', model, text: '', reasoning: '', toolCalls: [], usage: null, finish: null, error: null,
    startedAt: performance.now(), firstTokenAt: null, endedAt: null,
  };
}

function touched(reply) {
  if (reply.firstTokenAt === null) reply.firstTokenAt = performance.now();
}

function call(reply, key, init) {
  let c = reply.toolCalls.find((t) => t.key === key);
  if (!c) {
    c = {key, id: '', name: '', arguments: '', ...init};
    reply.toolCalls.push(c);
  }
  return c;
}

/** Apply one chat-completions chunk. */
export function applyChatChunk(reply, chunk) {
  if (!chunk) return;
  if (chunk.error) {
    reply.error = chunk.error.message || 'The stream failed.';
    return;
  }
  for (const choice of chunk.choices || []) {
    const delta = choice.delta || {};
    if (delta.content) {
      touched(reply);
      reply.text += delta.content;
    }
    if (delta.reasoning_content) {
      touched(reply);
      reply.reasoning += delta.reasoning_content;
    }
    for (const tc of delta.tool_calls || []) {
      touched(reply);
      const c = call(reply, `i${tc.index ?? 0}`);
      if (tc.id) c.id = tc.id;
      if (tc.function && tc.function.name) c.name = tc.function.name;
      if (tc.function && tc.function.arguments) c.arguments += tc.function.arguments;
    }
    if (choice.finish_reason) reply.finish = choice.finish_reason;
  }
  if (chunk.usage) {
    const u = chunk.usage;
    reply.usage = {
      input: u.prompt_tokens || 0,
      cached: (u.prompt_tokens_details && u.prompt_tokens_details.cached_tokens) || 0,
      output: u.completion_tokens || 0,
      reasoning: (u.completion_tokens_details && u.completion_tokens_details.reasoning_tokens) || 0,
    };
  }
}

/** Apply one Responses streaming event. */
export function applyResponsesEvent(reply, type, data) {
  if (!data) return;
  switch (type || data.type) {
    case 'response.output_text.delta':
      touched(reply);
      reply.text += data.delta || '';
      break;
    case 'response.reasoning_text.delta':
    case 'response.reasoning_summary_text.delta':
      touched(reply);
      reply.reasoning += data.delta || '';
      break;
    case 'response.output_item.added':
      if (data.item && data.item.type === 'function_call') {
        touched(reply);
        call(reply, data.item.id, {id: data.item.call_id, name: data.item.name});
      }
      break;
    case 'response.function_call_arguments.delta':
      call(reply, data.item_id).arguments += data.delta || '';
      break;
    case 'response.output_item.done':
      if (data.item && data.item.type === 'function_call') {
        const c = call(reply, data.item.id, {id: data.item.call_id, name: data.item.name});
        c.arguments = data.item.arguments;
      }
      break;
    case 'response.completed':
    case 'response.incomplete':
      finishResponse(reply, data.response);
      break;
    case 'response.failed':
      finishResponse(reply, data.response);
      reply.error = (data.response && data.response.error && data.response.error.message) || 'The response failed.';
      break;
    case 'error':
      reply.error = data.message || (data.error && data.error.message) || 'The stream failed.';
      break;
    default:
      break;
  }
}

function finishResponse(reply, response) {
  if (!response) return;
  reply.finish = response.status === 'incomplete'
    ? `incomplete: ${(response.incomplete_details && response.incomplete_details.reason) || 'unknown'}`
    : response.status;
  const u = response.usage;
  if (u) {
    reply.usage = {
      input: u.input_tokens || 0,
      cached: (u.input_tokens_details && u.input_tokens_details.cached_tokens) || 0,
      output: u.output_tokens || 0,
      reasoning: (u.output_tokens_details && u.output_tokens_details.reasoning_tokens) || 0,
    };
  }
}

/** USD of a reply's usage at a model's prices (USD per 1M tokens), or null when prices are unknown. */
export function cost(usage, pricing) {
  if (!usage || !pricing) return null;
  const cachedRate = pricing.cached_input ?? pricing.input ?? 0;
  const cached = Math.min(usage.cached, usage.input);
  return ((usage.input - cached) * (pricing.input || 0) + cached * cachedRate + usage.output * (pricing.output || 0)) / 1e6;
}
