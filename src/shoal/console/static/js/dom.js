// Small DOM helpers and number formatting shared by every page. No framework, no globals.

/** Create an element: h('button', {class: 'x', onclick: fn}, 'text', child). Text is never parsed as HTML. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') el.addEventListener(name.slice(2), value);
    else if (name === 'dataset') Object.assign(el.dataset, value);
    else if (name === 'value') el.value = value;
    else if (name in el && typeof value !== 'string') el[name] = value;
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

/** Create an SVG element with attributes. */
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null) el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** The element with this id (throws when missing, so typos show at once). */
export function byId(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing element #${id}`);
  return el;
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const integer = new Intl.NumberFormat('en-US', {maximumFractionDigits: 0});

/** 12,345 */
export function num(value) {
  return value === null || value === undefined ? '–' : integer.format(value);
}

/** $0.0012 with enough digits for tiny amounts. */
export function usd(value) {
  if (value === null || value === undefined) return '–';
  if (value === 0) return '$0';
  const digits = value >= 1 ? 2 : Math.min(8, Math.max(2, 2 - Math.floor(Math.log10(value)) + 1));
  return '$' + value.toFixed(digits);
}

/** 123 ms / 1.2 s */
export function ms(value) {
  if (value === null || value === undefined) return '–';
  return value < 1000 ? `${Math.round(value)} ms` : `${(value / 1000).toFixed(2)} s`;
}

/** USD per 1M tokens, as a price. */
export function perMillion(value) {
  return value === null || value === undefined ? '–' : `$${Number(value).toFixed(value < 0.1 ? 3 : 2)}`;
}

/** Put a short message in the polite live region (screen readers read it). */
export function announce(text) {
  const region = byId('announcer');
  region.textContent = '';
  window.setTimeout(() => { region.textContent = text; }, 30);
}

/** Show an error (an ApiError or any Error) in a page's alert region. */
export function showError(region, err, prefix = '') {
  const text = describeError(err);
  fill(region, h('p', {}, prefix ? `${prefix}: ${text}` : text));
  region.hidden = false;
}

/** Clear a page's alert region. */
export function clearError(region) {
  region.replaceChildren();
  region.hidden = true;
}

/** A readable sentence for an error from the API, the network or the page. */
export function describeError(err) {
  if (!err) return 'Unknown error.';
  if (err.name === 'AbortError') return 'Stopped.';
  if (typeof err.status === 'number') {
    const what = [err.code, `HTTP ${err.status}`].filter(Boolean).join(', ');
    return `${err.message} (${what})`;
  }
  if (err instanceof TypeError && /fetch|network/i.test(err.message)) return `Cannot reach the server: ${err.message}`;
  return err.message || String(err);
}

/** Copy text to the clipboard; true when it worked. */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    return false;
  }
}
