// Playground page: settings, the streamed conversation (Chat Completions or Responses), tool calls
// answered in the page, and "View code" for the exact request.

import {call, events, send} from './api.js';
import {applyChatChunk, applyResponsesEvent, buildRequest, newReply, parseSchema, parseTools} from './conversation.js';
import {announce, byId, clearError, describeError, fill, h, showError} from './dom.js';
import {LANGUAGES, snippet} from './snippets.js';
import {ReplyView, staticTurn} from './transcript.js';

const EXAMPLE_TOOLS = [{
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Get the current weather of a city',
    parameters: {type: 'object', properties: {city: {type: 'string'}}, required: ['city'], additionalProperties: false},
  },
}];
const EXAMPLE_SCHEMA = {
  type: 'object',
  properties: {answer: {type: 'string'}, confidence: {type: 'number'}},
  required: ['answer'],
  additionalProperties: false,
};

export class Playground {
  constructor(app) {
    this.app = app;
    this.turns = [];
    this.pendingCalls = [];
    this.controller = null;
    this.prices = {};
    this.preselected = null;
    this.language = 'curl';
    this.generation = 0;
    this.bind();
  }

  async show() {
    await this.loadModels();
  }

  hide() {}

  sessionChanged() {
    this.loadModels();
    this.authNote();
  }

  /** Select this model when the page next shows (from the catalog's "Try in playground"). */
  preselect(id) {
    this.preselected = id;
    const select = byId('pg-model');
    if ([...select.options].some((o) => o.value === id)) select.value = id;
  }

  bind() {
    byId('pg-compose').addEventListener('submit', (event) => {
      event.preventDefault();
      this.submit();
    });
    byId('pg-input').addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        this.submit();
      }
    });
    byId('pg-stop-button').addEventListener('click', () => this.controller?.abort());
    byId('pg-clear').addEventListener('click', () => this.clear());
    byId('pg-view-code').addEventListener('click', () => this.openCode());
    byId('code-close').addEventListener('click', () => byId('code-dialog').close());
    byId('code-copy').addEventListener('click', async () => {
      const ok = await navigator.clipboard?.writeText(byId('code-text').textContent).then(() => true, () => false);
      announce(ok ? 'Copied.' : 'Copy failed: select the text and copy it.');
    });
    byId('pg-key').addEventListener('change', (event) => this.app.creds.setKey(event.target.value));
    byId('pg-tools').addEventListener('input', () => this.toolChoices());
    byId('pg-tools-example').addEventListener('click', () => {
      byId('pg-tools').value = JSON.stringify(EXAMPLE_TOOLS, null, 2);
      this.toolChoices();
    });
    byId('pg-schema').value = JSON.stringify(EXAMPLE_SCHEMA, null, 2);
    for (const radio of document.querySelectorAll('input[name="pg-mode"]')) {
      radio.addEventListener('change', () => {
        byId('pg-system-label').textContent = this.mode() === 'chat' ? 'System prompt' : 'Instructions';
      });
    }
    this.authNote();
  }

  authNote() {
    const mode = this.app.creds.v1Mode;
    const s = this.app.creds.session;
    const text = {
      key: 'Using the pasted key (kept in this page only).',
      session: 'Using the admin session. Paste a model access key to call as that key instead.',
      none: s.api_key_required ? 'Paste a model access key, or sign in as admin.' : 'Auth is off on this server: no key needed.',
    }[mode];
    byId('pg-auth-note').textContent = text;
  }

  async loadModels() {
    const select = byId('pg-model');
    const previous = this.preselected || select.value;
    this.preselected = null;
    try {
      const models = await this.app.models.list();
      fill(select, ...models.map((m) => h('option', {value: m.id}, m.id)));
      if (models.some((m) => m.id === previous)) select.value = previous;
      clearError(byId('pg-error'));
    } catch (err) {
      // Keep the models listed before (if any): sending then shows the API's answer for this key.
      showError(byId('pg-error'), err, 'Cannot list the models');
    }
    try {
      this.prices = (await call(this.app.creds, '/console/api/deployments', {v1: true})).prices || {};
    } catch {
      this.prices = {};
    }
    this.authNote();
  }

  mode() {
    return document.querySelector('input[name="pg-mode"]:checked').value;
  }

  toolChoices() {
    const select = byId('pg-tool-choice');
    const current = select.value;
    let names = [];
    try {
      names = parseTools(byId('pg-tools').value).map((t) => t.name);
    } catch {
      // invalid JSON while typing: keep the basic choices
    }
    fill(select, ...['auto', 'required', 'none'].map((v) => h('option', {value: v}, v)),
      ...names.map((n) => h('option', {value: `fn:${n}`}, `function: ${n}`)));
    if ([...select.options].some((o) => o.value === current)) select.value = current;
  }

  /** The settings as the request builder wants them; throws a readable Error for a bad field. */
  settings() {
    const number = (id, parse) => {
      const raw = byId(id).value.trim();
      if (!raw) return null;
      const value = parse(raw);
      if (!Number.isFinite(value)) throw new Error(`${byId(id).labels[0].textContent} must be a number.`);
      return value;
    };
    const stop = byId('pg-stop').value.split('\n').filter((s) => s.length);
    if (stop.length > 4) throw new Error('At most 4 stop sequences.');
    const json = byId('pg-json').checked;
    const model = byId('pg-model').value;
    if (!model) throw new Error('No model to call: the model list is empty or could not be loaded.');
    return {
      mode: this.mode(),
      model,
      system: byId('pg-system').value.trim(),
      temperature: number('pg-temperature', Number.parseFloat),
      maxTokens: number('pg-max-tokens', (v) => Number.parseInt(v, 10)),
      stop,
      tools: parseTools(byId('pg-tools').value),
      toolChoice: byId('pg-tool-choice').value,
      schema: json ? {name: byId('pg-schema-name').value.trim() || 'answer', schema: parseSchema(byId('pg-schema').value)} : null,
    };
  }

  submit() {
    if (this.controller) return;
    const input = byId('pg-input');
    const text = input.value.trim();
    if (this.pendingCalls.some((c) => !c.answered)) {
      showError(byId('pg-error'), new Error('Answer the tool calls first (or Clear the conversation).'));
      return;
    }
    const last = this.turns[this.turns.length - 1];
    if (!text && last && last.kind === 'tool') {
      this.run(null); // retry the reply to the tool results
      return;
    }
    if (!text) {
      showError(byId('pg-error'), new Error('Type a message first.'));
      input.focus();
      return;
    }
    this.run(text);
  }

  append(el) {
    byId('pg-empty').hidden = true;
    const transcript = byId('pg-transcript');
    transcript.append(el);
    transcript.scrollTop = transcript.scrollHeight;
  }

  /** Send the conversation (with a new user message when ``text`` is given) and stream the reply. */
  async run(text) {
    const errorBox = byId('pg-error');
    let settings;
    try {
      settings = this.settings();
    } catch (err) {
      showError(errorBox, err);
      return;
    }
    clearError(errorBox);
    if (!text && (settings.toolChoice === 'required' || settings.toolChoice.startsWith('fn:'))) {
      // A forced choice applies to the reply to the user's message; after tool results the model may answer.
      settings.toolChoice = 'auto';
    }
    let userTurn = null;
    let userView = null;
    if (text) {
      userTurn = {kind: 'user', text};
      this.turns.push(userTurn);
      userView = staticTurn(userTurn);
      this.append(userView);
      byId('pg-input').value = '';
    }
    const request = buildRequest(settings, this.turns);
    const reply = newReply(settings.model);
    const view = new ReplyView(reply, {
      pricing: this.prices[settings.model] || null, json: Boolean(settings.schema),
      onAnswer: (c, output) => this.answer(c, output),
    });
    this.append(view.el);
    this.busy(true);
    const controller = new AbortController();
    this.controller = controller;
    const generation = this.generation;
    try {
      const response = await send(this.app.creds, request.path, {
        method: 'POST', body: request.body, v1: true, signal: controller.signal, accept: 'text/event-stream',
      });
      for await (const ev of events(response)) {
        if (settings.mode === 'chat') {
          if (ev.raw === '[DONE]') break;
          applyChatChunk(reply, ev.data);
        } else {
          applyResponsesEvent(reply, ev.event, ev.data);
        }
        view.update();
        byId('pg-transcript').scrollTop = byId('pg-transcript').scrollHeight;
      }
    } catch (err) {
      reply.error = describeError(err);
    } finally {
      reply.endedAt = performance.now();
      this.controller = null;
      this.busy(false);
    }
    if (generation !== this.generation) return; // cleared meanwhile
    const produced = reply.text || reply.reasoning || reply.toolCalls.length;
    if (!produced && reply.error) {
      // Nothing came back: take the message out of the conversation and give it back to edit.
      view.el.remove();
      if (userTurn) {
        this.turns.pop();
        userView.remove();
        byId('pg-input').value = userTurn.text;
      }
      showError(errorBox, new Error(reply.error));
      announce(`Request failed: ${reply.error}`);
      return;
    }
    view.finish();
    this.turns.push({kind: 'assistant', text: reply.text, reasoning: reply.reasoning,
      toolCalls: reply.toolCalls.map((c) => ({id: c.id, name: c.name, arguments: c.arguments}))});
    this.pendingCalls = reply.toolCalls;
    if (reply.toolCalls.length) {
      announce(`The model called ${reply.toolCalls.map((c) => c.name).join(', ')}: answer below.`);
      view.el.querySelector('.tool-call textarea')?.focus();
    } else {
      announce(reply.error ? `Reply ended with an error: ${reply.error}` : 'Reply complete.');
    }
  }

  /** A tool call was answered: record the result, and continue once every call of the reply has one. */
  answer(c, output) {
    const turn = {kind: 'tool', callId: c.id, name: c.name, output};
    this.turns.push(turn);
    this.append(staticTurn(turn));
    if (this.pendingCalls.every((p) => p.answered)) {
      this.pendingCalls = [];
      this.run(null);
    }
  }

  busy(on) {
    byId('pg-send').disabled = on;
    byId('pg-stop-button').hidden = !on;
    byId('pg-transcript').setAttribute('aria-busy', on ? 'true' : 'false');
  }

  clear() {
    this.generation += 1;
    this.controller?.abort();
    this.turns = [];
    this.pendingCalls = [];
    const transcript = byId('pg-transcript');
    transcript.replaceChildren(byId('pg-empty'));
    byId('pg-empty').hidden = false;
    clearError(byId('pg-error'));
    announce('Conversation cleared.');
  }

  /** The request Send would make now (with the message being typed), for "View code". */
  pendingRequest() {
    const settings = this.settings();
    const text = byId('pg-input').value.trim();
    const turns = text ? [...this.turns, {kind: 'user', text}] : this.turns;
    if (!turns.length) turns.push({kind: 'user', text: 'Hello!'});
    return buildRequest(settings, turns);
  }

  openCode() {
    let request;
    try {
      request = this.pendingRequest();
    } catch (err) {
      showError(byId('pg-error'), err);
      return;
    }
    const tabs = byId('code-tabs');
    const render = () => {
      byId('code-text').textContent = snippet(this.language, request, location.origin);
      for (const tab of tabs.children) {
        const selected = tab.dataset.lang === this.language;
        tab.setAttribute('aria-selected', String(selected));
        tab.tabIndex = selected ? 0 : -1;
      }
    };
    fill(tabs, ...LANGUAGES.map((lang, i) => h('button', {
      type: 'button', role: 'tab', class: 'subtab', dataset: {lang: lang.id},
      onclick: () => { this.language = lang.id; render(); },
      onkeydown: (event) => {
        const step = {ArrowRight: 1, ArrowLeft: -1}[event.key];
        if (!step) return;
        const next = LANGUAGES[(i + step + LANGUAGES.length) % LANGUAGES.length];
        this.language = next.id;
        render();
        tabs.querySelector(`[data-lang="${next.id}"]`).focus();
      },
    }, lang.label)));
    render();
    byId('code-dialog').showModal();
    tabs.querySelector('[aria-selected="true"]').focus();
  }
}
