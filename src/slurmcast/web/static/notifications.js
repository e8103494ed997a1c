/**
 * notifications.js: the notifications panel (#notifications-list, #unread-count).
 * Stored notifications come from the HTTP API (GET /notifications), new ones live
 * from the `notifications` channel; mark-read and mark-all-read go through the API
 * (POST /notifications/{id}/read, POST /notifications/read-all).
 * @module notifications
 */
import { ago, clockTime, h } from './format.js';

/** Items kept in the list. */
const MAX_ITEMS = 100;
/** Unread notifications counted from the API (its largest page). */
const UNREAD_PAGE = 500;
/** Job notification types that say a job ended. */
export const JOB_END_TYPES = ['job_completed', 'job_failed', 'job_cancelled', 'job_timeout'];

export class Notifications {
  /**
   * @param {{panel: HTMLElement, list: HTMLElement, empty: HTMLElement, count: HTMLElement,
   *   link: HTMLElement, markAll: HTMLButtonElement}} ui
   * @param {object} deps
   * @param {import('./auth.js').Auth} deps.auth
   * @param {import('./toasts.js').Toasts} deps.toasts
   * @param {(n: object) => void} [deps.onLive]  every live notification shown
   */
  constructor(ui, deps) {
    this.ui = ui;
    this.deps = deps;
    /** @type {Map<string, {n: object, el: HTMLElement}>} newest first in the DOM */
    this.items = new Map();
    this.unread = 0;
    this.unreadCapped = false;
    this._loading = null;
    ui.markAll.addEventListener('click', () => this.markAllRead());
    this._tick = setInterval(() => this._refreshTimes(), 30000);
    this._renderCount();
  }

  /** Which notifications this viewer's list holds (as GET /notifications decides). */
  _visible(n) {
    const { user, isAdmin } = this.deps.auth.identity;
    if (this.deps.auth.mode === 'none' || isAdmin || !user) return true;
    return n.user === user || n.user === null || n.user === undefined;
  }

  /** Load the list and the unread count from the API. */
  load() {
    this._loading ??= this._load().finally(() => { this._loading = null; });
    return this._loading;
  }

  async _load() {
    const { auth } = this.deps;
    try {
      const [page, unread] = await Promise.all([
        auth.api('notifications?limit=50'),
        auth.api(`notifications?unread=true&limit=${UNREAD_PAGE}`),
      ]);
      const list = page.notifications ?? [];
      // Live ones that arrived meanwhile stay; stored ones fill in below them.
      for (const n of list) this._upsert(n, { live: false });
      this._reorder();
      this.unread = (unread.notifications ?? []).length;
      this.unreadCapped = Boolean(unread.next_before);
      // Unread ones only counted live so far are already in the API's answer.
      this._renderCount();
      this.ui.empty.textContent = 'No notifications yet.';
    } catch (error) {
      this.ui.empty.textContent = error.status === 503
        ? 'Notifications are unavailable right now (the database is down).'
        : `Could not load notifications: ${error.message}`;
    }
    this._renderEmpty();
  }

  /** A message of the `notifications` channel. */
  handle(message) {
    if (message.type !== 'notification' || !message.data?.id) return;
    const n = message.data;
    if (!this._visible(n)) return;
    const isNew = !this.items.has(n.id);
    this._upsert(n, { live: true });
    if (isNew && !n.read) {
      this.unread += 1;
      this._renderCount();
    }
    this._renderEmpty();
    if (isNew) this.deps.onLive?.(n);
  }

  /** The channel could not be recovered: what was missed is in the API. */
  resync() {
    this.load();
  }

  async markRead(id) {
    const item = this.items.get(id);
    if (!item || item.n.read) return;
    const button = item.el.querySelector('.mark-read');
    button.disabled = true;
    try {
      await this.deps.auth.api(`notifications/${encodeURIComponent(id)}/read`, { method: 'POST' });
      this._setRead(item);
    } catch (error) {
      button.disabled = false;
      this.deps.toasts.show({ kind: 'error', title: 'Could not mark as read', text: error.message });
    }
  }

  async markAllRead() {
    const button = this.ui.markAll;
    button.disabled = true;
    try {
      await this.deps.auth.api('notifications/read-all', { method: 'POST' });
      for (const item of this.items.values()) {
        // Announcements for everyone have one shared flag that only an admin marks.
        if (this._canMark(item.n)) this._setRead(item, { count: false });
      }
      this.unread = 0;
      this._renderCount();
      this.load(); // the server's count (shared announcements may stay unread)
    } catch (error) {
      this.deps.toasts.show({ kind: 'error', title: 'Could not mark all as read', text: error.message });
    } finally {
      button.disabled = false;
    }
  }

  _canMark(n) {
    const { auth } = this.deps;
    if (auth.mode === 'none' || auth.identity.isAdmin) return true;
    return n.user === auth.identity.user;
  }

  _setRead(item, { count = true } = {}) {
    if (item.n.read) return;
    item.n = { ...item.n, read: true };
    this._paint(item);
    if (count) {
      this.unread = Math.max(0, this.unread - 1);
      this._renderCount();
    }
  }

  _upsert(n, { live }) {
    let item = this.items.get(n.id);
    if (item) {
      // The stored copy knows the read flag; keep what we learnt otherwise.
      item.n = { ...item.n, ...n, read: Boolean(n.read) || (live ? item.n.read : false) };
      this._paint(item);
      return;
    }
    const markButton = h('button', { type: 'button', class: 'mark-read btn btn-small btn-quiet' });
    markButton.addEventListener('click', () => this.markRead(n.id));
    const el = h('li', { class: 'notification', dataset: { id: n.id } },
      h('span', { class: 'severity-dot', 'aria-hidden': 'true' }),
      h('div', { class: 'notification-body' },
        h('div', { class: 'notification-head' },
          h('strong', { class: 'notification-title' }),
          h('time', { class: 'notification-time muted small' })),
        h('p', { class: 'notification-message' })),
      markButton);
    item = { n, el };
    this.items.set(n.id, item);
    this._paint(item);
    if (live) this.ui.list.prepend(el);
    else this.ui.list.append(el);
    this._trim();
  }

  _paint(item) {
    const { n, el } = item;
    el.dataset.severity = n.severity ?? 'info';
    el.dataset.type = n.type ?? '';
    el.dataset.read = String(Boolean(n.read));
    el.classList.toggle('unread', !n.read);
    el.querySelector('.notification-title').textContent = n.title ?? n.type ?? 'Notification';
    el.querySelector('.notification-message').textContent = n.message ?? '';
    const time = el.querySelector('.notification-time');
    time.dateTime = n.created_at ?? '';
    time.textContent = ago(n.created_at);
    time.title = clockTime(n.created_at);
    const button = el.querySelector('.mark-read');
    button.textContent = n.read ? 'Read' : 'Mark read';
    button.disabled = Boolean(n.read) || !this._canMark(n);
    button.setAttribute('aria-label', n.read ? `${n.title ?? 'Notification'}: read` : `Mark “${n.title ?? 'notification'}” as read`);
    if (!n.read && !this._canMark(n)) button.title = 'An announcement for everyone: only an admin marks it read';
  }

  _reorder() {
    const sorted = [...this.items.values()].sort((a, b) => String(b.n.created_at ?? '').localeCompare(String(a.n.created_at ?? '')));
    for (const item of sorted) this.ui.list.append(item.el);
    this._trim();
  }

  _trim() {
    while (this.ui.list.children.length > MAX_ITEMS) {
      const last = this.ui.list.lastElementChild;
      this.items.delete(last.dataset.id);
      last.remove();
    }
  }

  _renderCount() {
    const { count, link } = this.ui;
    const text = this.unreadCapped ? `${this.unread}+` : String(this.unread);
    count.textContent = text;
    count.dataset.count = String(this.unread);
    link.title = `${text} unread notification${this.unread === 1 ? '' : 's'}`;
    link.classList.toggle('has-unread', this.unread > 0);
  }

  _renderEmpty() {
    this.ui.empty.hidden = this.items.size > 0;
  }

  _refreshTimes() {
    for (const item of this.items.values()) {
      item.el.querySelector('.notification-time').textContent = ago(item.n.created_at);
    }
  }
}
