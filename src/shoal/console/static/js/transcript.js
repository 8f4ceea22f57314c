// The playground's transcript: user turns, streamed assistant replies (reasoning folded above the
// answer, tool-call cards with a way to answer them, per-reply stats) and tool results.

import {cost} from './conversation.js';
import {h, ms, num, usd} from './dom.js';

/** A user message or a tool result. */
export function staticTurn(turn) {
  if (turn.kind === 'user') {
    return h('article', {class: 'msg user', 'aria-label': 'You'},
      h('div', {class: 'msg-role'}, 'You'), h('div', {class: 'msg-text'}, turn.text));
  }
  return h('article', {class: 'msg tool', 'aria-label': `Tool result of ${turn.name}`},
    h('div', {class: 'msg-role'}, `Tool result · ${turn.name}`), h('pre', {class: 'msg-text code'}, turn.output));
}

/**
 * The view of one assistant reply. update() re-renders what streamed so far; finish() adds the stats
 * and the tool-call cards. onAnswer(call, output) is called when the user answers a tool call.
 */
export class ReplyView {
  constructor(reply, {pricing, onAnswer, json}) {
    this.reply = reply;
    this.pricing = pricing;
    this.onAnswer = onAnswer;
    this.json = json;
    this.reasoningText = h('div', {class: 'reasoning-text'});
    this.reasoning = h('details', {class: 'reasoning', hidden: true},
      h('summary', {}, 'Reasoning'), this.reasoningText);
    this.answer = h('div', {class: `answer msg-text${json ? ' code' : ''}`});
    this.calls = h('div', {class: 'tool-calls'});
    this.error = h('p', {class: 'inline-error', role: 'alert', hidden: true});
    this.stats = h('p', {class: 'stats', hidden: true});
    this.el = h('article', {class: 'msg assistant', 'aria-label': `Reply from ${reply.model}`, 'aria-busy': 'true'},
      h('div', {class: 'msg-role'}, `Assistant · ${reply.model}`),
      this.reasoning, this.answer, h('span', {class: 'cursor', 'aria-hidden': 'true'}), this.calls, this.error, this.stats);
  }

  update() {
    const r = this.reply;
    if (r.reasoning) {
      this.reasoning.hidden = false;
      this.reasoningText.textContent = r.reasoning;
    }
    if (this.answer.textContent !== r.text) this.answer.textContent = r.text;
    if (r.toolCalls.length) {
      this.calls.replaceChildren(...r.toolCalls.map((c) => h('div', {class: 'tool-call streaming'},
        h('div', {class: 'tool-call-name'}, `Calling ${c.name || '…'}`), h('pre', {class: 'code'}, c.arguments))));
    }
  }

  finish() {
    const r = this.reply;
    this.update();
    this.el.setAttribute('aria-busy', 'false');
    this.el.querySelector('.cursor')?.remove();
    if (this.json && r.text) {
      try {
        this.answer.textContent = JSON.stringify(JSON.parse(r.text), null, 2);
      } catch {
        // not complete JSON (stopped, max tokens): show it as it came
      }
    }
    if (r.error) {
      this.error.textContent = r.error;
      this.error.hidden = false;
    }
    this.calls.replaceChildren(...r.toolCalls.map((c) => this.callCard(c)));
    this.stats.replaceChildren(...stats(r, this.pricing));
    this.stats.hidden = false;
  }

  callCard(c) {
    const id = `answer-${c.id || c.key}`.replace(/[^a-zA-Z0-9_-]/g, '-');
    const output = h('textarea', {id, rows: 2, class: 'code', spellcheck: false, placeholder: '{"result": …}'});
    const button = h('button', {type: 'submit', class: 'primary small'}, 'Send result');
    const form = h('form', {class: 'tool-call', dataset: {callId: c.id, name: c.name}},
      h('div', {class: 'tool-call-name'}, h('span', {class: 'badge'}, 'tool call'), ` ${c.name}`),
      h('pre', {class: 'code', 'aria-label': 'Arguments'}, pretty(c.arguments)),
      h('label', {for: id}, `Result of ${c.name}`), output, h('div', {class: 'actions'}, button));
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      if (c.answered) return;
      c.answered = true;
      output.readOnly = true;
      button.disabled = true;
      button.textContent = 'Sent';
      this.onAnswer(c, output.value);
    });
    output.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) form.requestSubmit();
    });
    return form;
  }
}

function pretty(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

function stats(r, pricing) {
  const parts = [];
  const u = r.usage;
  if (u) {
    parts.push(h('span', {class: 'stat', dataset: {stat: 'input'}}, `in ${num(u.input)}`));
    parts.push(h('span', {class: 'stat', dataset: {stat: 'cached'}}, `cached ${num(u.cached)}`));
    parts.push(h('span', {class: 'stat', dataset: {stat: 'output'}}, `out ${num(u.output)}`));
    if (u.reasoning) parts.push(h('span', {class: 'stat'}, `reasoning ${num(u.reasoning)}`));
    const usdCost = cost(u, pricing);
    parts.push(h('span', {class: 'stat', dataset: {stat: 'cost'}}, usdCost === null ? 'cost –' : usd(usdCost)));
  }
  const ttft = r.firstTokenAt === null ? null : r.firstTokenAt - r.startedAt;
  parts.push(h('span', {class: 'stat', dataset: {stat: 'ttft'}}, `TTFT ${ms(ttft)}`));
  if (r.endedAt !== null) parts.push(h('span', {class: 'stat'}, `total ${ms(r.endedAt - r.startedAt)}`));
  if (r.finish) parts.push(h('span', {class: 'stat'}, `finish ${r.finish}`));
  return parts;
}
