/**
 * format.js: small pure helpers shared by the dashboard's modules: building DOM
 * elements without innerHTML, and turning protocol values into readable text.
 * @module format
 */

/**
 * Create an element. `attrs` keys: `class`, `text`, `dataset` (object), `on` (object of
 * listeners), `hidden`, and any other attribute (set with setAttribute; `null`/`false`
 * skips it). Children are nodes or strings.
 * @param {string} tag
 * @param {Record<string, any>} [attrs]
 * @param {...(Node|string|null|undefined|false)} children
 * @returns {HTMLElement}
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = String(value);
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key === 'on') for (const [type, fn] of Object.entries(value)) el.addEventListener(type, fn);
    else if (key === 'hidden') el.hidden = Boolean(value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child);
  }
  return el;
}

/** @param {Element} el @param {...(Node|string)} children Replace every child of `el`. */
export function replaceChildren(el, ...children) {
  el.replaceChildren(...children.filter((c) => c !== null && c !== undefined && c !== false));
}

/** Final Slurm job states: a job in one of these has left the queue. */
export const FINAL_STATES = [
  'COMPLETED', 'FAILED', 'CANCELLED', 'TIMEOUT', 'OUT_OF_MEMORY', 'NODE_FAIL', 'PREEMPTED',
  'BOOT_FAIL', 'DEADLINE', 'SPECIAL_EXIT', 'REVOKED',
];

/** Job states offered by the state filter (queue states first, then final ones). */
export const JOB_STATES = ['PENDING', 'RUNNING', 'SUSPENDED', 'COMPLETING', ...FINAL_STATES];

/** @param {string|null|undefined} status */
export function isFinal(status) {
  return FINAL_STATES.includes(String(status ?? '').toUpperCase());
}

/** `OUT_OF_MEMORY` -> `Out of memory`. */
export function humanState(state) {
  if (!state) return '—';
  const s = String(state).toLowerCase().replace(/_/g, ' ');
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/** A CSS-friendly class for a state: `NOT_RESPONDING` -> `not-responding`. */
export function stateClass(state) {
  return String(state ?? 'unknown').toLowerCase().replace(/[^a-z0-9]+/g, '-');
}

/** @param {number|null|undefined} value @param {number} [digits=0] `12.3` -> `12%`. */
export function percent(value, digits = 0) {
  if (value === null || value === undefined || Number.isNaN(Number(value))) return '—';
  return `${Number(value).toFixed(digits)}%`;
}

/** Clamp a percentage to 0..100 (for bar widths). */
export function clampPercent(value) {
  const v = Number(value);
  if (!Number.isFinite(v)) return 0;
  return Math.max(0, Math.min(100, v));
}

/** Seconds as the two largest units: `9015` -> `2h 30m`, `52` -> `52s`. */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(Number(seconds))) return '—';
  let s = Math.max(0, Math.floor(Number(seconds)));
  const units = [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]];
  const parts = [];
  for (const [label, size] of units) {
    if (s >= size || (label === 's' && parts.length === 0)) {
      parts.push(`${Math.floor(s / size)}${label}`);
      s %= size;
    }
    if (parts.length === 2) break;
  }
  return parts.join(' ');
}

/** Megabytes, readable: `1843` -> `1.8 GB`. */
export function megabytes(mb) {
  if (mb === null || mb === undefined || !Number.isFinite(Number(mb))) return '—';
  const v = Number(mb);
  if (v >= 1024 * 1024) return `${(v / 1024 / 1024).toFixed(1)} TB`;
  if (v >= 1024) return `${(v / 1024).toFixed(v >= 10240 ? 0 : 1)} GB`;
  return `${Math.round(v)} MB`;
}

/** @param {string|null|undefined} iso @returns {number|null} epoch milliseconds */
export function parseTime(iso) {
  if (!iso) return null;
  const t = Date.parse(iso);
  return Number.isNaN(t) ? null : t;
}

/** A time of day (or a date and time when not today), in the browser's locale. */
export function clockTime(iso) {
  const t = typeof iso === 'number' ? iso : parseTime(iso);
  if (t === null) return '';
  const d = new Date(t);
  const today = new Date();
  const sameDay = d.toDateString() === today.toDateString();
  return sameDay
    ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' })
    : d.toLocaleString([], { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
}

/** `5 s ago`, `3 min ago`, ... for a past moment (milliseconds or ISO). */
export function ago(time, now = Date.now()) {
  const t = typeof time === 'number' ? time : parseTime(time);
  if (t === null) return '';
  const s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 5) return 'just now';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

/** Natural order of names (`node2` before `node10`). */
export const naturalCompare = new Intl.Collator(undefined, { numeric: true, sensitivity: 'base' }).compare;

/**
 * A broadcast's `data` as text: a string as is, else its `text`, `message`, `title` (or
 * `title: text`), else compact JSON.
 * @param {any} data
 * @returns {{title: string|null, text: string}}
 */
export function broadcastText(data) {
  if (data === null || data === undefined) return { title: null, text: '' };
  if (typeof data === 'string' || typeof data === 'number' || typeof data === 'boolean') {
    return { title: null, text: String(data) };
  }
  const pick = (value) => (typeof value === 'string' && value.trim() ? value : null);
  const title = pick(data.title);
  const text = pick(data.text) ?? pick(data.message) ??
    (typeof data.message === 'object' && data.message !== null ? broadcastText(data.message).text : null);
  if (text) return { title, text };
  if (title) return { title: null, text: title };
  try {
    return { title: null, text: JSON.stringify(data) };
  } catch {
    return { title: null, text: String(data) };
  }
}

/** Debounce: call `fn` once `ms` after the last call. */
export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

/** How long an element keeps the `flash` class after a change. */
export const FLASH_MS = 1500;

/** Give `el` the class `flash` for FLASH_MS (restarting its animation if it has it). */
export function flash(el) {
  el.classList.remove('flash');
  void el.offsetWidth; // restart the CSS animation
  el.classList.add('flash');
  clearTimeout(el._flashTimer);
  el._flashTimer = setTimeout(() => el.classList.remove('flash'), FLASH_MS);
}
