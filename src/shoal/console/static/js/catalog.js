// Catalog page: every model with capabilities, context window, prices and deployments,
// live health and load of each deployment (refreshed every few seconds), filter by capability.

import {call} from './api.js';
import {byId, clearError, fill, h, ms, num, perMillion, showError} from './dom.js';

const REFRESH_MS = 3000;
const HEALTH_TEXT = {closed: 'healthy', half_open: 'recovering', open: 'failing'};

export class Catalog {
  constructor(app) {
    this.app = app;
    this.models = [];
    this.live = {data: [], prices: {}};
    this.filters = new Set();
    this.timer = null;
  }

  async show() {
    await this.load();
    // A pasted key's calls count against its rate limit: poll only with the admin session (or no auth).
    this.timer = window.setInterval(() => {
      if (this.app.creds.v1Mode !== 'key') this.refreshLive();
    }, REFRESH_MS);
  }

  hide() {
    window.clearInterval(this.timer);
    this.timer = null;
  }

  sessionChanged() {
    this.load();
  }

  async load() {
    const error = byId('catalog-error');
    try {
      this.models = await this.app.models.list();
      clearError(error);
    } catch (err) {
      this.models = [];
      const hint = err.status === 401
        ? 'Sign in as admin, or paste a model access key in the Playground, to see the catalog'
        : 'Cannot load the catalog';
      showError(error, err, hint);
    }
    await this.refreshLive(false);
    this.renderFilters();
    this.render();
  }

  async refreshLive(render = true) {
    try {
      this.live = await call(this.app.creds, '/console/api/deployments', {v1: true});
      const live = this.app.creds.v1Mode === 'key' ? 'reopen the page to refresh' : 'refreshed every 3 s';
      byId('catalog-updated').textContent = `Live status at ${new Date().toLocaleTimeString()} (${live})`;
    } catch {
      this.live = {data: [], prices: {}};
      byId('catalog-updated').textContent = 'Live status unavailable.';
    }
    if (render) this.renderDeployments();
  }

  capabilities() {
    const all = new Set();
    for (const m of this.models) for (const c of m.capabilities || []) all.add(c);
    return [...all].sort();
  }

  renderFilters() {
    const boxes = this.capabilities().map((cap) => h('label', {class: 'chip-check'},
      h('input', {type: 'checkbox', value: cap, checked: this.filters.has(cap), onchange: (e) => {
        if (e.target.checked) this.filters.add(cap);
        else this.filters.delete(cap);
        this.render();
      }}), ` ${cap}`));
    fill(byId('catalog-filter-boxes'), boxes.length ? boxes : h('span', {class: 'hint'}, 'No models loaded.'));
  }

  visible() {
    return this.models.filter((m) => [...this.filters].every((c) => (m.capabilities || []).includes(c)));
  }

  render() {
    const shown = this.visible();
    const list = byId('catalog-list');
    if (!shown.length) {
      fill(list, this.models.length ? h('p', {class: 'empty'}, 'No model has every selected capability.') : null);
      return;
    }
    fill(list, ...shown.map((m) => this.card(m)));
  }

  pricing(model) {
    return model.pricing || this.live.prices[model.id] || null;
  }

  card(model) {
    const price = this.pricing(model);
    const caps = (model.capabilities || []).map((c) => h('li', {class: 'chip'}, c));
    return h('article', {class: 'model-card panel', dataset: {model: model.id}, 'aria-labelledby': `model-${slug(model.id)}`},
      h('div', {class: 'card-head'},
        h('h2', {id: `model-${slug(model.id)}`}, model.id),
        h('button', {type: 'button', class: 'small', onclick: () => this.tryModel(model.id)}, 'Try in playground')),
      model.description ? h('p', {class: 'description'}, model.description) : null,
      model.aliases && model.aliases.length ? h('p', {class: 'hint'}, `Also: ${model.aliases.join(', ')}`) : null,
      h('ul', {class: 'chips', 'aria-label': 'Capabilities'}, caps),
      h('dl', {class: 'facts'},
        h('div', {}, h('dt', {}, 'Context window'), h('dd', {}, model.context_length ? `${num(model.context_length)} tokens` : '–')),
        h('div', {}, h('dt', {}, 'Input / 1M'), h('dd', {}, price ? perMillion(price.input) : '–')),
        h('div', {}, h('dt', {}, 'Cached input / 1M'), h('dd', {}, price ? perMillion(price.cached_input ?? price.input) : '–')),
        h('div', {}, h('dt', {}, 'Output / 1M'), h('dd', {}, price ? perMillion(price.output) : '–')),
        h('div', {}, h('dt', {}, 'Owner'), h('dd', {}, model.owned_by || '–'))),
      h('div', {class: 'deployments', dataset: {deploymentsOf: model.id}}, this.deploymentTable(model.id)));
  }

  deploymentTable(modelId) {
    const rows = this.live.data.filter((d) => d.model === modelId);
    if (!rows.length) return h('p', {class: 'hint'}, 'Deployments: no live data (router, or not allowed).');
    return h('table', {class: 'compact'},
      h('caption', {}, 'Deployments'),
      h('thead', {}, h('tr', {},
        ...['Deployment', 'Kind', 'Health', 'Load', 'Queue', 'TTFT'].map((t) => h('th', {scope: 'col'}, t)))),
      h('tbody', {}, ...rows.map((d) => h('tr', {dataset: {deployment: d.name}},
        h('td', {}, d.name),
        h('td', {}, d.status && d.status.mode ? `${d.kind} · ${d.status.mode} (${d.status.state})` : d.kind),
        h('td', {}, h('span', {class: `badge health-${d.health}`}, HEALTH_TEXT[d.health] || d.health)),
        h('td', {}, loadCell(d)),
        h('td', {}, `${d.queued} / ${d.max_queue}`),
        h('td', {}, ms(d.ttft_ms))))));
  }

  renderDeployments() {
    for (const box of document.querySelectorAll('#catalog-list [data-deployments-of]')) {
      fill(box, this.deploymentTable(box.dataset.deploymentsOf));
    }
  }

  tryModel(id) {
    this.app.pages.playground.preselect(id);
    this.app.go('playground');
  }
}

function loadCell(d) {
  const share = d.slots ? Math.min(1, d.running / d.slots) : 0;
  const meter = h('meter', {min: 0, max: d.slots || 1, value: d.running, 'aria-label': `${d.running} of ${d.slots} slots busy`});
  return h('span', {class: 'load'}, meter, ` ${d.running} / ${d.slots}${share >= 1 ? ' (full)' : ''}`);
}

function slug(text) {
  return text.replace(/[^a-zA-Z0-9_-]/g, '-');
}
