/**
 * announcements.js: operator broadcasts (messages of type `broadcast`, or of the
 * custom type they were posted with, on any channel or to `all`) in the announcements area (#announcements) and as toasts; and, for
 * admins, the broadcast form (#broadcast-form).
 * @module announcements
 */
import { broadcastText, clockTime, h } from './format.js';

/** Announcements kept on the page. */
const MAX_ANNOUNCEMENTS = 20;

/** Types only the server emits; any other type on a channel is an operator's message
 * (`broadcast`, or the custom type it was posted with, e.g. `maintenance`). */
const SERVER_TYPES = new Set([
  'job_submitted', 'job_update', 'node_update', 'node_resource_change', 'node_added',
  'node_removed', 'metrics_update', 'notification', 'alert', 'snapshot', 'resync',
]);

/** Whether a channel message is an operator's broadcast rather than a server event. */
export function isAnnouncement(message) {
  return typeof message.type === 'string' && !SERVER_TYPES.has(message.type);
}

/** `maintenance_window` -> `Maintenance window`. */
function typeTitle(type) {
  const words = type.replace(/[_.:-]+/g, ' ').trim();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

export class Announcements {
  /**
   * @param {{panel: HTMLElement, list: HTMLElement, clear: HTMLButtonElement}} ui
   * @param {{toasts: import('./toasts.js').Toasts}} deps
   */
  constructor(ui, deps) {
    this.ui = ui;
    this.deps = deps;
    /** positions (channel@epoch:offset) already shown: history may repeat a live one */
    this.seen = new Set();
    ui.clear.addEventListener('click', () => {
      ui.list.replaceChildren();
      ui.panel.hidden = true;
    });
  }

  /**
   * A `broadcast` message.
   * @param {object} message
   * @param {{live?: boolean}} [options]  live ones also make a toast; stored ones (from a
   *   history reply) only join the list
   */
  add(message, { live = true } = {}) {
    if (!isAnnouncement(message)) return;
    if (typeof message.offset === 'number') {
      const key = `${message.channel}@${message.epoch}:${message.offset}`;
      if (this.seen.has(key)) return;
      this.seen.add(key);
    }
    const shown = broadcastText(message.data);
    const text = shown.text;
    const title = shown.title ?? (message.type === 'broadcast' ? null : typeTitle(message.type));
    const channel = message.channel ?? 'all';
    const el = h('li', { class: 'announcement', dataset: { channel } },
      h('span', { class: 'announcement-icon', 'aria-hidden': 'true' }),
      h('div', { class: 'announcement-body' },
        title ? h('strong', { class: 'announcement-title', text: title }) : null,
        h('p', { class: 'announcement-text', text }),
        h('p', { class: 'muted small' },
          h('time', { dateTime: message.timestamp ?? '', text: clockTime(message.timestamp) || 'now' }),
          channel === 'all' ? ' · to everyone' : ` · on ${channel}`)));
    // Newest first; a stored one goes in time order among the others.
    const list = this.ui.list;
    const before = live ? list.firstElementChild : [...list.children]
      .find((li) => (li.querySelector('time')?.dateTime ?? '') < (message.timestamp ?? '')) ?? null;
    list.insertBefore(el, before);
    while (list.children.length > MAX_ANNOUNCEMENTS) list.lastElementChild.remove();
    this.ui.panel.hidden = false;
    if (live) this.deps.toasts.show({ kind: 'broadcast', title: title ?? 'Announcement', text, timeout: 10000 });
  }
}

/**
 * The admin's broadcast form: a channel and a text, sent with the client's
 * `broadcast()` when it has one, else as the protocol's `broadcast` request through
 * `send()`/`request()`, else through the HTTP API (POST /broadcast, admin token).
 */
export class BroadcastForm {
  /**
   * @param {{panel: HTMLElement, form: HTMLFormElement, channel: HTMLSelectElement,
   *   text: HTMLTextAreaElement, status: HTMLElement}} ui
   * @param {{client: any, auth: import('./auth.js').Auth}} deps
   */
  constructor(ui, deps) {
    this.ui = ui;
    this.deps = deps;
    ui.form.addEventListener('submit', (event) => {
      event.preventDefault();
      this._send();
    });
    ui.text.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        this._send();
      }
    });
  }

  /** Shown to admins only. */
  setVisible(visible) {
    this.ui.panel.hidden = !visible;
    this.ui.form.hidden = !visible;
  }

  async _send() {
    const { channel, text, status, form } = this.ui;
    const message = text.value.trim();
    if (!message) {
      status.textContent = 'Write a message first.';
      text.focus();
      return;
    }
    const submit = form.querySelector('button[type="submit"]');
    submit.disabled = true;
    status.textContent = 'Sending…';
    try {
      const delivered = await this._broadcast(channel.value, { text: message });
      status.textContent = Number.isFinite(delivered)
        ? `Delivered to ${delivered} client${delivered === 1 ? '' : 's'}.`
        : 'Sent.';
      text.value = '';
    } catch (error) {
      status.textContent = `Not sent: ${error.message}`;
    } finally {
      submit.disabled = false;
    }
  }

  /** @returns {Promise<number|undefined>} how many clients it was delivered to */
  async _broadcast(channel, data) {
    const { client, auth } = this.deps;
    if (typeof client.broadcast === 'function') {
      const reply = await client.broadcast(channel, data);
      return typeof reply === 'number' ? reply : reply?.delivered;
    }
    const request = { type: 'broadcast', channel, message: data };
    for (const name of ['request', 'send']) {
      if (typeof client[name] === 'function') {
        const reply = await client[name](request);
        if (reply && typeof reply === 'object') {
          if (reply.type === 'error') throw new Error(reply.message ?? reply.code);
          return reply.delivered;
        }
        return undefined;
      }
    }
    const reply = await auth.api('broadcast', { method: 'POST', json: { channel, message: data } });
    return reply?.delivered;
  }
}
