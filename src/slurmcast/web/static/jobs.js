/**
 * jobs.js: the live jobs table (#jobs-table) and its filters.
 *
 * Filters are the server's: changing one updates the `jobs` subscription in place
 * (`sub.update()`: one `subscribe` with the new `filter` and `snapshot: true`, which the
 * server takes as a replacement), so the table is rebuilt from what the server sends
 * (docs/protocol.md, "Filters" and "Snapshots"). The snapshot holds the jobs
 * still queued; finished jobs (a `job_update` with a final status) stay in the
 * table, the newest MAX_FINISHED of them, and the recently finished ones are
 * fetched from the channel's history with the same filter.
 * @module jobs
 */
import {
  FINAL_STATES, JOB_STATES, debounce, duration, flash, h, isFinal, megabytes,
  naturalCompare, parseTime, stateClass,
} from './format.js';

/** Finished jobs kept in the table (oldest finished dropped first). */
const MAX_FINISHED = 200;
/** Stored messages asked for when filling in recently finished jobs. */
const FINISHED_HISTORY = 100;
const QUEUE_STATES = ['PENDING', 'RUNNING', 'SUSPENDED', 'COMPLETING', 'CONFIGURING', 'REQUEUED', 'RESIZING', 'STOPPED'];

/** Sort rank of states: running first, then pending, then the rest, then finished. */
const STATE_RANK = new Map(
  ['RUNNING', 'COMPLETING', 'CONFIGURING', 'SUSPENDED', 'PENDING', 'REQUEUED', 'FAILED', 'OUT_OF_MEMORY',
    'NODE_FAIL', 'TIMEOUT', 'CANCELLED', 'PREEMPTED', 'COMPLETED'].map((s, i) => [s, i]));

const COLUMNS = [
  { key: 'id', label: 'ID', value: (j) => j.job_id, compare: naturalCompare },
  { key: 'name', label: 'Name', value: (j) => j.name ?? '', compare: naturalCompare },
  { key: 'user', label: 'User', value: (j) => j.user ?? '', compare: naturalCompare },
  { key: 'partition', label: 'Partition', value: (j) => j.partition ?? '', compare: naturalCompare },
  { key: 'state', label: 'State', value: (j) => STATE_RANK.get(j.status) ?? 50, compare: (a, b) => a - b },
  { key: 'nodes', label: 'Nodes', value: (j) => (j.nodes ?? []).join(','), compare: naturalCompare },
  { key: 'gpus', label: 'GPUs', value: (j) => Number(j.resources?.gpus ?? 0), compare: (a, b) => a - b, numeric: true },
  { key: 'elapsed', label: 'Elapsed', value: null, compare: (a, b) => a - b, numeric: true },
  { key: 'details', label: 'Reason / result', value: null, compare: null },
];

export class JobsTable {
  /**
   * @param {{table: HTMLTableElement, empty: HTMLElement, count: HTMLElement, note: HTMLElement,
   *   myJobs: HTMLInputElement, myJobsLabel: HTMLElement, user: HTMLInputElement,
   *   partition: HTMLSelectElement, state: HTMLSelectElement, form: HTMLFormElement}} ui
   * @param {object} deps
   * @param {import('./slurmcast.js').SlurmcastClient} deps.client
   * @param {(handler: (m: object) => void) => (m: object) => void} deps.wrap  routes resync/broadcast
   * @param {() => void} [deps.onFirstSnapshot]
   * @param {(job: object) => void} [deps.onFinal]  a live job_update with a final status
   * @param {(message: object) => void} [deps.onHistoryMessage]  other messages found in history
   */
  constructor(ui, deps) {
    this.ui = ui;
    this.deps = deps;
    this.client = deps.client;
    /** @type {Map<string, {job: object, tr: HTMLTableRowElement, finished: boolean}>} */
    this.rows = new Map();
    /** job ids of finished rows, oldest first */
    this.finishedOrder = [];
    this.sort = { key: 'id', dir: 'desc' };
    this.identity = { user: null, isAdmin: false };
    this.sub = null;
    this.generation = 0;
    this.snapshotSeen = false;
    this.awaitingSnapshot = true;
    /** ms the source's clock is ahead of ours (the simulator runs faster than time) */
    this.skew = 0;
    this._sortQueued = false;
    this._partitions = new Set();
    this.handler = deps.wrap((m) => this.handle(m));
    this._buildHead();
    this._buildStateOptions();
    this._bindFilters();
    this._tick = setInterval(() => this._refreshElapsed(), 1000);
  }

  /**
   * Who is looking: "my jobs" is on by default for a signed-in user who is not an admin.
   * @param {{user: string|null, isAdmin: boolean}} identity
   * @param {{initial?: boolean}} [options]
   */
  setIdentity(identity, { initial = false } = {}) {
    const changed = identity.user !== this.identity.user || identity.isAdmin !== this.identity.isAdmin;
    this.identity = identity;
    const { myJobs, myJobsLabel } = this.ui;
    myJobs.disabled = !identity.user;
    myJobsLabel.title = identity.user ? `Only ${identity.user}'s jobs` : 'Sign in to follow your own jobs';
    myJobsLabel.classList.toggle('disabled', !identity.user);
    if (initial) myJobs.checked = Boolean(identity.user) && !identity.isAdmin;
    if (!identity.user) myJobs.checked = false;
    this._syncUserField();
    if (changed && !initial && this.sub) this._subscribe();
    for (const row of this.rows.values()) this._paint(row);
  }

  /** Start following the jobs channel. */
  start() {
    this._subscribe();
  }

  /** Partition names for the partition filter (from the nodes). */
  setPartitions(names) {
    let added = false;
    for (const name of names) {
      if (!this._partitions.has(name)) {
        this._partitions.add(name);
        added = true;
      }
    }
    if (!added) return;
    const select = this.ui.partition;
    const current = select.value;
    const options = [...this._partitions].sort(naturalCompare).map((p) => h('option', { value: p, text: p }));
    select.replaceChildren(h('option', { value: '', text: 'Any partition' }), ...options);
    select.value = current;
  }

  /** The subscription was refused, or its filter was. */
  refuse(error) {
    const { note } = this.ui;
    note.hidden = false;
    note.textContent = error.code === 'invalid_filter'
      ? `The server refused this filter: ${error.message}`
      : `Jobs unavailable: ${error.message}`;
    note.dataset.kind = 'error';
    this.ui.empty.hidden = this.rows.size > 0;
    this.ui.empty.textContent = 'No jobs to show.';
    if (!this.snapshotSeen) {
      this.snapshotSeen = true;
      this.deps.onFirstSnapshot?.();
    }
  }

  /** A message of the `jobs` channel (snapshot included; resync and broadcast are routed away). */
  handle(message) {
    if (message.type === 'snapshot') {
      this._onSnapshot(message.data ?? []);
      return;
    }
    if (message.type !== 'job_submitted' && message.type !== 'job_update') return;
    const job = message.data;
    if (!job?.job_id) return;
    this._learnClock(job);
    const previous = this.rows.get(job.job_id);
    const unconfirmed = job.final_state_confirmed === false;
    const final = isFinal(job.status) || unconfirmed;
    this._set(job, { finished: final, flashIt: !previous || previous.job.status !== job.status || unconfirmed });
    if (final && !unconfirmed) this.deps.onFinal?.(job);
    this._afterChange();
  }

  // -- subscription ---------------------------------------------------------------

  _filter() {
    const filter = {};
    const { myJobs, user, partition, state } = this.ui;
    const who = myJobs.checked && this.identity.user ? this.identity.user : user.value.trim();
    if (who) filter.user = who;
    if (partition.value) filter.partition = partition.value;
    const statuses = this._statuses();
    if (statuses) filter.status = statuses.length === 1 ? statuses[0] : statuses;
    return Object.keys(filter).length ? filter : null;
  }

  /** @returns {string[]|null} the states the state filter allows (null: any) */
  _statuses() {
    const value = this.ui.state.value;
    if (!value) return null;
    if (value === 'active') return QUEUE_STATES;
    if (value === 'finished') return FINAL_STATES;
    return [value];
  }

  /** Subscribe, or update the subscription, with the filters' current values; nothing to do
   * if they did not change. */
  _subscribe({ force = false } = {}) {
    const filter = this._filter();
    const key = JSON.stringify(filter);
    if (!force && this.sub && key === this.filterKey) return;
    this.filterKey = key;
    // Recently finished jobs come from history at first, and when the state filter asks
    // for finished ones; otherwise the finished rows kept that fit the filter stay. (Each
    // history answer costs rate-limit tokens: filter changes stay quick.)
    const statuses = this._statuses();
    this._needFinished = !this.sub || Boolean(statuses?.some((st) => FINAL_STATES.includes(st)));
    this.generation += 1;
    const previous = this.filter;
    this.filter = filter;
    this.awaitingSnapshot = true;
    this.ui.note.hidden = true;
    this.ui.table.setAttribute('aria-busy', 'true');
    const options = filter ? { snapshot: true, filter } : { snapshot: true };
    if (this.sub?.active) {
      // One request instead of unsubscribe + subscribe; the new snapshot rebuilds the table.
      const generation = this.generation;
      this.sub.update(options).catch((error) => {
        if (generation !== this.generation || error.code === 'closed') return;
        // Refused (an invalid filter): the server goes on with the previous one.
        this.filter = previous;
        this.awaitingSnapshot = false;
        this.ui.table.removeAttribute('aria-busy');
        this.refuse(error);
        this._afterChange();
      });
      return;
    }
    // First time, or the server dropped the subscription: a new one.
    this.sub?.unsubscribe();
    this.sub = this.client.subscribe('jobs', this.handler, options);
    this.sub.ready.catch(() => {}); // reported through the client's onError
  }

  _onSnapshot(items) {
    // Queued jobs come from the snapshot; finished rows stay if they fit the filter.
    const inSnapshot = new Set();
    for (const job of items) {
      if (!job?.job_id) continue;
      inSnapshot.add(job.job_id);
      this._learnClock(job);
    }
    for (const [id, row] of [...this.rows]) {
      if (inSnapshot.has(id)) continue;
      if (!row.finished || !this._matches(row.job)) this._removeRow(id);
    }
    for (const job of items) if (job?.job_id) this._set(job, { finished: false, flashIt: false });
    this.awaitingSnapshot = false;
    this.ui.table.removeAttribute('aria-busy');
    this._sortNow();
    this._afterChange();
    if (!this.snapshotSeen) {
      this.snapshotSeen = true;
      this.deps.onFirstSnapshot?.();
    }
    if (this._needFinished) {
      this._needFinished = false;
      this._loadFinished();
    }
  }

  /** Recently finished jobs, from the channel's history, with the same filter. */
  async _loadFinished() {
    const statuses = this._statuses();
    const finals = statuses ? statuses.filter((s) => FINAL_STATES.includes(s)) : FINAL_STATES;
    if (!finals.length) return;
    const generation = this.generation;
    const filter = { ...(this.filter ?? {}), status: finals };
    let reply;
    try {
      reply = await this.client.history('jobs', { limit: FINISHED_HISTORY, filter });
    } catch {
      return; // not essential: live updates still arrive
    }
    if (generation !== this.generation) return;
    let added = false;
    for (const message of reply.publications ?? []) {
      if (message.type === 'job_update' && message.data?.job_id && isFinal(message.data.status)) {
        if (this.rows.get(message.data.job_id)?.finished) continue;
        this._learnClock(message.data);
        this._set(message.data, { finished: true, flashIt: false });
        added = true;
      } else if (message.type !== 'job_update' && message.type !== 'job_submitted') {
        this.deps.onHistoryMessage?.(message);
      }
    }
    if (added) {
      this._sortNow();
      this._afterChange();
    }
  }

  /** Client-side check of a kept finished row against the current filter. */
  _matches(job) {
    const f = this.filter;
    if (!f) return true;
    const any = (want, have) => (Array.isArray(want) ? want : [want])
      .some((w) => String(w).toUpperCase() === String(have ?? '').toUpperCase());
    if (f.user && !any(f.user, job.user)) return false;
    if (f.partition && !any(f.partition, job.partition)) return false;
    if (f.status && !any(f.status, job.status)) return false;
    return true;
  }

  // -- rows -------------------------------------------------------------------------

  _set(job, { finished, flashIt }) {
    let row = this.rows.get(job.job_id);
    if (!row) {
      const tr = h('tr', { dataset: { jobId: job.job_id } });
      for (const column of COLUMNS) tr.append(h('td', { class: `col-${column.key}` }));
      row = { job, tr, finished: false };
      this.rows.set(job.job_id, row);
      this.ui.table.tBodies[0].append(tr);
    }
    const wasFinished = row.finished;
    row.job = job;
    row.finished = finished;
    if (finished && !wasFinished) {
      this.finishedOrder.push(job.job_id);
      this._trimFinished();
    } else if (!finished && wasFinished) {
      this.finishedOrder = this.finishedOrder.filter((id) => id !== job.job_id);
    }
    this._paint(row);
    if (flashIt) flash(row.tr);
    this._queueSort();
  }

  _removeRow(id) {
    const row = this.rows.get(id);
    if (!row) return;
    row.tr.remove();
    this.rows.delete(id);
    if (row.finished) this.finishedOrder = this.finishedOrder.filter((x) => x !== id);
  }

  _trimFinished() {
    while (this.finishedOrder.length > MAX_FINISHED) {
      const id = this.finishedOrder.shift();
      const row = this.rows.get(id);
      if (row) {
        row.tr.remove();
        this.rows.delete(id);
      }
    }
  }

  _paint(row) {
    const { job, tr, finished } = row;
    const unconfirmed = job.final_state_confirmed === false;
    tr.dataset.state = job.status ?? 'UNKNOWN';
    tr.dataset.user = job.user ?? '';
    tr.dataset.finished = String(finished);
    tr.classList.toggle('finished', finished);
    tr.classList.toggle('mine', Boolean(this.identity.user) && job.user === this.identity.user);
    const cells = tr.cells;
    cells[0].textContent = job.job_id;
    setText(cells[1], job.name ?? '');
    cells[1].title = job.name ?? '';
    cells[2].textContent = job.user ?? '';
    cells[3].textContent = job.partition ?? '';
    // Slurm's own state names (as squeue and sacct print them), coloured by kind.
    const pill = h('span', { class: 'state-pill', dataset: { state: stateClass(job.status) }, text: job.status ?? 'UNKNOWN' });
    cells[4].replaceChildren(pill);
    if (unconfirmed) {
      cells[4].append(h('span', { class: 'muted small', text: ' left the queue, final state unknown' }));
    }
    const nodes = job.nodes ?? [];
    cells[5].textContent = nodes.length > 3 ? `${nodes.slice(0, 3).join(', ')} +${nodes.length - 3}` : nodes.join(', ');
    cells[5].title = nodes.join(', ');
    const gpus = Number(job.resources?.gpus ?? 0);
    cells[6].textContent = gpus > 0 ? String(gpus) : '–';
    this._paintElapsed(row);
    cells[8].replaceChildren(...details(job, finished));
  }

  _paintElapsed(row) {
    const cell = row.tr.cells[7];
    const { seconds, waiting } = this._elapsed(row);
    const text = seconds === null ? '' : waiting ? `waiting ${duration(seconds)}` : duration(seconds);
    if (cell.textContent !== text) cell.textContent = text;
    cell.classList.toggle('muted', waiting);
  }

  /** @returns {{seconds: number|null, waiting: boolean}} */
  _elapsed(row) {
    const job = row.job;
    const start = parseTime(job.start_time);
    const end = parseTime(job.end_time);
    if (row.finished) {
      if (job.efficiency?.elapsed_s !== undefined && job.efficiency?.elapsed_s !== null) {
        return { seconds: job.efficiency.elapsed_s, waiting: false };
      }
      return { seconds: start !== null && end !== null ? (end - start) / 1000 : null, waiting: false };
    }
    const now = Date.now() + this.skew;
    if (start !== null && job.status !== 'PENDING') return { seconds: Math.max(0, (now - start) / 1000), waiting: false };
    const submit = parseTime(job.submit_time);
    if (submit !== null) return { seconds: Math.max(0, (now - submit) / 1000), waiting: true };
    return { seconds: null, waiting: false };
  }

  _refreshElapsed() {
    if (document.hidden) return;
    for (const row of this.rows.values()) if (!row.finished) this._paintElapsed(row);
    if (this.sort.key === 'elapsed') this._queueSort();
  }

  /** The simulator's clock runs ahead of real time: follow the latest time it reported. */
  _learnClock(job) {
    let latest = null;
    for (const field of ['submit_time', 'start_time', 'end_time']) {
      const t = parseTime(job[field]);
      if (t !== null && (latest === null || t > latest)) latest = t;
    }
    if (latest !== null) this.skew = Math.max(this.skew, latest - Date.now());
  }

  // -- sorting ----------------------------------------------------------------------

  _buildHead() {
    const tr = this.ui.table.tHead.rows[0];
    tr.replaceChildren();
    for (const column of COLUMNS) {
      const th = h('th', { scope: 'col', class: `col-${column.key}`, dataset: { key: column.key } });
      if (column.compare) {
        const button = h('button', { type: 'button', class: 'sort-button', dataset: { key: column.key } },
          column.label, h('span', { class: 'sort-indicator', 'aria-hidden': 'true' }));
        button.addEventListener('click', () => this._sortBy(column.key));
        th.append(button);
      } else {
        th.textContent = column.label;
      }
      tr.append(th);
    }
    this._paintSortHeaders();
  }

  _sortBy(key) {
    if (this.sort.key === key) this.sort.dir = this.sort.dir === 'asc' ? 'desc' : 'asc';
    else this.sort = { key, dir: ['id', 'elapsed', 'gpus'].includes(key) ? 'desc' : 'asc' };
    this._paintSortHeaders();
    this._sortNow();
  }

  _paintSortHeaders() {
    for (const th of this.ui.table.tHead.rows[0].cells) {
      const active = th.dataset.key === this.sort.key;
      if (active) th.setAttribute('aria-sort', this.sort.dir === 'asc' ? 'ascending' : 'descending');
      else th.removeAttribute('aria-sort');
      const indicator = th.querySelector('.sort-indicator');
      if (indicator) indicator.textContent = active ? (this.sort.dir === 'asc' ? '▲' : '▼') : '';
    }
  }

  _queueSort() {
    if (this._sortQueued) return;
    this._sortQueued = true;
    setTimeout(() => this._sortNow(), 100);
  }

  _sortNow() {
    this._sortQueued = false;
    const column = COLUMNS.find((c) => c.key === this.sort.key) ?? COLUMNS[0];
    const sign = this.sort.dir === 'asc' ? 1 : -1;
    const key = column.key === 'elapsed' ? (row) => this._elapsed(row).seconds ?? -1 : (row) => column.value(row.job);
    const rows = [...this.rows.values()].map((row) => ({ row, k: key(row) }));
    rows.sort((a, b) => sign * column.compare(a.k, b.k) || naturalCompare(b.row.job.job_id, a.row.job.job_id));
    const tbody = this.ui.table.tBodies[0];
    // Move only what is out of place: rows keep focus, selection and animations.
    let cursor = tbody.firstElementChild;
    for (const { row } of rows) {
      if (row.tr === cursor) cursor = cursor.nextElementSibling;
      else tbody.insertBefore(row.tr, cursor);
    }
  }

  // -- filters ----------------------------------------------------------------------

  _buildStateOptions() {
    const select = this.ui.state;
    select.replaceChildren(
      h('option', { value: '', text: 'Any state' }),
      h('option', { value: 'active', text: 'In the queue' }),
      h('option', { value: 'finished', text: 'Finished' }),
      h('optgroup', { label: 'State' }, ...JOB_STATES.map((s) => h('option', { value: s, text: s }))));
  }

  _bindFilters() {
    const { form, myJobs, user, partition, state } = this.ui;
    const resubscribe = () => this._subscribe();
    const typed = debounce(resubscribe, 400);
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      resubscribe();
    });
    myJobs.addEventListener('change', () => {
      this._syncUserField();
      resubscribe();
    });
    user.addEventListener('input', typed);
    user.addEventListener('search', typed); // the clear button of a search field
    user.addEventListener('change', resubscribe); // leaving the field applies it at once
    partition.addEventListener('change', resubscribe);
    state.addEventListener('change', resubscribe);
  }

  _syncUserField() {
    const { myJobs, user } = this.ui;
    if (myJobs.checked && this.identity.user) {
      if (!user.disabled) this._typedUser = user.value;
      user.value = this.identity.user;
      user.disabled = true;
    } else if (user.disabled) {
      user.disabled = false;
      user.value = this._typedUser ?? '';
    }
  }

  _afterChange() {
    let queued = 0;
    let finished = 0;
    for (const row of this.rows.values()) {
      if (row.finished) finished += 1;
      else queued += 1;
    }
    const filtered = this.filter ? ' (filtered)' : '';
    this.ui.count.textContent = `${queued} in the queue · ${finished} finished shown${filtered}`;
    const empty = this.rows.size === 0;
    this.ui.empty.hidden = !empty;
    if (empty) this.ui.empty.textContent = this.awaitingSnapshot ? 'Loading jobs…' : 'No jobs match.';
    this.ui.table.classList.toggle('is-empty', empty);
  }
}

function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

/** The last column: why a job waits, what a running one uses, how a finished one did. */
function details(job, finished) {
  const out = [];
  if (finished) {
    const bits = [];
    if (job.exit_code !== null && job.exit_code !== undefined) {
      bits.push(h('span', { class: job.exit_code === 0 ? 'exit ok' : 'exit bad', text: `exit ${job.exit_code}` }));
    }
    if (job.exit_signal) bits.push(h('span', { class: 'exit bad', text: `signal ${job.exit_signal}` }));
    const eff = job.efficiency;
    if (eff) {
      if (eff.cpu_efficiency !== null && eff.cpu_efficiency !== undefined) {
        bits.push(effBadge('CPU', eff.cpu_efficiency, `CPU efficiency: ${eff.cpu_time_s ?? '?'} s of CPU time over ${eff.elapsed_s ?? '?'} s × ${eff.cpus ?? '?'} CPUs`));
      }
      if (eff.memory_efficiency !== null && eff.memory_efficiency !== undefined) {
        bits.push(effBadge('Mem', eff.memory_efficiency,
          `Memory efficiency: peak ${megabytes(eff.memory_peak_mb)} of ${megabytes(eff.memory_requested_mb)} requested`));
      }
      if (eff.reason) bits.push(h('span', { class: 'muted small', text: eff.reason }));
    }
    if (bits.length) out.push(h('span', { class: 'result' }, ...bits));
    if (job.reason_text && job.reason !== 'None') out.push(h('span', { class: 'reason', title: job.reason ?? '', text: job.reason_text }));
  } else if (job.status === 'PENDING') {
    if (job.reason_text || job.reason) {
      out.push(h('span', { class: 'reason', title: job.reason ?? '', text: job.reason_text ?? job.reason }));
    }
    const expected = parseTime(job.expected_start_time);
    if (expected !== null) out.push(h('span', { class: 'muted small', text: `expected start ${new Date(expected).toLocaleString()}` }));
  } else {
    const r = job.resources ?? {};
    const parts = [];
    if (r.cpus) parts.push(`${r.cpus} CPU${r.cpus === 1 ? '' : 's'}`);
    if (r.memory) parts.push(r.memory);
    if (r.gpus) parts.push(`${r.gpus} GPU${r.gpus === 1 ? '' : 's'}`);
    if (parts.length) out.push(h('span', { class: 'muted', text: parts.join(' · ') }));
    if (job.reason_text) out.push(h('span', { class: 'reason', title: job.reason ?? '', text: job.reason_text }));
  }
  return out;
}

function effBadge(label, value, title) {
  const v = Number(value);
  const level = v >= 70 ? 'good' : v >= 30 ? 'fair' : 'poor';
  return h('span', { class: `eff eff-${level}`, title, text: `${label} ${v.toFixed(0)}%` });
}
