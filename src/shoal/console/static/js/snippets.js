// "View code": the exact playground request as curl, openai, gradient and pydo snippets.
// The key is always the environment variable $SHOAL_API_KEY, never the real one.

export const LANGUAGES = [
  {id: 'curl', label: 'curl'},
  {id: 'openai', label: 'openai'},
  {id: 'gradient', label: 'gradient'},
  {id: 'pydo', label: 'pydo'},
];

/** A Python literal for a JSON value, indented like json.dumps(indent=4). */
export function python(value, indent = 0) {
  const pad = ' '.repeat(indent);
  const inner = ' '.repeat(indent + 4);
  if (value === null || value === undefined) return 'None';
  if (value === true) return 'True';
  if (value === false) return 'False';
  if (typeof value === 'number') return Number.isFinite(value) ? String(value) : 'None';
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) {
    if (!value.length) return '[]';
    return `[\n${value.map((v) => inner + python(v, indent + 4)).join(',\n')},\n${pad}]`;
  }
  const entries = Object.entries(value);
  if (!entries.length) return '{}';
  return `{\n${entries.map(([k, v]) => `${inner}${JSON.stringify(k)}: ${python(v, indent + 4)}`).join(',\n')},\n${pad}}`;
}

function chatLoop(create) {
  return `stream = ${create}(**request)
for chunk in stream:
    if chunk.choices:
        delta = chunk.choices[0].delta
        if getattr(delta, "reasoning_content", None):
            print(delta.reasoning_content, end="", flush=True)
        if delta.content:
            print(delta.content, end="", flush=True)
        for call in delta.tool_calls or []:
            print(call.function.name or "", call.function.arguments or "", end="", flush=True)
    elif chunk.usage:
        print("\\n", chunk.usage)
`;
}

function responsesLoop(create) {
  return `stream = ${create}(**request)
for event in stream:
    if event.type in ("response.output_text.delta", "response.reasoning_text.delta",
                      "response.function_call_arguments.delta"):
        print(event.delta, end="", flush=True)
    elif event.type == "response.completed":
        print("\\n", event.response.usage)
`;
}

/** The snippet of ``request`` ({path, body}) in ``language``, for a server at ``origin``. */
export function snippet(language, request, origin) {
  const chat = request.path.endsWith('/chat/completions');
  const body = request.body;
  const literal = `request = ${python(body)}\n\n`;
  switch (language) {
    case 'curl':
      return `curl -sN ${origin}${request.path} \\
  -H "Authorization: Bearer $SHOAL_API_KEY" \\
  -H "Content-Type: application/json" \\
  -d @- <<'JSON'
${JSON.stringify(body, null, 2)}
JSON
`;
    case 'openai':
      return `import os

from openai import OpenAI

client = OpenAI(base_url="${origin}/v1", api_key=os.environ["SHOAL_API_KEY"])

${literal}${chat ? chatLoop('client.chat.completions.create') : responsesLoop('client.responses.create')}`;
    case 'gradient':
      return `import os

from gradient import Gradient

# gradient takes the endpoint without /v1
client = Gradient(model_access_key=os.environ["SHOAL_API_KEY"], inference_endpoint="${origin}")

${literal}${chat ? chatLoop('client.chat.completions.create') : responsesLoop('client.responses.create')}`;
    case 'pydo':
      return pydo(chat, body, origin);
    default:
      return '';
  }
}

function pydo(chat, body, origin) {
  // pydo yields each streamed chunk as a dict (attribute access too); read it as a dict.
  const loop = chat
    ? `for chunk in client.chat.completions.create(**request):
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        print(delta.get("reasoning_content") or "", delta.get("content") or "", sep="", end="", flush=True)
        for call in delta.get("tool_calls") or []:
            function = call.get("function") or {}
            print(function.get("name") or "", function.get("arguments") or "", end="", flush=True)
    if chunk.get("usage"):
        print("\\n", chunk["usage"])
`
    : `for event in client.responses.create(**request):
    if event.get("type", "").endswith(".delta"):
        print(event.get("delta", ""), end="", flush=True)
    elif event.get("type") == "response.completed":
        print("\\n", event["response"]["usage"])
`;
  return `import os

from pydo import Client

# pydo takes the endpoint without /v1
client = Client(token=os.environ["SHOAL_API_KEY"], inference_endpoint="${origin}")

request = ${python(body)}

${loop}`;
}
