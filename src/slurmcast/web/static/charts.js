/**
 * charts.js: cluster gauges (#gauges) and the uPlot time series (#chart-cpu,
 * #chart-memory, #chart-gpu, #chart-jobs). Both follow the `metrics` channel: its
 * snapshot gives the gauges at once, its history fills the charts, then every
 * `metrics_update` moves both.
 * @module charts
 */
import { clampPercent, h, megabytes, parseTime, percent } from './format.js';

/** Points kept per chart: two hours at the default 15 s interval. */
const MAX_POINTS = 480;
const CHART_HEIGHT = 170;

/** Chart id -> its series: [label, css colour variable, value of a metrics `cluster`]. */
const CHARTS = {
  cpu: { percent: true, series: [['CPU', '--chart-cpu', (c) => c.cpu_usage]] },
  memory: { percent: true, series: [['Memory', '--chart-memory', (c) => c.memory_usage]] },
  gpu: { percent: true, series: [['GPU', '--chart-gpu', (c) => ((c.gpus?.total ?? 0) > 0 ? c.gpu_usage : null)]] },
  jobs: {
    percent: false,
    series: [
      ['Running', '--chart-running', (c) => c.running_jobs],
      ['Pending', '--chart-pending', (c) => c.pending_jobs],
      ['Other', '--chart-other', (c) => {
        const other = (c.total_jobs ?? 0) - (c.running_jobs ?? 0) - (c.pending_jobs ?? 0);
        return Number.isFinite(other) ? Math.max(0, other) : null;
      }],
    ],
  },
};

function cssVar(name, fallback) {
  const value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return value || fallback;
}

export class Charts {
  /**
   * @param {{gauges: HTMLElement, range: HTMLElement, containers: Record<string, HTMLElement>}} ui
   * @param {{onNodes?: (nodes: object[]) => void}} [hooks]
   */
  constructor(ui, hooks = {}) {
    this.ui = ui;
    this.hooks = hooks;
    /** @type {{t: number, cluster: object}[]} sorted by t (seconds) */
    this.points = [];
    /** @type {Record<string, any>} uPlot instances */
    this.plots = {};
    this.uPlot = null;
    this._renderGauges(null);
    this._load();
    const scheme = matchMedia('(prefers-color-scheme: dark)');
    scheme.addEventListener('change', () => this._rebuild());
  }

  /** A message of the `metrics` channel (snapshot included). */
  handle(message) {
    if (message.type === 'snapshot') {
      const latest = Array.isArray(message.data) ? message.data[message.data.length - 1] : null;
      if (latest?.cluster) this._renderGauges(latest.cluster);
      if (latest?.nodes) this.hooks.onNodes?.(latest.nodes);
    } else if (message.type === 'metrics_update' && message.data?.cluster) {
      this._renderGauges(message.data.cluster);
      if (message.data.nodes) this.hooks.onNodes?.(message.data.nodes);
      this._add(message);
      this._redraw();
    }
  }

  /** Stored `metrics_update` messages (a history reply's publications). */
  addHistory(publications) {
    for (const m of publications ?? []) if (m.type === 'metrics_update' && m.data?.cluster) this._add(m);
    this._redraw();
  }

  refuse(reason) {
    this.ui.gauges.replaceChildren(h('p', { class: 'placeholder', text: `Metrics unavailable: ${reason}` }));
  }

  _add(message) {
    const ms = parseTime(message.timestamp);
    if (ms === null) return;
    const t = ms / 1000;
    const points = this.points;
    // Usually appended at the end; history may overlap live messages: keep one per time.
    let i = points.length;
    while (i > 0 && points[i - 1].t > t) i -= 1;
    if (i > 0 && points[i - 1].t === t) return;
    points.splice(i, 0, { t, cluster: message.data.cluster });
    if (points.length > MAX_POINTS) points.splice(0, points.length - MAX_POINTS);
  }

  _data(id) {
    const xs = this.points.map((p) => p.t);
    return [xs, ...CHARTS[id].series.map(([, , pick]) => this.points.map((p) => {
      const v = pick(p.cluster);
      return v === null || v === undefined || !Number.isFinite(Number(v)) ? null : Number(v);
    }))];
  }

  _redraw() {
    const n = this.points.length;
    if (n >= 2) {
      const minutes = Math.round((this.points[n - 1].t - this.points[0].t) / 60);
      this.ui.range.textContent = minutes >= 1 ? `last ${minutes} min` : 'just started';
    } else {
      this.ui.range.textContent = n ? 'collecting…' : '';
    }
    if (!this.uPlot) return;
    for (const id of Object.keys(CHARTS)) {
      const plot = this.plots[id];
      if (plot) plot.setData(this._data(id));
    }
  }

  async _load() {
    try {
      const module = await import('./vendor/uPlot.esm.js');
      this.uPlot = module.default;
    } catch {
      for (const el of Object.values(this.ui.containers)) {
        el.replaceChildren(h('p', { class: 'placeholder', text: 'Charts unavailable (uPlot not installed: make vendor).' }));
      }
      return;
    }
    this._rebuild();
    const observer = new ResizeObserver(() => {
      cancelAnimationFrame(this._resizeFrame);
      this._resizeFrame = requestAnimationFrame(() => this._resize());
    });
    for (const el of Object.values(this.ui.containers)) observer.observe(el);
  }

  _resize() {
    for (const [id, plot] of Object.entries(this.plots)) {
      const width = Math.floor(this.ui.containers[id].clientWidth);
      if (width > 0 && width !== plot.width) plot.setSize({ width, height: CHART_HEIGHT });
    }
  }

  _rebuild() {
    if (!this.uPlot) return;
    const text = cssVar('--muted', '#667085');
    const grid = cssVar('--chart-grid', 'rgba(127,127,127,0.15)');
    for (const [id, spec] of Object.entries(CHARTS)) {
      this.plots[id]?.destroy();
      const container = this.ui.containers[id];
      container.replaceChildren();
      const format = (v) => (v === null || v === undefined ? '—' : spec.percent ? `${v.toFixed(1)}%` : String(Math.round(v)));
      const opts = {
        width: Math.max(200, Math.floor(container.clientWidth) || 300),
        height: CHART_HEIGHT,
        cursor: { drag: { x: false, y: false }, points: { size: 6 } },
        legend: { live: true },
        scales: {
          x: { time: true },
          y: spec.percent ? { range: [0, 100] } : { range: (u, min, max) => [0, Math.max(5, Math.ceil(max * 1.1))] },
        },
        axes: [
          { stroke: text, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } },
          {
            stroke: text, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 },
            size: 54, values: (u, values) => values.map((v) => (spec.percent ? `${v}%` : String(v))),
          },
        ],
        series: [
          { value: (u, v) => (v === null || v === undefined ? '—' : new Date(v * 1000).toLocaleTimeString()) },
          ...spec.series.map(([label, colour], index) => ({
            label,
            stroke: cssVar(colour, '#2563eb'),
            fill: spec.series.length === 1 || index === 0 ? cssVar(`${colour}-fill`, 'transparent') : undefined,
            width: 2,
            spanGaps: false,
            points: { show: false },
            value: (u, v) => format(v),
          })),
        ],
      };
      this.plots[id] = new this.uPlot(opts, this._data(id), container);
    }
  }

  _renderGauges(cluster) {
    const c = cluster ?? {};
    const known = cluster !== null;
    const gauges = [
      gauge('CPU', known ? c.cpu_usage : null, `${c.cpus?.allocated ?? '–'} / ${c.cpus?.total ?? '–'} CPUs`, 'cpu'),
      gauge('Memory', known ? c.memory_usage : null,
        `${megabytes(c.memory_mb?.allocated)} / ${megabytes(c.memory_mb?.total)}`, 'memory'),
      gauge('GPU', known && (c.gpus?.total ?? 0) > 0 ? c.gpu_usage : null,
        (c.gpus?.total ?? 0) > 0 ? `${c.gpus.allocated} / ${c.gpus.total} GPUs` : 'no GPUs', 'gpu'),
      stat('Nodes', known ? String(c.total_nodes ?? '–') : '–',
        known ? `${c.idle_nodes ?? 0} idle · ${c.unavailable_nodes ?? 0} unavailable` : '', 'nodes',
        known && (c.unavailable_nodes ?? 0) > 0),
      stat('Jobs', known ? String(c.total_jobs ?? '–') : '–',
        known ? `${c.running_jobs ?? 0} running · ${c.pending_jobs ?? 0} pending` : '', 'jobs', false),
    ];
    this.ui.gauges.replaceChildren(...gauges);
  }
}

function gauge(label, value, detail, key) {
  const v = value === null || value === undefined ? null : Number(value);
  const fill = h('span', { class: 'gauge-fill' });
  fill.style.width = `${clampPercent(v)}%`;
  const level = v === null ? 'none' : v >= 90 ? 'high' : v >= 70 ? 'mid' : 'low';
  return h('div', { class: 'gauge', dataset: { gauge: key, level } },
    h('span', { class: 'gauge-label', text: label }),
    h('span', { class: 'gauge-value', text: v === null ? '—' : percent(v) }),
    h('span', {
      class: 'gauge-track', role: 'meter', 'aria-label': `${label} allocated`,
      'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-valuenow': v === null ? '0' : v.toFixed(1),
      'aria-valuetext': v === null ? 'unknown' : `${percent(v)}, ${detail}`,
    }, fill),
    h('span', { class: 'gauge-detail', text: detail }));
}

function stat(label, value, detail, key, warn) {
  return h('div', { class: 'gauge gauge-stat', dataset: { gauge: key, level: warn ? 'warn' : 'none' } },
    h('span', { class: 'gauge-label', text: label }),
    h('span', { class: 'gauge-value', text: value }),
    h('span', { class: 'gauge-detail', text: detail }));
}
