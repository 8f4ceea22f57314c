// Usage page: tokens and cost over time, by model and by key (charts and tables), CSV export.

import {call} from './api.js';
import {bars, columns} from './chart.js';
import {byId, clearError, fill, h, ms, num, showError, usd} from './dom.js';

const REFRESH_MS = 5000;
const DAY = 86400;
const COLUMNS = ['requests', 'failed', 'input_tokens', 'cached_tokens', 'output_tokens', 'reasoning_tokens',
  'cost_usd', 'avg_ttft_ms', 'avg_latency_ms'];
const TOKEN_SERIES = ['input (uncached)', 'input (cached)', 'output'];

function tokenValues(row) {
  const cached = row.cached_tokens || 0;
  return [Math.max(0, (row.input_tokens || 0) - cached), cached, row.output_tokens || 0];
}

function utcDay(epochSeconds) {
  return new Date(epochSeconds * 1000).toISOString().slice(0, 10);
}

export class Usage {
  constructor(app) {
    this.app = app;
    this.timer = null;
    this.data = null;
    this.loading = false;
    byId('usage-controls').addEventListener('submit', (event) => {
      event.preventDefault();
      this.refresh();
    });
    for (const id of ['usage-range', 'usage-metric']) byId(id).addEventListener('change', () => this.refresh());
    byId('usage-auto').addEventListener('change', () => this.schedule());
    byId('usage-csv').addEventListener('click', () => this.exportCsv());
    let pending = null;
    window.addEventListener('resize', () => {
      window.clearTimeout(pending);
      pending = window.setTimeout(() => { if (this.data && !byId('page-usage').hidden) this.render(); }, 200);
    });
  }

  show() {
    this.refresh();
    this.schedule();
  }

  hide() {
    window.clearInterval(this.timer);
    this.timer = null;
  }

  sessionChanged() {
    this.refresh();
  }

  schedule() {
    window.clearInterval(this.timer);
    this.timer = byId('usage-auto').checked ? window.setInterval(() => this.refresh(), REFRESH_MS) : null;
  }

  async refresh() {
    const blocked = this.app.gate(byId('usage-gate'));
    byId('usage-body').hidden = blocked;
    if (blocked || this.loading) return;
    this.loading = true;
    const range = byId('usage-range').value;
    const creds = this.app.creds;
    const get = (by) => call(creds, `/admin/usage?by=${by}&since=${range}`).then((d) => d.data);
    try {
      const hourly = range === '24h';
      const [byModel, byKey, time] = await Promise.all([
        get('model'), get('key'),
        hourly ? call(creds, '/admin/usage/records?since=24h&limit=1000').then((d) => hourBuckets(d.data)) : get('day').then((rows) => dayBuckets(rows, range)),
      ]);
      this.data = {range, byModel, byKey, time, at: new Date()};
      clearError(byId('usage-error'));
      this.render();
    } catch (err) {
      showError(byId('usage-error'), err, 'Cannot load usage');
    } finally {
      this.loading = false;
    }
  }

  render() {
    const {byModel, byKey, time} = this.data;
    const cost = byId('usage-metric').value === 'cost';
    const format = cost ? usd : compact;
    const values = (row) => (cost ? [row.cost_usd || 0] : tokenValues(row));
    const names = cost ? ['cost'] : TOKEN_SERIES;
    const sum = (rows, f) => rows.reduce((a, r) => a + (r[f] || 0), 0);
    fill(byId('usage-totals'),
      total('Requests', num(sum(byModel, 'requests'))),
      total('Input tokens', num(sum(byModel, 'input_tokens'))),
      total('Cached tokens', num(sum(byModel, 'cached_tokens'))),
      total('Output tokens', num(sum(byModel, 'output_tokens'))),
      total('Cost', usd(sum(byModel, 'cost_usd'))),
      h('p', {class: 'hint updated'}, `Updated ${this.data.at.toLocaleTimeString()}`));
    const series = names.map((name, k) => ({name, values: time.map((row) => values(row)[k])}));
    const width = (id) => byId(id).clientWidth;
    fill(byId('usage-time-chart'), columns({categories: time.map((r) => r.label), series, format,
      title: `${cost ? 'Cost' : 'Tokens'} over time`, width: width('usage-time-chart')}));
    fill(byId('usage-model-chart'), bars({rows: byModel.map((r) => ({label: r.model, values: values(r)})), series: names,
      format, title: 'By model', width: width('usage-model-chart')}));
    fill(byId('usage-key-chart'), bars({rows: byKey.map((r) => ({label: keyLabel(r), values: values(r)})), series: names,
      format, title: 'By key', width: width('usage-key-chart')}));
    table(byId('usage-model-table'), 'Model', byModel.map((r) => [r.model, r]));
    table(byId('usage-key-table'), 'Key', byKey.map((r) => [keyCell(r), r]));
  }

  exportCsv() {
    if (!this.data) return;
    const head = ['group_by', 'group', 'name', ...COLUMNS];
    const lines = [head];
    const timeBy = this.data.range === '24h' ? 'hour' : 'day';
    for (const r of this.data.time) lines.push([timeBy, r.label, '', ...COLUMNS.map((c) => r[c] ?? '')]);
    for (const r of this.data.byModel) lines.push(['model', r.model, '', ...COLUMNS.map((c) => r[c] ?? '')]);
    for (const r of this.data.byKey) lines.push(['key', r.key ?? '', r.name ?? '', ...COLUMNS.map((c) => r[c] ?? '')]);
    const text = lines.map((row) => row.map(csvCell).join(',')).join('\r\n') + '\r\n';
    const url = URL.createObjectURL(new Blob([text], {type: 'text/csv;charset=utf-8'}));
    const link = h('a', {href: url, download: `shoal-usage-${this.data.range}-${new Date().toISOString().slice(0, 10)}.csv`, hidden: true});
    document.body.append(link);
    link.click();
    link.remove();
    window.setTimeout(() => URL.revokeObjectURL(url), 10_000);
  }
}

function keyLabel(row) {
  if (!row.key) return 'anonymous';
  return row.name && row.name !== '?' ? `${row.name} (${row.key})` : row.key;
}

function keyCell(row) {
  const named = row.key && row.name && row.name !== '?';
  return named ? [row.name, h('div', {class: 'hint'}, row.key)] : keyLabel(row);
}

function total(label, value) {
  return h('div', {class: 'total'}, h('div', {class: 'total-label'}, label), h('div', {class: 'total-value'}, value));
}

function compact(v) {
  if (v >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (v >= 1e3) return `${(v / 1e3).toFixed(1)}k`;
  return String(Math.round(v));
}

function csvCell(value) {
  const text = String(value);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

function table(el, groupTitle, rows) {
  const head = h('thead', {}, h('tr', {}, ...[groupTitle, 'Requests', 'Input', 'Cached', 'Output', 'Cost', 'Avg TTFT']
    .map((t) => h('th', {scope: 'col'}, t))));
  const body = h('tbody', {}, ...(rows.length ? rows.map(([label, r]) => h('tr', {},
    h('th', {scope: 'row'}, label), h('td', {}, num(r.requests)), h('td', {}, num(r.input_tokens)),
    h('td', {}, num(r.cached_tokens)), h('td', {}, num(r.output_tokens)), h('td', {}, usd(r.cost_usd)),
    h('td', {}, ms(r.avg_ttft_ms)))) : [h('tr', {}, h('td', {colspan: 7, class: 'empty'}, 'No usage in this range.'))]));
  fill(el, head, body);
}

/** Daily rows (from ?by=day) for every day of the range, zeros where nothing was used. */
function dayBuckets(rows, range) {
  const days = Number.parseInt(range, 10);
  const byDay = new Map(rows.map((r) => [r.day, r]));
  const today = Math.floor(Date.now() / 1000 / DAY) * DAY;
  const out = [];
  for (let i = days - 1; i >= 0; i -= 1) {
    const day = utcDay(today - i * DAY);
    out.push({...(byDay.get(day) || {}), label: day.slice(5)});
  }
  return out;
}

/** Hourly totals of the last 24 h from usage records (newest 1,000). */
function hourBuckets(records) {
  const now = Math.floor(Date.now() / 1000 / 3600) * 3600;
  const buckets = [];
  for (let i = 23; i >= 0; i -= 1) {
    const start = now - i * 3600;
    buckets.push({start, label: `${new Date(start * 1000).toISOString().slice(11, 13)}h`, requests: 0, failed: 0,
      input_tokens: 0, cached_tokens: 0, output_tokens: 0, reasoning_tokens: 0, cost_usd: 0});
  }
  for (const r of records) {
    const b = buckets.find((x) => r.ts >= x.start && r.ts < x.start + 3600);
    if (!b) continue;
    b.requests += 1;
    for (const f of ['input_tokens', 'cached_tokens', 'output_tokens', 'reasoning_tokens', 'cost_usd']) b[f] += r[f] || 0;
  }
  return buckets;
}
