// Talking to Shoal: the admin session, the pasted model access key, JSON calls, errors and SSE.
//
// Credentials: a pasted model access key lives only in this page's memory (never in a URL,
// the HTML or storage). The admin session is an HttpOnly cookie the page cannot read; state-changing
// calls made with it carry the CSRF token from GET /console/session in X-CSRF-Token.

/** An error answered by the API: HTTP status plus the OpenAI-style error body. */
export class ApiError extends Error {
  constructor(status, message, code = null, type = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.type = type;
  }
}

/** What the page knows about who it is: the session state and the pasted key. */
export class Credentials {
  constructor() {
    this.session = {admin_api: false, signed_in: false, csrf_token: null, expires_at: null, api_key_required: false};
    this.key = '';
    this.listeners = new Set();
  }

  /** Call fn() whenever the session or the key changes. */
  onChange(fn) {
    this.listeners.add(fn);
  }

  changed() {
    for (const fn of this.listeners) fn(this);
  }

  setKey(key) {
    this.key = key.trim();
    this.changed();
  }

  /** How /v1 calls authenticate right now: 'key', 'session' or 'none'. */
  get v1Mode() {
    if (this.key) return 'key';
    if (this.session.signed_in) return 'session';
    return 'none';
  }

  /** Headers for a call; /v1 calls use the pasted key first, everything else only the session. */
  headers(v1) {
    const out = {};
    if (v1 && this.key) out.Authorization = `Bearer ${this.key}`;
    else if (this.session.csrf_token) out['X-CSRF-Token'] = this.session.csrf_token;
    return out;
  }

  /** Reload the session state from the server. */
  async refresh() {
    this.session = await call(this, '/console/session');
    this.changed();
    return this.session;
  }

  async signIn(token) {
    this.session = await call(this, '/console/session', {method: 'POST', body: {token}});
    this.changed();
  }

  async signOut() {
    this.session = await call(this, '/console/session', {method: 'DELETE'});
    this.changed();
  }
}

/** fetch() with the right credentials; throws ApiError for any non-2xx answer. Returns the Response. */
export async function send(creds, path, {method = 'GET', body, v1 = false, signal, accept = 'application/json'} = {}) {
  const headers = {Accept: accept, ...creds.headers(v1)};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, {
    method, headers, signal, credentials: 'same-origin', cache: 'no-store', redirect: 'error',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) {
    const err = await toError(response);
    if (err.code === 'csrf_failed' || (err.status === 401 && !v1 && creds.session.signed_in)) {
      // The session ended or the token is stale: show the signed-out state.
      creds.refresh().catch(() => {});
    }
    throw err;
  }
  return response;
}

/** A JSON call: the parsed body (null for 204). */
export async function call(creds, path, options = {}) {
  const response = await send(creds, path, options);
  return response.status === 204 ? null : response.json();
}

/** The ApiError of a failed response (readable even when the body is not JSON). */
export async function toError(response) {
  let message = response.statusText || `The server answered ${response.status}.`;
  let code = null;
  let type = null;
  try {
    const data = await response.json();
    if (data && data.error) {
      message = data.error.message || message;
      code = data.error.code || null;
      type = data.error.type || null;
    }
  } catch {
    // not JSON: keep the status text
  }
  return new ApiError(response.status, message, code, type);
}

/** Server-sent events of a streamed response: yields {event, data} with data parsed as JSON when it is. */
export async function* events(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  try {
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += value.replace(/\r\n?/g, '\n');
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const parsed = parseBlock(block);
        if (parsed) yield parsed;
      }
    }
    const last = parseBlock(buffer);
    if (last) yield last;
  } finally {
    reader.releaseLock();
  }
}

function parseBlock(block) {
  let event = 'message';
  const data = [];
  for (const line of block.split('\n')) {
    if (!line || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
  }
  if (!data.length) return null;
  const text = data.join('\n');
  try {
    return {event, data: JSON.parse(text), raw: text};
  } catch {
    return {event, data: null, raw: text};
  }
}
