/**
 * rules.js: the "Notify me" panel (#rules-panel): the viewer's notification rules (e-mail,
 * Slack, webhook), a form to add one, and the recent deliveries with a Retry for the dead
 * ones. Everything goes through the HTTP API with the page's token (auth.api):
 * `GET /notify/config` (kinds, defaults, events this viewer may use, their address, admin),
 * `GET|POST /notify/rules`, `PATCH|DELETE /notify/rules/{id}`, `GET /notify/deliveries`,
 * `POST /notify/deliveries/{id}/retry`. The server decides what a rule may say: the form
 * sends what was typed and shows the server's message when it refuses.
 *
 * Shown only when /dashboard.json says `notify: true` (the server has a `[sinks]` table).
 * @module rules
 */
import { ago, clockTime, debounce, duration, flash, h } from './format.js';

/** Events in the order the form offers them, with their labels. */
export const EVENT_LABELS = {
  job_started: 'Job started',
  job_completed: 'Job completed',
  job_failed: 'Job failed',
  job_timeout: 'Job timed out',
  job_out_of_memory: 'Job out of memory',
  job_cancelled: 'Job cancelled',
  job_pending_long: 'Pending too long',
  alert_firing: 'Alert firing',
  alert_resolved: 'Alert resolved',
};
const PENDING_LONG = 'job_pending_long';
const ALERT_EVENTS = ['alert_firing', 'alert_resolved'];

const KIND_LABELS = { email: 'E-mail', slack: 'Slack', webhook: 'Webhook' };
/** Delivery states as the panel names them. */
const STATE_LABELS = { pending: 'Waiting', delivering: 'Sending', delivered: 'Delivered', dead: 'Failed' };

const DELIVERIES_LIMIT = 20;
/** How often the deliveries are looked at again while the page is visible. */
const POLL_MS = 30000;
/** After a notification or a retry, the worker needs a moment before there is news. */
const SETTLE_MS = 2500;

/** Events in the form's order (unknown ones last, as they come). */
export function ordered(events) {
  const known = Object.keys(EVENT_LABELS);
  const rank = (e) => (known.includes(e) ? known.indexOf(e) : known.length);
  return [...events].sort((a, b) => rank(a) - rank(b));
}

/** @param {string} event */
export function eventLabel(event, pendingMinutes = null) {
  if (event === PENDING_LONG && pendingMinutes) return `Pending over ${duration(pendingMinutes * 60)}`;
  return EVENT_LABELS[event] ?? String(event).replace(/_/g, ' ');
}

/**
 * A URL shown without its path: a Slack incoming-webhook URL carries its secret there.
 * @param {string} url
 */
export function shortUrl(url) {
  try {
    const parsed = new URL(url);
    return `${parsed.host}${parsed.pathname.length > 1 || parsed.search ? '/…' : ''}`;
  } catch {
    return String(url).slice(0, 24) + (String(url).length > 24 ? '…' : '');
  }
}

export class NotifyRules {
  /**
   * @param {HTMLElement} panel  #rules-panel, holding the elements named below by id
   * @param {object} deps
   * @param {import('./auth.js').Auth} deps.auth
   * @param {import('./toasts.js').Toasts} deps.toasts
   */
  constructor(panel, deps) {
    const $ = (id) => panel.querySelector(`#${id}`);
    this.deps = deps;
    this.ui = {
      panel,
      refresh: $('rules-refresh'), note: $('rules-note'), status: $('rules-status'), body: $('rules-body'),
      listTitle: $('rules-list-title'), list: $('rules-list'), empty: $('rules-empty'),
      form: $('rule-form'), ownerField: $('rule-owner-field'), owner: $('rule-owner'),
      events: $('rule-events'), eventChoices: $('rule-event-choices'),
      pendingField: $('rule-pending-field'), pending: $('rule-pending'),
      kind: $('rule-kind'), targetDefault: $('rule-target-default'), targetOther: $('rule-target-other'),
      targetDefaultLabel: $('rule-target-default-label'), targetOtherLabel: $('rule-target-other-label'),
      targetField: $('rule-target-field'), targetLabel: $('rule-target-label'), target: $('rule-target'),
      partitions: $('rule-partitions'), partitionNames: $('rule-partition-names'), name: $('rule-name'),
      minRun: $('rule-min-run'), error: $('rule-form-error'), submit: $('rule-submit'),
      deliveriesState: $('deliveries-state'), deliveries: $('deliveries-list'), deliveriesEmpty: $('deliveries-empty'),
    };
    /** GET /notify/config's answer, once loaded. */
    this.config = null;
    /** @type {Map<string, {rule: object, el: HTMLElement}>} */
    this.rules = new Map();
    /** @type {Map<string, {d: object, el: HTMLElement}>} */
    this.deliveries = new Map();
    this._loading = null;
    this._loadingDeliveries = null;
    this._ids = 0;
    this._settle = debounce(() => this.loadDeliveries(), SETTLE_MS);

    const { ui } = this;
    ui.refresh.addEventListener('click', () => this.load());
    ui.form.addEventListener('submit', (event) => {
      event.preventDefault();
      this._submit();
    });
    ui.form.addEventListener('input', (event) => {
      event.target.removeAttribute?.('aria-invalid');
    });
    ui.kind.addEventListener('change', () => this._renderTargets());
    ui.owner.addEventListener('input', () => this._renderTargets());
    // The fields a choice needs appear right after it, next in the Tab order (focus stays put).
    for (const radio of [ui.targetDefault, ui.targetOther]) radio.addEventListener('change', () => this._renderTargetField());
    ui.deliveriesState.addEventListener('change', () => this.loadDeliveries());
    this._poll = setInterval(() => {
      if (this.config && document.visibilityState === 'visible') this.loadDeliveries();
    }, POLL_MS);
    this._tick = setInterval(() => this._refreshTimes(), POLL_MS);
  }

  /** Show the panel (it stays hidden when the server has no notification delivery). */
  show() {
    this.ui.panel.hidden = false;
  }

  /** Load the config, the rules and the deliveries (again). */
  load() {
    this._loading ??= this._load().finally(() => { this._loading = null; });
    return this._loading;
  }

  /** Partition names for the form's suggestions (from the node grid). */
  setPartitions(names) {
    this.ui.partitionNames.replaceChildren(...names.map((name) => h('option', { value: name })));
  }

  /** A notification arrived: a delivery may have been planned for it. */
  noteNotification() {
    if (this.config) this._settle();
  }

  // -- loading ---------------------------------------------------------------------

  async _load() {
    const { ui } = this;
    ui.refresh.disabled = true;
    try {
      this.config = await this.deps.auth.api('notify/config');
    } catch (error) {
      this.config = null;
      ui.body.hidden = true;
      this._note(error.status === 404
        ? 'This server does not offer notification rules.'
        : error.status === 503
          ? 'Notification rules are unavailable right now (the database is down).'
          : `Could not load your notification rules: ${error.message}`);
      ui.refresh.disabled = false;
      return;
    }
    this._note('');
    ui.body.hidden = false;
    this._renderForm();
    await Promise.all([this._loadRules(), this.loadDeliveries()]);
    ui.refresh.disabled = false;
  }

  async _loadRules() {
    const { ui } = this;
    try {
      const reply = await this.deps.auth.api('notify/rules');
      const rules = [...(reply.rules ?? [])].sort(
        (a, b) => String(b.created_at ?? '').localeCompare(String(a.created_at ?? '')));
      const seen = new Set();
      for (const rule of rules) {
        seen.add(rule.id);
        this._upsertRule(rule);
      }
      for (const id of [...this.rules.keys()]) if (!seen.has(id)) this._removeRule(id);
      ui.list.append(...rules.map((rule) => this.rules.get(rule.id).el));
      ui.empty.textContent = 'No rules yet: add one below.';
    } catch (error) {
      ui.empty.textContent = `Could not load the rules: ${error.message}`;
    }
    this._renderEmpty();
  }

  /** The most recent deliveries (in the state the filter asks for). */
  loadDeliveries() {
    this._loadingDeliveries ??= this._loadDeliveries().finally(() => { this._loadingDeliveries = null; });
    return this._loadingDeliveries;
  }

  async _loadDeliveries() {
    const { ui } = this;
    const state = ui.deliveriesState.value;
    const query = new URLSearchParams({ limit: String(DELIVERIES_LIMIT) });
    if (state) query.set('state', state);
    try {
      const reply = await this.deps.auth.api(`notify/deliveries?${query}`);
      if (ui.deliveriesState.value !== state) return; // the filter changed meanwhile
      const list = reply.deliveries ?? [];
      const ids = list.map((d) => d.id);
      for (const d of list) this._upsertDelivery(d);
      for (const id of [...this.deliveries.keys()]) {
        if (!ids.includes(id)) {
          this.deliveries.get(id).el.remove();
          this.deliveries.delete(id);
        }
      }
      // Moving a focused element loses its focus: only reorder when the order changed.
      const shown = [...ui.deliveries.children].map((el) => el.dataset.id);
      if (shown.join('\n') !== ids.join('\n')) ui.deliveries.append(...ids.map((id) => this.deliveries.get(id).el));
      ui.deliveriesEmpty.textContent = state ? `No ${STATE_LABELS[state]?.toLowerCase() ?? state} deliveries.` : 'Nothing sent yet.';
    } catch (error) {
      ui.deliveriesEmpty.textContent = `Could not load the deliveries: ${error.message}`;
      ui.deliveriesEmpty.hidden = false;
      return;
    }
    ui.deliveriesEmpty.hidden = this.deliveries.size > 0;
  }

  // -- the form --------------------------------------------------------------------

  /** Whether the form names the rule's owner: an admin with no user of their own (an open server). */
  get _needsOwner() {
    return Boolean(this.config?.admin) && !this.deps.auth.identity.user;
  }

  _renderForm() {
    const { ui, config } = this;
    const admin = Boolean(config.admin);
    ui.listTitle.textContent = admin ? 'Rules (every user’s)' : 'My rules';
    ui.ownerField.hidden = !this._needsOwner;
    ui.owner.required = this._needsOwner;

    // Events: the ones this viewer may use, ticks kept across reloads.
    const ticked = new Set(this._checkedEvents());
    const events = Array.isArray(config.events) ? config.events : [];
    ui.eventChoices.replaceChildren(...ordered(events).map((event) => {
      const input = h('input', { type: 'checkbox', name: 'event', value: event });
      input.checked = ticked.has(event);
      if (event === PENDING_LONG) input.addEventListener('change', () => this._renderPending());
      return h('label', { class: 'check', dataset: { event } }, input, h('span', { text: EVENT_LABELS[event] ?? event }));
    }));
    this._renderPending();

    // Kinds: the configured ones; e-mail only where an address can be had.
    const kinds = Array.isArray(config.kinds) ? config.kinds : [];
    const previous = ui.kind.value;
    ui.kind.replaceChildren(...kinds.map((kind) => {
      const option = h('option', { value: kind, text: KIND_LABELS[kind] ?? kind });
      if (kind === 'email' && !admin && !config.email) {
        option.disabled = true;
        option.textContent = 'E-mail (no address is known for you)';
      }
      return option;
    }));
    const usable = [...ui.kind.options].filter((o) => !o.disabled);
    ui.kind.value = usable.some((o) => o.value === previous) ? previous : (usable[0]?.value ?? '');
    ui.submit.disabled = usable.length === 0;
    if (!usable.length) this._formError('This server offers no destination you can use.');
    this._renderTargets();
  }

  _checkedEvents() {
    return [...this.ui.eventChoices.querySelectorAll('input[name="event"]:checked')].map((i) => i.value);
  }

  _renderPending() {
    const { pendingField, pending } = this.ui;
    const on = this._checkedEvents().includes(PENDING_LONG);
    pendingField.hidden = !on;
    pending.required = on;
  }

  /** The "default" and "other" choices of the chosen kind. */
  _renderTargets() {
    const { ui, config } = this;
    if (!config) return;
    const kind = ui.kind.value;
    const admin = Boolean(config.admin);
    const defaults = config.defaults ?? {};
    let defaultLabel;
    let defaultUsable;
    let otherLabel;
    let otherShown = true;
    if (kind === 'email') {
      if (this._needsOwner) {
        defaultLabel = 'The owner’s own address';
        defaultUsable = Boolean(defaults.email);
      } else {
        defaultLabel = config.email ? `My address (${config.email})` : 'My address (none is known for you)';
        defaultUsable = Boolean(config.email);
      }
      otherLabel = 'Another address';
      otherShown = admin; // a user may only mail themselves, which "my address" already does
    } else {
      defaultUsable = Boolean(defaults[kind]);
      const site = kind === 'slack' ? 'The site’s Slack channel' : 'The site’s webhook';
      defaultLabel = defaultUsable ? site : `${site} (none configured)`;
      otherLabel = kind === 'slack' ? 'Another incoming-webhook URL' : 'Another URL';
    }
    ui.targetDefaultLabel.textContent = defaultLabel;
    ui.targetDefault.disabled = !defaultUsable;
    ui.targetOtherLabel.textContent = otherLabel;
    ui.targetOther.closest('label').hidden = !otherShown;
    // The viewer's choice stays unless the kind rules it out.
    if (!otherShown) ui.targetDefault.checked = true;
    else if (!defaultUsable) ui.targetOther.checked = true;
    this._renderTargetField();
  }

  _renderTargetField() {
    const { ui } = this;
    const other = ui.targetOther.checked && !ui.targetOther.closest('label').hidden;
    const email = ui.kind.value === 'email';
    ui.targetField.hidden = !other;
    ui.target.required = other;
    ui.target.type = email ? 'email' : 'url';
    ui.target.placeholder = email ? 'team@example.edu' : 'https://hooks.example.edu/…';
    ui.targetLabel.textContent = email ? 'Address' : 'URL';
  }

  /** The request body the form describes. */
  _body() {
    const { ui } = this;
    const events = this._checkedEvents();
    const kind = ui.kind.value;
    const other = !ui.targetField.hidden;
    const body = { events, destination: { kind, target: other ? ui.target.value.trim() : 'default' } };
    const partitions = ui.partitions.value.split(/[\s,]+/).filter(Boolean);
    if (partitions.length) body.partitions = partitions;
    const name = ui.name.value.trim();
    if (name) body.name_pattern = name;
    if (ui.minRun.value !== '') body.min_run_seconds = Math.round(Number(ui.minRun.value) * 60);
    if (events.includes(PENDING_LONG)) body.pending_minutes = Number(ui.pending.value);
    if (this._needsOwner) body.owner = ui.owner.value.trim();
    return body;
  }

  async _submit() {
    const { ui } = this;
    if (!this.config) return;
    const body = this._body();
    if (!body.events.length) {
      this._formError('Tick at least one event.', ui.eventChoices.querySelector('input'));
      ui.events.setAttribute('aria-invalid', 'true');
      return;
    }
    ui.events.removeAttribute('aria-invalid');
    ui.submit.disabled = true;
    ui.form.setAttribute('aria-busy', 'true');
    this._formError('');
    try {
      const reply = await this.deps.auth.api('notify/rules', { method: 'POST', json: body });
      const rule = reply.rule;
      this._upsertRule(rule);
      const { el } = this.rules.get(rule.id);
      ui.list.prepend(el);
      flash(el);
      this._renderEmpty();
      this._resetForm();
      this._announce(`Rule added: ${this._summary(rule)}.`);
    } catch (error) {
      // The server's word, next to the form; what was typed stays.
      this._formError(error.message, this._fieldFor(error, body));
    } finally {
      ui.submit.disabled = false;
      ui.form.removeAttribute('aria-busy');
    }
  }

  /** The input an error is most likely about (the server's `field`, else its message). */
  _fieldFor(error, body) {
    const { ui } = this;
    const fields = {
      events: ui.eventChoices.querySelector('input'), owner: ui.owner, partitions: ui.partitions,
      name_pattern: ui.name, min_run_seconds: ui.minRun, pending_minutes: ui.pending,
      target: ui.target, url: ui.target, destination: ui.target,
    };
    const name = error.field ?? Object.keys(fields).find((key) => new RegExp(`\\b${key}\\b`).test(error.message))
      ?? (/address|url|destination|webhook/i.test(error.message) ? 'target' : null);
    const input = fields[name];
    if (!input || input.closest('[hidden]')) return body.destination.target === 'default' ? ui.kind : null;
    return input;
  }

  _formError(message, field = null) {
    const { error } = this.ui;
    error.textContent = message;
    for (const input of this.ui.form.querySelectorAll('[aria-invalid]')) input.removeAttribute('aria-invalid');
    if (message && field) {
      field.setAttribute('aria-invalid', 'true');
      field.closest('details')?.setAttribute('open', '');
      field.focus();
    }
  }

  _resetForm() {
    const { ui } = this;
    const owner = ui.owner.value;
    const kind = ui.kind.value;
    ui.form.reset();
    ui.owner.value = owner; // the next rule is likely the same person's
    ui.kind.value = kind;
    this._renderPending();
    this._renderTargets();
  }

  // -- the rules list --------------------------------------------------------------

  _summary(rule) {
    const events = ordered(rule.events ?? []).map((e) => eventLabel(e, rule.pending_minutes));
    return `${events.join(', ')} by ${KIND_LABELS[rule.destination?.kind] ?? rule.destination?.kind ?? '?'}`;
  }

  _target(destination, owner) {
    const { kind, target } = destination ?? {};
    const mine = owner === this.deps.auth.identity.user;
    if (target === 'default' || target === undefined) {
      if (kind === 'email') return mine ? `my address${this.config?.email ? ` (${this.config.email})` : ''}` : `${owner}’s own address`;
      return kind === 'slack' ? 'the site’s channel' : 'the site’s webhook';
    }
    if (kind === 'email') return mine && target === this.config?.email ? `my address (${target})` : target;
    return shortUrl(target);
  }

  _filters(rule) {
    const parts = [];
    const jobEvents = (rule.events ?? []).some((e) => !ALERT_EVENTS.includes(e));
    if (!jobEvents) return '';
    if (rule.partitions?.length) parts.push(`in ${rule.partitions.join(' or ')}`);
    if (rule.name_pattern) parts.push(`named ${rule.name_pattern}`);
    if (rule.min_run_seconds) parts.push(`that ran at least ${duration(rule.min_run_seconds)}`);
    const whose = rule.owner === this.deps.auth.identity.user ? 'my' : `${rule.owner}’s`;
    return parts.length ? `Only ${whose} jobs ${parts.join(', ')}` : `Any of ${whose} jobs`;
  }

  _upsertRule(rule) {
    let item = this.rules.get(rule.id);
    if (!item) {
      const n = ++this._ids;
      const toggle = h('input', {
        type: 'checkbox', role: 'switch', class: 'rule-enabled',
        'aria-labelledby': `rule-${n}-on`, 'aria-describedby': `rule-${n}-summary`,
      });
      const remove = h('button', { type: 'button', class: 'btn btn-small btn-quiet rule-delete', 'aria-describedby': `rule-${n}-summary`, text: 'Delete' });
      const yes = h('button', { type: 'button', class: 'btn btn-small btn-danger rule-delete-yes', 'aria-describedby': `rule-${n}-summary`, text: 'Delete' });
      const no = h('button', { type: 'button', class: 'btn btn-small rule-delete-no', text: 'Keep' });
      const el = h('li', { class: 'rule', dataset: { id: rule.id }, tabindex: '-1' },
        h('div', { class: 'rule-main', id: `rule-${n}-summary` },
          h('strong', { class: 'rule-events' }),
          h('span', { class: 'rule-destination small' }),
          h('span', { class: 'rule-filters small muted' }),
          h('span', { class: 'rule-owner small muted' })),
        h('div', { class: 'rule-actions' },
          h('label', { class: 'check rule-switch' }, toggle, h('span', { id: `rule-${n}-on`, class: 'rule-on' })),
          remove),
        h('div', { class: 'rule-confirm', role: 'group', 'aria-label': 'Confirm deletion', hidden: true },
          h('span', { class: 'small', text: 'Delete this rule?' }), yes, no));
      item = { rule, el };
      this.rules.set(rule.id, item);
      toggle.addEventListener('change', () => this._toggle(rule.id, toggle.checked));
      remove.addEventListener('click', () => this._confirmDelete(rule.id, true));
      no.addEventListener('click', () => this._confirmDelete(rule.id, false));
      yes.addEventListener('click', () => this._delete(rule.id));
      el.querySelector('.rule-confirm').addEventListener('keydown', (event) => {
        if (event.key === 'Escape') this._confirmDelete(rule.id, false);
      });
    }
    item.rule = rule;
    this._paintRule(item);
  }

  _paintRule({ rule, el }) {
    const enabled = rule.enabled !== false;
    el.dataset.enabled = String(enabled);
    el.dataset.owner = rule.owner ?? '';
    el.querySelector('.rule-events').textContent = ordered(rule.events ?? []).map((e) => eventLabel(e, rule.pending_minutes)).join(', ');
    const destination = rule.destination ?? {};
    el.querySelector('.rule-destination').textContent =
      `${KIND_LABELS[destination.kind] ?? destination.kind ?? '?'} to ${this._target(destination, rule.owner)}`;
    const filters = el.querySelector('.rule-filters');
    filters.textContent = this._filters(rule);
    filters.hidden = !filters.textContent;
    const owner = el.querySelector('.rule-owner');
    const others = Boolean(this.config?.admin) && rule.owner !== this.deps.auth.identity.user;
    owner.textContent = others ? `${rule.owner}’s rule` : '';
    owner.hidden = !others;
    const toggle = el.querySelector('.rule-enabled');
    toggle.checked = enabled;
    el.querySelector('.rule-on').textContent = enabled ? 'On' : 'Off';
  }

  async _toggle(id, enabled) {
    const item = this.rules.get(id);
    if (!item) return;
    const toggle = item.el.querySelector('.rule-enabled');
    toggle.disabled = true;
    try {
      const reply = await this.deps.auth.api(`notify/rules/${encodeURIComponent(id)}`, { method: 'PATCH', json: { enabled } });
      item.rule = reply?.rule ?? { ...item.rule, enabled };
      this._announce(`Rule turned ${enabled ? 'on' : 'off'}: ${this._summary(item.rule)}.`);
    } catch (error) {
      this.deps.toasts.show({ kind: 'error', title: 'Could not change the rule', text: error.message });
      if (error.status === 404) {
        this._removeRule(id);
        this._renderEmpty();
        return;
      }
    } finally {
      toggle.disabled = false;
    }
    this._paintRule(item);
    toggle.focus();
  }

  _confirmDelete(id, asking) {
    const item = this.rules.get(id);
    if (!item) return;
    const { el } = item;
    el.querySelector('.rule-actions').hidden = asking;
    el.querySelector('.rule-confirm').hidden = !asking;
    (asking ? el.querySelector('.rule-delete-no') : el.querySelector('.rule-delete')).focus();
  }

  async _delete(id) {
    const item = this.rules.get(id);
    if (!item) return;
    const buttons = item.el.querySelectorAll('.rule-confirm button');
    for (const button of buttons) button.disabled = true;
    try {
      await this.deps.auth.api(`notify/rules/${encodeURIComponent(id)}`, { method: 'DELETE' });
    } catch (error) {
      if (error.status !== 404) { // gone already is what was asked
        for (const button of buttons) button.disabled = false;
        this.deps.toasts.show({ kind: 'error', title: 'Could not delete the rule', text: error.message });
        return;
      }
    }
    // Focus goes to the next rule (or the one before, or the list's title).
    const next = item.el.nextElementSibling ?? item.el.previousElementSibling;
    this._removeRule(id);
    this._renderEmpty();
    this._announce(`Rule deleted: ${this._summary(item.rule)}.`);
    if (next) next.querySelector('.rule-enabled').focus();
    else this.ui.listTitle.focus();
  }

  _removeRule(id) {
    this.rules.get(id)?.el.remove();
    this.rules.delete(id);
  }

  _renderEmpty() {
    this.ui.empty.hidden = this.rules.size > 0;
  }

  // -- deliveries ------------------------------------------------------------------

  _upsertDelivery(d) {
    let item = this.deliveries.get(d.id);
    if (!item) {
      const retry = h('button', { type: 'button', class: 'btn btn-small delivery-retry', text: 'Retry' });
      const el = h('li', { class: 'delivery', dataset: { id: d.id }, tabindex: '-1' },
        h('span', { class: 'state-pill delivery-state' }),
        h('div', { class: 'delivery-body' },
          h('strong', { class: 'delivery-what' }),
          h('span', { class: 'delivery-where small muted' }),
          h('span', { class: 'delivery-when small muted' }),
          h('p', { class: 'delivery-error small' })),
        retry);
      item = { d, el };
      this.deliveries.set(d.id, item);
      retry.addEventListener('click', () => this._retry(d.id));
    }
    item.d = d;
    this._paintDelivery(item);
  }

  _paintDelivery({ d, el }) {
    el.dataset.state = d.state ?? '';
    const pill = el.querySelector('.delivery-state');
    pill.dataset.state = d.state ?? '';
    pill.textContent = STATE_LABELS[d.state] ?? d.state ?? '?';
    const payload = d.payload && typeof d.payload === 'object' ? d.payload : {};
    const data = payload.data && typeof payload.data === 'object' ? payload.data : {};
    let subject = '';
    if (data.job_id !== undefined && data.job_id !== null) subject = ` · job ${data.job_id}${data.name ? ` (${data.name})` : ''}`;
    else if (typeof data.message === 'string' && data.message) subject = ` · ${data.message}`; // an alert's
    el.querySelector('.delivery-what').textContent = `${payload.event ? eventLabel(payload.event) : 'Notification'}${subject}`;
    const mine = !d.owner || d.owner === this.deps.auth.identity.user;
    el.querySelector('.delivery-where').textContent =
      `${KIND_LABELS[d.kind] ?? d.kind ?? '?'} to ${this._target({ kind: d.kind, target: d.target }, d.owner)}${mine ? '' : `, for ${d.owner}`}`;
    el.querySelector('.delivery-when').textContent = this._when(d);
    const error = el.querySelector('.delivery-error');
    error.textContent = d.state === 'dead' && d.last_error ? d.last_error : '';
    error.hidden = !error.textContent;
    const retry = el.querySelector('.delivery-retry');
    retry.hidden = d.state !== 'dead';
    retry.setAttribute('aria-label', `Retry: ${el.querySelector('.delivery-what').textContent}`);
  }

  _when(d) {
    const attempts = Number(d.attempts) || 0;
    const tries = attempts ? ` after ${attempts} attempt${attempts === 1 ? '' : 's'}` : '';
    if (d.state === 'delivered') return `Sent ${ago(d.delivered_at ?? d.created_at)}${tries}`;
    if (d.state === 'dead') return `Gave up ${ago(d.next_attempt_at ?? d.created_at)}${tries}`;
    if (d.state === 'pending' && d.next_attempt_at) return `Next try at ${clockTime(d.next_attempt_at)}${tries}`;
    return `Queued ${ago(d.created_at)}${tries}`;
  }

  async _retry(id) {
    const item = this.deliveries.get(id);
    if (!item) return;
    const retry = item.el.querySelector('.delivery-retry');
    const hadFocus = document.activeElement === retry;
    retry.disabled = true;
    try {
      const reply = await this.deps.auth.api(`notify/deliveries/${encodeURIComponent(id)}/retry`, { method: 'POST' });
      item.d = reply?.delivery ?? { ...item.d, state: 'pending' };
      this._paintDelivery(item);
      flash(item.el);
      this._announce('Delivery queued for another try.');
      if (hadFocus) item.el.focus(); // the button is gone with the dead state
      this._settle();
    } catch (error) {
      this.deps.toasts.show({ kind: 'error', title: 'Could not retry the delivery', text: error.message });
      if (error.status === 409 || error.status === 404) this.loadDeliveries();
    } finally {
      retry.disabled = false;
    }
  }

  _refreshTimes() {
    for (const item of this.deliveries.values()) item.el.querySelector('.delivery-when').textContent = this._when(item.d);
  }

  // -- messages --------------------------------------------------------------------

  _note(text) {
    this.ui.note.textContent = text;
    this.ui.note.hidden = !text;
  }

  /** Tell assistive technology what just happened (the change itself is visible). */
  _announce(text) {
    this.ui.status.textContent = text;
  }
}
