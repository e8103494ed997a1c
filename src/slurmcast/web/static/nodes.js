/**
 * nodes.js: the node grid (#node-grid). One button per node, coloured by state, with
 * its CPU, memory and GPU allocation; the reason (drained, down...) in its title and in
 * the detail panel shown on click, tap or focus. State comes from the `nodes` channel
 * (snapshot, then node_added / node_update / node_resource_change / node_removed); the
 * usage bars also follow each `metrics_update`'s per-node figures.
 * @module nodes
 */
import { clampPercent, flash, h, humanState, megabytes, naturalCompare, percent, stateClass } from './format.js';

/** Legend order, and the label of each state class. */
const LEGEND = [
  ['idle', 'Idle'], ['mixed', 'Mixed'], ['allocated', 'Allocated'], ['completing', 'Completing'],
  ['draining', 'Draining'], ['drained', 'Drained'], ['down', 'Down'], ['fail', 'Failed'],
  ['not-responding', 'Not responding'], ['maint', 'Maintenance'], ['reserved', 'Reserved'],
];

/** The state class of a node: its state, or `not-responding` when the flag says so. */
export function nodeStateClass(node) {
  const flags = Array.isArray(node.flags) ? node.flags.map((f) => String(f).toUpperCase()) : [];
  if (flags.includes('NOT_RESPONDING')) return 'not-responding';
  const cls = stateClass(node.state);
  return cls === 'failing' ? 'fail' : cls;
}

function usage(node) {
  const pct = (used, total) => (total > 0 ? (100 * used) / total : null);
  return {
    cpu: node.cpu_usage ?? pct(node.cpus?.allocated ?? 0, node.cpus?.total ?? 0),
    memory: node.memory_usage ?? pct(node.memory?.allocated_mb ?? 0, node.memory?.total_mb ?? 0),
    gpu: (node.gpus?.total ?? 0) > 0 ? (node.gpu_usage ?? pct(node.gpus.allocated ?? 0, node.gpus.total)) : null,
  };
}

export class NodeGrid {
  /**
   * @param {{grid: HTMLElement, legend: HTMLElement, detail: HTMLElement, summary: HTMLElement}} ui
   * @param {{onPartitions?: (names: string[]) => void, onFirstSnapshot?: () => void}} [hooks]
   */
  constructor(ui, hooks = {}) {
    this.ui = ui;
    this.hooks = hooks;
    /** @type {Map<string, {data: object, el: HTMLElement, usage: object}>} */
    this.nodes = new Map();
    this.selected = null;
    this.snapshotSeen = false;
    this.refused = null;
  }

  /** A message of the `nodes` channel (snapshot included). */
  handle(message) {
    switch (message.type) {
      case 'snapshot':
        this._replace(message.data ?? []);
        if (!this.snapshotSeen) {
          this.snapshotSeen = true;
          this.hooks.onFirstSnapshot?.();
        }
        break;
      case 'node_added':
      case 'node_update':
      case 'node_resource_change':
        if (message.data?.node) {
          const isNew = !this.nodes.has(message.data.node);
          this._set(message.data, message.type === 'node_update' && !isNew);
          if (isNew) this._reorder();
          this._afterChange();
        }
        break;
      case 'node_removed':
        this._remove(message.data?.node);
        this._afterChange();
        break;
      default:
        break;
    }
  }

  /** The subscription was refused (a token restricted to other channels). */
  refuse(message) {
    this.refused = message;
    this.ui.grid.replaceChildren(h('p', { class: 'placeholder', text: `Nodes unavailable: ${message}` }));
    if (!this.snapshotSeen) {
      this.snapshotSeen = true;
      this.hooks.onFirstSnapshot?.();
    }
  }

  /** Per-node usage from a metrics_update (`data.nodes`). */
  applyMetrics(nodes) {
    if (!Array.isArray(nodes)) return;
    for (const figures of nodes) {
      const entry = this.nodes.get(figures.node);
      if (!entry) continue;
      entry.usage = {
        cpu: figures.cpu_usage ?? entry.usage.cpu,
        memory: figures.memory_usage ?? entry.usage.memory,
        gpu: (entry.data.gpus?.total ?? 0) > 0 ? (figures.gpu_usage ?? entry.usage.gpu) : null,
      };
      this._paintUsage(entry);
      if (this.selected === figures.node) this._showDetail(figures.node);
    }
  }

  _replace(items) {
    const seen = new Set();
    for (const node of items) {
      if (!node?.node) continue;
      seen.add(node.node);
      this._set(node, false);
    }
    for (const name of [...this.nodes.keys()]) if (!seen.has(name)) this._remove(name);
    this._reorder();
    this._afterChange();
  }

  _set(node, flashOnStateChange) {
    let entry = this.nodes.get(node.node);
    const cls = nodeStateClass(node);
    if (!entry) {
      const el = h('button', {
        type: 'button', class: 'node', dataset: { node: node.node },
        on: {
          click: () => this._select(node.node),
          focus: () => this._select(node.node),
        },
      },
      h('span', { class: 'node-name', text: node.node }),
      h('span', { class: 'node-state' }),
      h('span', { class: 'node-bars', 'aria-hidden': 'true' },
        bar('cpu', 'CPU'), bar('mem', 'Mem'), bar('gpu', 'GPU')));
      entry = { data: node, el, usage: usage(node) };
      this.nodes.set(node.node, entry);
    }
    const changed = entry.el.dataset.state && entry.el.dataset.state !== cls;
    entry.data = node;
    entry.usage = usage(node);
    entry.el.dataset.state = cls;
    entry.el.querySelector('.node-state').textContent = cls === 'not-responding' ? 'Not responding' : humanState(node.state);
    this._paintUsage(entry);
    if (changed && flashOnStateChange) flash(entry.el);
    if (this.selected === node.node) this._showDetail(node.node);
  }

  _paintUsage(entry) {
    const { el, data, usage: u } = entry;
    for (const [key, value] of [['cpu', u.cpu], ['mem', u.memory], ['gpu', u.gpu]]) {
      const b = el.querySelector(`.bar-${key}`);
      b.hidden = key === 'gpu' && value === null;
      b.querySelector('.bar-fill').style.width = `${clampPercent(value)}%`;
    }
    el.title = describe(data, u).join('\n');
    el.setAttribute('aria-label', `${data.node}: ${describe(data, u).slice(1).join('; ')}`);
  }

  _remove(name) {
    const entry = this.nodes.get(name);
    if (!entry) return;
    entry.el.remove();
    this.nodes.delete(name);
    if (this.selected === name) {
      this.selected = null;
      this.ui.detail.replaceChildren(h('p', { class: 'muted', text: `${name} left the cluster.` }));
    }
  }

  _reorder() {
    const names = [...this.nodes.keys()].sort(naturalCompare);
    const grid = this.ui.grid;
    grid.querySelector('.placeholder')?.remove();
    for (const name of names) grid.append(this.nodes.get(name).el);
  }

  _afterChange() {
    const counts = new Map();
    const partitions = new Set();
    for (const { data, el } of this.nodes.values()) {
      counts.set(el.dataset.state, (counts.get(el.dataset.state) ?? 0) + 1);
      for (const p of data.partitions ?? []) partitions.add(p);
    }
    const known = new Set(LEGEND.map(([cls]) => cls));
    const items = LEGEND.filter(([cls]) => counts.has(cls) || ['idle', 'mixed', 'allocated', 'drained', 'down'].includes(cls))
      .map(([cls, label]) => [cls, label, counts.get(cls) ?? 0]);
    for (const [cls, n] of counts) if (!known.has(cls)) items.push([cls, humanState(cls.replace(/-/g, '_')), n]);
    this.ui.legend.replaceChildren(...items.map(([cls, label, n]) =>
      h('li', { class: 'legend-item', dataset: { state: cls } },
        h('span', { class: 'swatch', 'aria-hidden': 'true' }), `${label} `, h('span', { class: 'legend-count', text: n }))));
    this.ui.summary.textContent = `${this.nodes.size} node${this.nodes.size === 1 ? '' : 's'}`;
    this.hooks.onPartitions?.([...partitions].sort(naturalCompare));
  }

  _select(name) {
    this.selected = name;
    for (const { el } of this.nodes.values()) el.classList.toggle('selected', el.dataset.node === name);
    this._showDetail(name);
  }

  _showDetail(name) {
    const entry = this.nodes.get(name);
    if (!entry) return;
    const { data, usage: u } = entry;
    const cls = nodeStateClass(data);
    const rows = [
      ['State', `${humanState(data.state)}${(data.flags ?? []).length ? ` (${data.flags.join(', ')})` : ''}`],
      ['Reason', data.reason || '—'],
      ['Partitions', (data.partitions ?? []).join(', ') || '—'],
      ['CPUs', `${data.cpus?.allocated ?? '?'} / ${data.cpus?.total ?? '?'} allocated (${percent(u.cpu)})${data.cpu_load !== null && data.cpu_load !== undefined ? `, load ${Number(data.cpu_load).toFixed(1)}` : ''}`],
      ['Memory', `${megabytes(data.memory?.allocated_mb)} / ${megabytes(data.memory?.total_mb)} allocated (${percent(u.memory)})`],
    ];
    if ((data.gpus?.total ?? 0) > 0) rows.push(['GPUs', `${data.gpus.allocated} / ${data.gpus.total} allocated (${percent(u.gpu)})`]);
    this.ui.detail.replaceChildren(
      h('div', { class: 'node-detail-head' },
        h('strong', { text: data.node }),
        h('span', { class: 'state-pill', dataset: { state: cls }, text: cls === 'not-responding' ? 'Not responding' : humanState(data.state) })),
      h('dl', {}, ...rows.flatMap(([k, v]) => [h('dt', { text: k }), h('dd', { text: v })])));
  }
}

function bar(key, label) {
  return h('span', { class: `bar bar-${key}` },
    h('span', { class: 'bar-label', text: label }),
    h('span', { class: 'bar-track' }, h('span', { class: 'bar-fill' })));
}

function describe(data, u) {
  const lines = [`${data.node} — ${humanState(data.state)}${(data.flags ?? []).length ? ` [${data.flags.join(', ')}]` : ''}`];
  if (data.reason) lines.push(`Reason: ${data.reason}`);
  lines.push(`CPU ${data.cpus?.allocated ?? '?'}/${data.cpus?.total ?? '?'} (${percent(u.cpu)})`);
  lines.push(`Memory ${percent(u.memory)} of ${megabytes(data.memory?.total_mb)}`);
  if ((data.gpus?.total ?? 0) > 0) lines.push(`GPU ${data.gpus.allocated}/${data.gpus.total} (${percent(u.gpu)})`);
  return lines;
}
