// The console's entry point: the page switcher (hash routes), the admin session box, and page start-up.

import {Credentials, call} from './api.js';
import {Catalog} from './catalog.js';
import {announce, byId, clearError, describeError, fill, h, showError} from './dom.js';
import {Keys} from './keys.js';
import {Playground} from './playground.js';
import {Usage} from './usage.js';

const PAGES = ['catalog', 'playground', 'keys', 'usage'];

class Console {
  constructor() {
    this.creds = new Credentials();
    this.models = new ModelsCache(this.creds);
    this.pages = {
      catalog: new Catalog(this),
      playground: new Playground(this),
      keys: new Keys(this),
      usage: new Usage(this),
    };
    this.current = null;
    this.creds.onChange(() => this.renderSession());
    window.addEventListener('hashchange', () => this.route());
    this.bindSignIn();
  }

  async start() {
    try {
      await this.creds.refresh();
    } catch (err) {
      announce(`Cannot read the session state: ${describeError(err)}`);
    }
    this.route();
  }

  /** Show the page named by the URL's hash (#catalog by default). */
  route() {
    const name = PAGES.includes(location.hash.slice(1)) ? location.hash.slice(1) : 'catalog';
    if (this.current === name) return;
    if (this.current) this.pages[this.current].hide();
    for (const page of PAGES) byId(`page-${page}`).hidden = page !== name;
    for (const link of document.querySelectorAll('.tabs a')) {
      if (link.dataset.page === name) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    }
    const previous = this.current;
    this.current = name;
    document.title = `${name[0].toUpperCase()}${name.slice(1)} · Shoal console`;
    this.pages[name].show();
    if (previous) byId('main').focus({preventScroll: true});
  }

  /** Open a page from code (e.g. "Try in playground"). */
  go(name) {
    location.hash = `#${name}`;
  }

  renderSession() {
    const s = this.creds.session;
    const label = byId('session-label');
    if (s.signed_in) label.textContent = 'Admin session';
    else if (!s.admin_api) label.textContent = 'Admin API off';
    else label.textContent = 'Not signed in';
    byId('sign-in-open').hidden = s.signed_in || !s.admin_api;
    byId('sign-out').hidden = !s.signed_in;
    if (this.current) this.pages[this.current].sessionChanged?.();
  }

  bindSignIn() {
    const dialog = byId('sign-in-dialog');
    const input = byId('sign-in-token');
    const error = byId('sign-in-error');
    byId('sign-in-open').addEventListener('click', () => this.openSignIn());
    byId('sign-in-close').addEventListener('click', () => dialog.close());
    byId('sign-in-form').addEventListener('submit', async (event) => {
      event.preventDefault();
      clearError(error);
      if (!input.value) {
        showError(error, new Error('Enter the admin token.'));
        input.focus();
        return;
      }
      const button = byId('sign-in-submit');
      button.disabled = true;
      try {
        await this.creds.signIn(input.value);
        input.value = '';
        dialog.close();
        announce('Signed in as admin.');
      } catch (err) {
        showError(error, err);
        input.select();
      } finally {
        button.disabled = false;
      }
    });
    dialog.addEventListener('close', () => { input.value = ''; });
    byId('sign-out').addEventListener('click', async () => {
      try {
        await this.creds.signOut();
        announce('Signed out.');
      } catch (err) {
        announce(`Sign-out failed: ${describeError(err)}`);
      }
    });
  }

  openSignIn() {
    clearError(byId('sign-in-error'));
    byId('sign-in-dialog').showModal();
    byId('sign-in-token').focus();
  }

  /** The notice admin pages show when there is no session. */
  gate(container) {
    const s = this.creds.session;
    if (s.signed_in) {
      container.hidden = true;
      return false;
    }
    const text = s.admin_api
      ? 'This page needs the admin session.'
      : 'The admin API is off: start the server with --admin-token (or SHOAL_ADMIN_TOKEN) to manage keys and see usage.';
    fill(container, h('p', {}, text),
      s.admin_api ? h('button', {type: 'button', class: 'primary', onclick: () => this.openSignIn()}, 'Sign in') : null);
    container.hidden = false;
    return true;
  }
}

/** GET /v1/models, shared by the pages (reloaded when the credentials change). */
class ModelsCache {
  constructor(creds) {
    this.creds = creds;
    this.promise = null;
    creds.onChange(() => { this.promise = null; });
  }

  /** The model list (the catalog entries as /v1/models returns them). */
  list() {
    if (!this.promise) {
      this.promise = call(this.creds, '/v1/models', {v1: true})
        .then((data) => data.data)
        .catch((err) => {
          this.promise = null;
          throw err;
        });
    }
    return this.promise;
  }
}

new Console().start();
