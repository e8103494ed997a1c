/**
 * alerts.js: firing alerts in the banner (#alerts-banner), resolved ones in a history
 * list (#alerts-history). The `alerts` channel's snapshot holds the alerts firing now;
 * each `alert` message fires (sets) or resolves (removes) one by its `id`; the
 * channel's history fills in what was resolved before the page opened.
 * @module alerts
 */
import { ago, clockTime, duration, h, parseTime } from './format.js';

/** Resolved alerts kept in the history list. */
const MAX_HISTORY = 50;
/** Firing alerts shown before "show more". */
const BANNER_VISIBLE = 4;

export class Alerts {
  /** @param {{banner: HTMLElement, history: HTMLElement, historyEmpty: HTMLElement}} ui */
  constructor(ui) {
    this.ui = ui;
    /** @type {Map<string, object>} firing alerts by id */
    this.firing = new Map();
    /** resolved alerts seen, by `${id}@${since}`, to keep history entries unique */
    this.resolvedKeys = new Set();
    this.expanded = false;
    this._tick = setInterval(() => this._refreshSince(), 30000);
  }

  /** A message of the `alerts` channel (snapshot included). */
  handle(message) {
    if (message.type === 'snapshot') {
      this.firing.clear();
      for (const alert of message.data ?? []) if (alert?.id) this.firing.set(alert.id, alert);
      this._renderBanner();
    } else if (message.type === 'alert' && message.data?.id) {
      this._apply(message.data, message.timestamp);
      this._renderBanner();
    }
  }

  /** Stored alert messages (a history reply's publications), oldest first. */
  addHistory(publications) {
    for (const m of publications ?? []) {
      if (m.type === 'alert' && m.data?.status === 'resolved') this._addResolved(m.data, m.timestamp);
    }
  }

  refuse(reason) {
    this.ui.historyEmpty.textContent = `Alerts unavailable: ${reason}`;
  }

  _apply(alert, timestamp) {
    if (alert.status === 'resolved') {
      this.firing.delete(alert.id);
      this._addResolved(alert, timestamp);
    } else {
      this.firing.set(alert.id, alert);
    }
  }

  _addResolved(alert, timestamp) {
    const key = `${alert.id}@${alert.since ?? ''}@${timestamp ?? ''}`;
    if (this.resolvedKeys.has(key)) return;
    this.resolvedKeys.add(key);
    const since = parseTime(alert.since);
    const resolvedAt = parseTime(timestamp);
    const lasted = since !== null && resolvedAt !== null && resolvedAt >= since ? duration((resolvedAt - since) / 1000) : null;
    const item = h('li', { class: 'alert-item', dataset: { alertId: alert.id, severity: alert.severity ?? 'warning' } },
      h('span', { class: 'severity-dot', 'aria-hidden': 'true' }),
      h('div', {},
        h('p', { class: 'alert-message', text: alert.message ?? alert.id }),
        h('p', { class: 'muted small' },
          h('time', { dateTime: timestamp ?? '', text: `resolved ${clockTime(timestamp)}` }),
          lasted ? ` · lasted ${lasted}` : '',
          ` · ${alert.rule ?? ''}`)));
    this.ui.history.prepend(item);
    while (this.ui.history.children.length > MAX_HISTORY) this.ui.history.lastElementChild.remove();
    this.ui.historyEmpty.hidden = true;
  }

  _renderBanner() {
    const banner = this.ui.banner;
    const order = { critical: 0, error: 1, warning: 2, info: 3 };
    const alerts = [...this.firing.values()].sort((a, b) =>
      (order[a.severity] ?? 9) - (order[b.severity] ?? 9) || String(a.since ?? '').localeCompare(String(b.since ?? '')));
    const shown = this.expanded ? alerts : alerts.slice(0, BANNER_VISIBLE);
    const items = shown.map((alert) => h('div', {
      class: 'alert', dataset: { alertId: alert.id, severity: alert.severity ?? 'warning' },
    },
    h('span', { class: 'alert-icon', 'aria-hidden': 'true', text: alert.severity === 'critical' ? '!' : '⚠' }),
    h('span', { class: 'alert-text' },
      h('strong', { text: alert.severity === 'critical' ? 'Critical' : 'Warning' }), ' ',
      alert.message ?? alert.id),
    h('span', { class: 'alert-since muted small', dataset: { since: alert.since ?? '' }, title: clockTime(alert.since), text: alert.since ? `since ${ago(alert.since)}` : '' })));
    if (alerts.length > BANNER_VISIBLE) {
      const more = h('button', { type: 'button', class: 'btn btn-small btn-quiet alerts-more', 'aria-expanded': String(this.expanded) },
        this.expanded ? 'Show fewer' : `Show ${alerts.length - BANNER_VISIBLE} more`);
      more.addEventListener('click', () => {
        this.expanded = !this.expanded;
        this._renderBanner();
        banner.querySelector('.alerts-more')?.focus();
      });
      items.push(more);
    }
    banner.replaceChildren(...items);
    banner.dataset.count = String(alerts.length);
    banner.hidden = alerts.length === 0;
  }

  _refreshSince() {
    for (const el of this.ui.banner.querySelectorAll('.alert-since')) {
      if (el.dataset.since) el.textContent = `since ${ago(el.dataset.since)}`;
    }
  }
}
