// Small SVG charts drawn here (no library, nothing fetched): stacked columns over time and
// horizontal bars by group. Colours come from the stylesheet (.series-N classes).

import {h, svg} from './dom.js';

const DEFAULT_W = 640;
const H = 220;
const PAD = {top: 12, right: 12, bottom: 28, left: 64};
const TICKS = 4;

/** A round axis maximum: TICKS steps of 1, 2, 2.5, 3, 4, 5, 6 or 8 times a power of ten. */
function niceMax(value) {
  if (value <= 0) return 1;
  const raw = value / TICKS;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 3, 4, 5, 6, 8, 10].find((s) => s * power >= raw);
  return step * power * TICKS;
}

/** Drawing width: the container's width in CSS pixels (so text keeps its size), else a default. */
function widthOf(width) {
  return Math.max(280, Math.round(width || DEFAULT_W));
}

/**
 * Stacked columns. categories: labels; series: [{name, values}]; format: value -> text.
 * Returns a figure with the SVG (role img, summary label) and a legend.
 */
export function columns({categories, series, format, title, width}) {
  const W = widthOf(width);
  const totals = categories.map((_, i) => series.reduce((sum, s) => sum + (s.values[i] || 0), 0));
  const grand = totals.reduce((a, b) => a + b, 0);
  const max = niceMax(Math.max(0, ...totals));
  const innerW = W - PAD.left - PAD.right;
  const innerH = H - PAD.top - PAD.bottom;
  const slot = innerW / Math.max(1, categories.length);
  const barW = Math.max(2, Math.min(48, slot * 0.7));
  const y = (v) => PAD.top + innerH - (v / max) * innerH;
  const root = svg('svg', {
    viewBox: `0 0 ${W} ${H}`, class: 'chart-svg', role: 'img', 'data-total': grand,
    'aria-label': `${title}: total ${format(grand)} over ${categories.length} periods`,
  });
  for (let t = 0; t <= TICKS; t += 1) {
    const v = (max * t) / TICKS;
    root.append(svg('line', {x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v), class: 'grid'}));
    root.append(svg('text', {x: PAD.left - 6, y: y(v) + 4, class: 'axis', 'text-anchor': 'end'}, format(v)));
  }
  const every = Math.ceil(categories.length / Math.max(2, Math.floor(W / 70)));
  categories.forEach((label, i) => {
    const x = PAD.left + slot * i + (slot - barW) / 2;
    let base = 0;
    series.forEach((s, k) => {
      const v = s.values[i] || 0;
      if (v > 0) {
        const rect = svg('rect', {x, y: y(base + v), width: barW, height: Math.max(0.5, y(base) - y(base + v)), class: `series-${k}`});
        rect.append(svg('title', {}, `${label} · ${s.name}: ${format(v)}`));
        root.append(rect);
      }
      base += v;
    });
    if (i % every === 0) {
      root.append(svg('text', {x: x + barW / 2, y: H - 8, class: 'axis', 'text-anchor': 'middle'}, label));
    }
  });
  return figure(root, series.map((s) => s.name));
}

/** Horizontal bars: rows [{label, values: [..per series]}]. */
export function bars({rows, series, format, title, width}) {
  const W = widthOf(width);
  const rowH = 26;
  const labelW = Math.min(180, Math.round(W * 0.32));
  const height = Math.max(1, rows.length) * rowH + 8;
  const totals = rows.map((r) => r.values.reduce((a, b) => a + b, 0));
  const max = Math.max(...totals, 0) || 1;
  const grand = totals.reduce((a, b) => a + b, 0);
  const root = svg('svg', {
    viewBox: `0 0 ${W} ${height}`, class: 'chart-svg', role: 'img', 'data-total': grand,
    'aria-label': `${title}: ${rows.map((r, i) => `${r.label} ${format(totals[i])}`).join('; ') || 'no data'}`,
  });
  const innerW = W - labelW - 90;
  rows.forEach((row, i) => {
    const top = 4 + i * rowH;
    root.append(svg('text', {x: labelW - 8, y: top + 16, class: 'axis label', 'text-anchor': 'end'}, truncate(row.label, Math.floor(labelW / 7))));
    let x = labelW;
    row.values.forEach((v, k) => {
      const w = (v / max) * innerW;
      if (w > 0) {
        const rect = svg('rect', {x, y: top + 3, width: Math.max(0.5, w), height: rowH - 8, class: `series-${k}`});
        rect.append(svg('title', {}, `${row.label} · ${series[k]}: ${format(v)}`));
        root.append(rect);
      }
      x += w;
    });
    root.append(svg('text', {x: x + 6, y: top + 16, class: 'axis'}, format(totals[i])));
  });
  return figure(root, series);
}

function figure(root, names) {
  const legend = names.length > 1
    ? h('ul', {class: 'legend', 'aria-hidden': 'true'}, ...names.map((n, k) => h('li', {}, h('span', {class: `swatch series-${k}`}), n)))
    : null;
  return h('figure', {class: 'figure'}, root, legend);
}

function truncate(text, n) {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}
