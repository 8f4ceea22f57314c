// Keys page: create a key with scopes, limits and budget (its secret shown once), list, revoke, rotate.

import {call} from './api.js';
import {announce, byId, clearError, copyText, fill, h, num, showError, usd} from './dom.js';

export class Keys {
  constructor(app) {
    this.app = app;
    this.keys = [];
    this.bind();
  }

  show() {
    this.load();
  }

  hide() {
    this.dismissSecret();
  }

  sessionChanged() {
    this.load();
  }

  bind() {
    byId('key-form').addEventListener('submit', (event) => {
      event.preventDefault();
      this.create();
    });
    byId('keys-show-revoked').addEventListener('change', () => this.render());
    byId('key-secret-copy').addEventListener('click', async () => {
      const ok = await copyText(byId('key-secret-value').value);
      if (!ok) byId('key-secret-value').select();
      announce(ok ? 'Key copied.' : 'Copy failed: the key is selected, copy it with the keyboard.');
    });
    byId('key-secret-dismiss').addEventListener('click', () => this.dismissSecret());
  }

  async load() {
    const blocked = this.app.gate(byId('keys-gate'));
    byId('keys-body').hidden = blocked;
    if (blocked) return;
    await Promise.all([this.loadModels(), this.refresh()]);
  }

  async loadModels() {
    const select = byId('key-models');
    const chosen = new Set([...select.selectedOptions].map((o) => o.value));
    try {
      const models = await this.app.models.list();
      fill(select, ...models.map((m) => h('option', {value: m.id, selected: chosen.has(m.id)}, m.id)));
    } catch (err) {
      showError(byId('keys-error'), err, 'Cannot list the models');
    }
  }

  async refresh() {
    try {
      const data = await call(this.app.creds, '/admin/keys?include_revoked=true');
      this.keys = data.data;
      clearError(byId('keys-error'));
    } catch (err) {
      showError(byId('keys-error'), err, 'Cannot list the keys');
    }
    this.render();
  }

  render() {
    const showRevoked = byId('keys-show-revoked').checked;
    const rows = this.keys.filter((k) => showRevoked || k.status === 'active');
    const body = byId('keys-table').tBodies[0];
    if (!rows.length) {
      fill(body, h('tr', {}, h('td', {colspan: 7, class: 'empty'}, 'No keys yet.')));
      return;
    }
    fill(body, ...rows.map((k) => this.row(k)));
  }

  row(k) {
    const limits = [k.rpm ? `${num(k.rpm)} rpm` : null, k.tpm ? `${num(k.tpm)} tpm` : null].filter(Boolean).join(', ') || 'none';
    const budget = k.budget_usd === null || k.budget_usd === undefined ? 'none' : `${usd(k.budget_usd)} / ${k.budget_period || 'month'}`;
    const active = k.status === 'active';
    return h('tr', {dataset: {keyId: k.id}, class: active ? '' : 'revoked'},
      h('th', {scope: 'row'}, k.name, h('div', {class: 'hint'}, k.id)),
      h('td', {}, h('code', {}, `${k.prefix}…`)),
      h('td', {}, k.models ? k.models.join(', ') : 'all'),
      h('td', {}, limits),
      h('td', {}, budget),
      h('td', {}, h('span', {class: `badge ${active ? 'ok' : 'off'}`}, k.status)),
      h('td', {class: 'row-actions'}, active ? [
        h('button', {type: 'button', class: 'small', onclick: () => this.rotate(k), 'aria-label': `Rotate ${k.name}`}, 'Rotate'),
        h('button', {type: 'button', class: 'small danger', onclick: () => this.revoke(k), 'aria-label': `Revoke ${k.name}`}, 'Revoke'),
      ] : null));
  }

  spec() {
    const int = (id) => (byId(id).value.trim() ? Number.parseInt(byId(id).value, 10) : null);
    const name = byId('key-name').value.trim();
    if (!name) throw new Error('Give the key a name.');
    const models = [...byId('key-models').selectedOptions].map((o) => o.value);
    const budgetRaw = byId('key-budget').value.trim();
    const spec = {name, models: models.length ? models : null, rpm: int('key-rpm'), tpm: int('key-tpm')};
    if (budgetRaw) {
      spec.budget_usd = Number.parseFloat(budgetRaw);
      spec.budget_period = byId('key-period').value;
    }
    return spec;
  }

  async create() {
    const errorBox = byId('keys-error');
    let spec;
    try {
      spec = this.spec();
    } catch (err) {
      showError(errorBox, err);
      byId('key-name').focus();
      return;
    }
    const button = byId('key-create');
    button.disabled = true;
    try {
      const key = await call(this.app.creds, '/admin/keys', {method: 'POST', body: spec});
      clearError(errorBox);
      byId('key-form').reset();
      this.showSecret(key, `Key "${key.name}" created`);
      await this.refresh();
    } catch (err) {
      showError(errorBox, err, 'Cannot create the key');
    } finally {
      button.disabled = false;
    }
  }

  async revoke(k) {
    if (!window.confirm(`Revoke "${k.name}" (${k.id})? Calls with it fail at once.`)) return;
    try {
      await call(this.app.creds, `/admin/keys/${encodeURIComponent(k.id)}/revoke`, {method: 'POST'});
      announce(`Key ${k.name} revoked.`);
      await this.refresh();
    } catch (err) {
      showError(byId('keys-error'), err, 'Cannot revoke the key');
    }
  }

  async rotate(k) {
    if (!window.confirm(`Give "${k.name}" a new secret? The old one stops working at once.`)) return;
    try {
      const key = await call(this.app.creds, `/admin/keys/${encodeURIComponent(k.id)}/rotate`, {method: 'POST'});
      this.showSecret(key, `Key "${key.name}" rotated`);
      await this.refresh();
    } catch (err) {
      showError(byId('keys-error'), err, 'Cannot rotate the key');
    }
  }

  showSecret(key, title) {
    byId('key-secret-title').textContent = title;
    byId('key-secret-value').value = key.key;
    const panel = byId('key-secret');
    panel.hidden = false;
    panel.focus();
    announce(`${title}. Copy the key now: it is shown only once.`);
  }

  dismissSecret() {
    byId('key-secret-value').value = '';
    byId('key-secret').hidden = true;
  }
}
