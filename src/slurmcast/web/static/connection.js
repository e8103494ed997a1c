/**
 * connection.js: the connection indicator (#connection). It follows the client's
 * states and, after a reconnection, says how it went: `recovered` when every
 * subscription got back exactly what it missed, `resynced` when one of them could
 * not (the client delivered `{type: 'resync'}` and a fresh snapshot). The outcome
 * stays visible in the indicator's title (and `data-last-recovery`) after it goes
 * back to `live`.
 * @module connection
 */
import { clockTime } from './format.js';

/** How long `recovered` / `resynced` stay shown before the indicator says `live` again. */
const OUTCOME_MS = 10000;

const LABELS = {
  connecting: 'Connecting…',
  live: 'Live',
  reconnecting: 'Reconnecting…',
  recovered: 'Recovered',
  resynced: 'Resynced',
  offline: 'Offline',
};

export class ConnectionIndicator {
  /**
   * @param {HTMLElement} el  #connection
   * @param {import('./slurmcast.js').SlurmcastClient} client
   */
  constructor(el, client) {
    this.el = el;
    this.label = el.querySelector('.connection-label');
    this.client = client;
    this.everConnected = false;
    /** channels that resynced since the current reconnection started */
    this._resynced = new Set();
    this._generation = 0;
    this._outcomeTimer = null;
    this._lastOutcome = '';
    this._disconnectedAt = null;
    client.onState((state, detail) => this._onState(state, detail ?? {}));
  }

  /** A channel delivered `resync` (after a reconnection, or an epoch change under it). */
  noteResync(channel) {
    this._resynced.add(channel);
    if (this.el.dataset.state === 'live' || this.el.dataset.state === 'recovered') {
      // Not part of a reconnection: the server's history changed under a live subscription.
      this._outcome('resynced', `${channel} resynced from a snapshot at ${clockTime(Date.now())}`);
      this._resynced.clear();
    }
  }

  /** Show a state that does not come from the client (signed out, ...). */
  setOffline(reason) {
    this._set('offline', reason);
  }

  _onState(state, detail) {
    if (state === 'connecting') {
      if (this.everConnected) this._set('reconnecting', this._reconnectTitle('reconnecting'));
      else this._set('connecting', `Connecting to ${this.client.url}`);
    } else if (state === 'disconnected') {
      this._disconnectedAt ??= Date.now();
      const why = detail.code ? `closed with ${detail.code}${detail.reason ? ` (${detail.reason})` : ''}` : 'could not connect';
      const retry = Number.isFinite(detail.delay) ? `; retrying in ${(detail.delay / 1000).toFixed(1)} s` : '';
      if (this.everConnected) this._set('reconnecting', `Connection lost: ${why}${retry}. ${this._lastOutcome}`.trim());
      else this._set('connecting', `Cannot reach ${this.client.url}: ${why}${retry}`);
    } else if (state === 'connected') {
      if (!this.everConnected) {
        this.everConnected = true;
        this._resynced.clear();
        this._set('live', `Connected to ${this.client.url} since ${clockTime(Date.now())}`);
        return;
      }
      // Replies come in request order and the client resubscribes before announcing
      // `connected`: once a ping sent now is answered, every resubscription was answered
      // and any `resync` delivered.
      const generation = ++this._generation;
      this.client.ping().then(() => {
        if (generation !== this._generation || this.client.state !== 'connected') return;
        const down = this._disconnectedAt ? ` after ${((Date.now() - this._disconnectedAt) / 1000).toFixed(1)} s offline` : '';
        this._disconnectedAt = null;
        if (this._resynced.size) {
          const channels = [...this._resynced].sort().join(', ');
          this._outcome('resynced', `Reconnected at ${clockTime(Date.now())}${down}: ${channels} could not be recovered and resynced from a snapshot`);
        } else {
          this._outcome('recovered', `Reconnected at ${clockTime(Date.now())}${down}: every channel recovered, nothing missed`);
        }
        this._resynced.clear();
      }, () => {});
    } else if (state === 'failed') {
      this._set('offline', `Disconnected: ${this.client.error?.message ?? 'the client gave up'}`);
    } else if (state === 'closed') {
      this._set('offline', 'Disconnected');
    }
  }

  _reconnectTitle(what) {
    return `${what === 'reconnecting' ? 'Reconnecting' : 'Connecting'} to ${this.client.url}. ${this._lastOutcome}`.trim();
  }

  _outcome(state, title) {
    this._lastOutcome = `Last reconnection: ${title.charAt(0).toLowerCase()}${title.slice(1)}.`;
    this.el.dataset.lastRecovery = state;
    this._set(state, title);
    clearTimeout(this._outcomeTimer);
    this._outcomeTimer = setTimeout(() => {
      if (this.el.dataset.state === state) this._set('live', `Live. ${this._lastOutcome}`);
    }, OUTCOME_MS);
  }

  _set(state, title) {
    if (state !== 'recovered' && state !== 'resynced') clearTimeout(this._outcomeTimer);
    this.el.dataset.state = state;
    this.el.title = title;
    this.label.textContent = LABELS[state] ?? state;
  }
}
