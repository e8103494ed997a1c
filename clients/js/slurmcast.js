/**
 * slurmcast.js: a client for the slurmcast WebSocket gateway (docs/protocol.md).
 *
 * One ES module, no build step: it runs in browsers and in Node.js >= 20 (pass
 * the `ws` package's WebSocket there, Node 20 has none). Its one dependency,
 * `@msgpack/msgpack`, is imported only by clients that ask for msgpack.
 *
 * What it does for you:
 * - reconnects with exponential backoff and full jitter, authenticates again
 *   (first-message `auth`, token from `getToken`) and refreshes expiring tokens;
 * - resubscribes every channel from the last position it delivered, so the
 *   server replays what was missed; when it cannot (`recovered: false`, e.g. a
 *   server restart) the callback gets `{type: 'resync'}` and, if the
 *   subscription asked for snapshots, a fresh snapshot;
 * - delivers a snapshot as one message (all parts joined) before the deltas;
 * - drops any message whose offset is not above the last one delivered;
 * - changes a subscription's filter in place (`subscription.update()`: one request);
 * - tells who the server says you are (`client.identity`).
 *
 * TypeScript declarations, with every message the server sends, are in slurmcast.d.ts.
 *
 * @module slurmcast
 */

/**
 * @typedef {'disconnected'|'connecting'|'connected'|'closed'|'failed'} ClientState
 *
 * @typedef {{offset: number, epoch: string}} Position
 *   Where a message sits in its channel's stream; `epoch` changes when the
 *   server lost the channel's history.
 *
 * @typedef {object} ChannelMessage
 * @property {string} channel
 * @property {string} type  `job_update`, `node_update`, ..., or the synthetic `snapshot` / `resync`
 * @property {string} [timestamp]
 * @property {any} [data]  the payload; for `snapshot`, the array of every item
 * @property {number} [offset]
 * @property {string} [epoch]
 * @property {Position} [position]  on `snapshot`: the position the items correspond to
 *
 * @typedef {object} ClientOptions
 * @property {string} [token]  a JWT, sent as the first message
 * @property {() => (string|Promise<string>)} [getToken]  called before every
 *   connection and when the token expires; preferred over `token`
 * @property {any} [WebSocket]  WebSocket constructor (default `globalThis.WebSocket`)
 * @property {number} [backoffInitial=500]  ms, ceiling of the first reconnection delay
 * @property {number} [backoffMax=30000]  ms, largest ceiling; delays are random in [0, ceiling)
 * @property {number} [restartBackoffMax=2000]  ms, ceiling of the delays after the server
 *   closed saying it restarts (1001, 1012), for 15 attempts: every client of a restarted
 *   server is back within about that long of it answering again
 * @property {() => number} [random=Math.random]  jitter source in [0, 1)
 * @property {'json'|'msgpack'} [wireFormat='json']  `msgpack` asks the server for
 *   the `slurmcast.msgpack` subprotocol: binary MessagePack frames both ways, delivered
 *   as the same objects as JSON. A server that does not agree gets JSON.
 * @property {boolean|object} [perMessageDeflate]  for the `ws` package only: its
 *   `perMessageDeflate` option (`false`: no compression). Browsers negotiate
 *   compression themselves and take no such option.
 *
 * @typedef {object} SubscribeOptions
 * @property {Record<string, string|number|Array<string|number>>} [filter]  server-side filter
 * @property {boolean} [snapshot=false]  deliver the channel's current state first
 *   (jobs, nodes, metrics and alerts only)
 *
 * @typedef {object} Identity
 *   Who the server says this client is: its `authenticated` (or `refreshed`) reply.
 * @property {string} user
 * @property {ReadonlyArray<string>} roles
 * @property {number|null} expiresAt  when the token expires, in epoch milliseconds; null if never
 *
 * @typedef {object} HistoryReply
 * @property {string} channel
 * @property {Position} position  the channel's position now
 * @property {ChannelMessage[]} publications  oldest first
 * @property {boolean} [complete]  with `since`: whether these are all the messages after it
 */

/** An error reply from the server, or a client-side failure; `code` says which. */
export class SlurmcastError extends Error {
  /**
   * @param {string} code  the server's error code (`forbidden`, `invalid_token`, ...)
   *   or a client one (`closed`, `unsubscribed`, `auth_failed`, `conflicting_subscription`)
   * @param {string} message
   * @param {object} [reply]  the server's error message, when there is one
   */
  constructor(code, message, reply) {
    super(message);
    this.name = 'SlurmcastError';
    this.code = code;
    this.reply = reply;
  }
}

/** Unanswered requests allowed on the wire; below the server's 10 refusals before closing. */
const MAX_IN_FLIGHT = 4;
const OPEN = 1;
/** The subprotocol that asks the server for msgpack frames (docs/protocol.md). */
const MSGPACK_SUBPROTOCOL = 'slurmcast.msgpack';
const WIRE_FORMATS = ['json', 'msgpack'];
/** Closes announcing a restart: 1001 (slurmcast stopping), 1012 (Service Restart, from
 * other servers and proxies). While the server is down the delays stay below
 * `restartBackoffMax`, so every client is back within ~2 s of it answering again, spread over
 * that window; after RESTART_ATTEMPTS attempts they grow as after any failure. */
const RESTART_CODES = [1001, 1012];
const RESTART_ATTEMPTS = 15;
/** Requests a server may receive twice with the same outcome: sent again when the connection
 * dropped before their reply. Any other (a broadcast would be published twice) fails instead. */
const REPEATABLE = ['ping', 'history', 'mark_read'];
/** Requests whose state the client keeps itself: sent raw, they would leave it out of step. */
const MANAGED = ['auth', 'refresh', 'subscribe', 'unsubscribe'];
/** The server's bounds on a request `id` (docs/protocol.md); a rejected id is not echoed, so
 * its error could not be matched to the request. */
const MAX_ID_LENGTH = 128;

/** `@msgpack/msgpack`, imported on first use: a page that speaks JSON needs neither the
 * package nor an import map, and bundlers still see (and split out) the import. */
let msgpack = null;
function loadMsgpack() {
  msgpack ??= import('@msgpack/msgpack').catch((error) => {
    msgpack = null; // a later connect() may find it (an import map added meanwhile)
    throw error;
  });
  return msgpack;
}

/** One callback on one channel. Created by {@link SlurmcastClient#subscribe}. */
export class Subscription {
  /** @param {SlurmcastClient} client @param {ChannelEntry} entry @param {(m: ChannelMessage) => void} callback */
  constructor(client, entry, callback) {
    this._client = client;
    this._entry = entry;
    this.callback = callback;
    /** @type {string} */
    this.channel = entry.channel;
    /** Resolves with the start position once the server confirmed the subscription;
     * rejects with a {@link SlurmcastError} if it refused it.
     * @type {Promise<Position|null>} */
    this.ready = entry.ready;
  }

  /** @returns {Position|null} the position of the last message (or snapshot) delivered */
  get position() {
    const p = this._entry.position;
    return p ? { offset: p.offset, epoch: p.epoch } : null;
  }

  /** @returns {boolean} whether this subscription still receives messages */
  get active() {
    return this._entry.subs.has(this);
  }

  /** Stop delivering to this callback; the channel is left when no callback remains. */
  unsubscribe() {
    this._client._remove(this);
  }

  /**
   * Change the subscription's options in place: one `subscribe` request with the new ones,
   * which the server takes as a replacement (cheaper than unsubscribe + subscribe). The
   * options replace the old ones whole, as subscribe() would take them: no `filter` means
   * none, and `snapshot: true` delivers the new filter's snapshot to the same callback, as one
   * message, first (and again after a resync). Messages of the old filter still on the way
   * are dropped; from the reply on, only the new filter's arrive, and reconnections use it.
   *
   * A later update() before this one is answered replaces it: both settle with its outcome.
   * If the server refuses the new options, the promise rejects and the subscription goes on
   * with the old ones, resuming from the last message delivered (the server replays what came
   * meanwhile). Asking for the same filter without a snapshot sends nothing.
   * @param {SubscribeOptions} [options]
   * @returns {Promise<Position|null>} the new stream's start position, once the server
   *   confirmed it; rejects with a {@link SlurmcastError}: the server's refusal
   *   (`invalid_filter`, `forbidden`, `snapshot_not_available`, ...), `unsubscribed` (no longer
   *   active, or left before the reply), `conflicting_subscription` (other callbacks share the
   *   channel, hence its filter), `closed` or the reason the client failed
   */
  update(options = {}) {
    return this._client._update(this, options);
  }
}

/** The client's state of one channel, shared by the subscriptions on it. */
class ChannelEntry {
  constructor(channel, filter, snapshot) {
    this.channel = channel;
    this.filter = filter;
    this.snapshot = snapshot;
    /** @type {Set<Subscription>} */
    this.subs = new Set();
    /** @type {Position|null} last position delivered: the `since` of the next resubscription */
    this.position = null;
    this.subscribing = false; // a subscribe request is on the way
    this.started = false; // the server has confirmed it at least once
    this.snapshotDelivered = false;
    /** @type {{position: Position, data: any[]}|null} snapshot parts being joined */
    this.assembling = null;
    /** the subscribe request whose reply is awaited; a reply to an earlier one is stale */
    this.request = null;
    /** set by update(): the next subscribe starts a new stream (no `since`) and replaces the
     * server's subscription; cleared once the server confirmed it */
    this.fresh = false;
    /** update() promises waiting for the server's reply: @type {{resolve: Function, reject: Function}[]} */
    this.updates = [];
    /** the options before the pending update(s), restored if the server refuses them */
    this.previous = null;
    this.ready = new Promise((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => {}); // refusals are also reported to onError listeners
  }
}

/**
 * A self-healing connection to a slurmcast server.
 *
 * @example
 * const client = new SlurmcastClient('ws://localhost:5011/', {WebSocket});
 * client.subscribe('jobs', (m) => console.log(m.type, m.data), {snapshot: true});
 * await client.connect();
 */
export class SlurmcastClient {
  /** @param {string} url  `ws://host:5011/` or `wss://...` @param {ClientOptions} [options] */
  constructor(url, options = {}) {
    this.url = url;
    this._token = options.token;
    this._getToken = options.getToken;
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (typeof this._WebSocket !== 'function') {
      throw new TypeError('no WebSocket constructor: pass {WebSocket} (in Node.js: the ws package)');
    }
    this._backoffInitial = options.backoffInitial ?? 500;
    this._backoffMax = options.backoffMax ?? 30000;
    this._restartBackoffMax = options.restartBackoffMax ?? 2000;
    this._random = options.random ?? Math.random;
    this._wireFormat = options.wireFormat ?? 'json';
    if (!WIRE_FORMATS.includes(this._wireFormat)) {
      throw new TypeError(`wireFormat must be one of ${WIRE_FORMATS.join(', ')}, not ${JSON.stringify(this._wireFormat)}`);
    }
    /** set when the ws package failed a handshake answered without the msgpack subprotocol
     * (an older server): JSON from then on, until close() */
    this._msgpackRefused = false;
    this._perMessageDeflate = options.perMessageDeflate;
    /** @type {ClientState} */
    this.state = 'disconnected';
    /** @type {SlurmcastError|null} why the client gave up (state `failed`) */
    this.error = null;
    /** @type {Identity|null} */
    this._identity = null;
    /** the raw socket of the current connection (tests terminate it) */
    this._ws = null;
    this._attempt = 0;
    /** the server said it restarts (1001, 1012): delays stay short until connected again */
    this._restarting = false;
    this._timer = null;
    this._authRetried = false;
    /** @type {Map<string, ChannelEntry>} */
    this._channels = new Map();
    /** user requests (history, ping) not yet answered: re-sent after a reconnection */
    this._requests = new Map();
    this._nextId = 1;
    this._opens = 0;
    this._listeners = { state: new Set(), error: new Set(), message: new Set() };
    this._resetConnection();
  }

  // -- public API ---------------------------------------------------------------

  /**
   * Who the server says this client is, from its answer to `auth` (and to each `refresh`):
   * `{user, roles, expiresAt}`, frozen. Null until the first authentication, and when the
   * client connects without a token (a server run with `--auth none`). Replaced at every
   * (re)connection and refresh; the last one is kept while reconnecting.
   * @returns {Identity|null}
   */
  get identity() {
    return this._identity;
  }

  /**
   * Start connecting (if not already) and wait until connected and authenticated.
   * Keeps retrying through failures; rejects only if the client is closed or fails.
   * @returns {Promise<void>}
   */
  connect() {
    if (this.state === 'closed' || this.state === 'failed') {
      this.error = null;
      this._attempt = 0;
      this._authRetried = false;
      this._msgpackRefused = false; // the server may have been upgraded meanwhile
      this._setState('disconnected');
    }
    if (this.state === 'disconnected' && !this._timer) this._open();
    if (this.state === 'connected') return Promise.resolve();
    return new Promise((resolve, reject) => {
      const off = this.onState((state) => {
        if (state === 'connected') resolve();
        else if (state === 'closed') reject(new SlurmcastError('closed', 'the client was closed'));
        else if (state === 'failed') reject(this.error);
        else return;
        off();
      });
    });
  }

  /** Close the connection and stop reconnecting; pending requests are rejected. */
  close() {
    this._shutDown('closed', new SlurmcastError('closed', 'the client was closed'));
  }

  /**
   * Receive a channel's messages. Works before `connect()` and survives reconnections.
   * Callbacks on one channel share one server subscription, hence one filter.
   * @param {string} channel  `jobs`, `nodes`, `metrics`, `notifications`, `alerts` or `user:<name>`
   * @param {(message: ChannelMessage) => void} callback
   * @param {SubscribeOptions} [options]
   * @returns {Subscription}
   */
  subscribe(channel, callback, options = {}) {
    if (typeof channel !== 'string' || !channel) throw new TypeError('channel must be a name');
    if (typeof callback !== 'function') throw new TypeError('callback must be a function');
    const filter = options.filter ?? null;
    const snapshot = Boolean(options.snapshot);
    let entry = this._channels.get(channel);
    if (entry) {
      if (canonical(entry.filter) !== canonical(filter)) {
        throw new SlurmcastError('conflicting_subscription',
          `${channel} is already subscribed with another filter; unsubscribe it first or use another client`);
      }
      if (snapshot && (!entry.snapshot || entry.snapshotDelivered)) {
        throw new SlurmcastError('conflicting_subscription',
          `${channel} is already subscribed and its snapshot was not asked for or already delivered`);
      }
    } else {
      entry = new ChannelEntry(channel, filter, snapshot);
      this._channels.set(channel, entry);
      if (this.state === 'connected') this._sendSubscribe(entry);
    }
    const sub = new Subscription(this, entry, callback);
    entry.subs.add(sub);
    return sub;
  }

  /**
   * Remove `callback` from `channel`, or every callback on it when none is given.
   * @param {string} channel @param {(message: ChannelMessage) => void} [callback]
   */
  unsubscribe(channel, callback) {
    const entry = this._channels.get(channel);
    for (const sub of entry ? [...entry.subs] : []) {
      if (!callback || sub.callback === callback) sub.unsubscribe();
    }
  }

  /**
   * Stored messages of a channel: the last `limit`, or those after `since`.
   * Waits for the connection if there is none yet.
   * @param {string} channel
   * @param {{limit?: number, since?: Position, filter?: object}} [options]
   * @returns {Promise<HistoryReply>}
   */
  history(channel, { limit, since, filter } = {}) {
    const message = { type: 'history', channel };
    if (limit !== undefined) message.limit = limit;
    if (since) message.since = { offset: since.offset, epoch: since.epoch };
    if (filter) message.filter = filter;
    return this._userRequest(message).then(({ id, ...reply }) => reply);
  }

  /**
   * An application-level round trip to the server.
   * @returns {Promise<number>} the round-trip time in milliseconds
   */
  ping() {
    const started = Date.now();
    return this._userRequest({ type: 'ping' }).then(() => Date.now() - started);
  }

  /**
   * Mark stored notifications read (`mark_read`). A user marks only their own.
   * @param {string|Iterable<string>} ids  1 to 500 notification ids
   * @returns {Promise<string[]>} the ids that are now read and were the caller's to mark
   *   (already read ones included, unknown and other people's left out)
   */
  markRead(ids) {
    // A lone id is one id, not its characters.
    const list = typeof ids === 'string' ? [ids] : [...ids];
    return this._userRequest({ type: 'mark_read', ids: list }).then((reply) => reply.ids);
  }

  /**
   * Publish `message` on `channel` (`"all"`: to every client), as a `broadcast` message.
   * Admins only (a token with the `admin` role); others are refused with `forbidden`.
   * Not sent again after a dropped connection: it may have been published already.
   * @param {string} channel @param {object} message
   * @returns {Promise<number>} how many clients it was written to
   */
  broadcast(channel, message) {
    return this._userRequest({ type: 'broadcast', channel, message }).then((reply) => reply.delivered);
  }

  /**
   * Send a request as it is and wait for its reply: for requests this client has no method
   * for. It gets an `id` if it has none. Subscriptions and authentication are the client's
   * own (subscribe(), token/getToken); sending them raw would leave it out of step, so they
   * are refused.
   * @param {{type: string, id?: string|number}} message
   * @returns {Promise<object>} the server's reply; rejects with a {@link SlurmcastError} on an error reply
   */
  send(message) {
    if (message === null || typeof message !== 'object' || Array.isArray(message) || typeof message.type !== 'string') {
      throw new TypeError('message must be an object with a string type');
    }
    if (MANAGED.includes(message.type)) {
      throw new TypeError(`send() does not take '${message.type}': use subscribe(), unsubscribe() or the token options`);
    }
    const { id } = message;
    const validId = id == null || Number.isSafeInteger(id) || (typeof id === 'string' && id.length <= MAX_ID_LENGTH);
    if (!validId) throw new TypeError(`id must be a safe integer or a string of at most ${MAX_ID_LENGTH} characters`);
    return this._userRequest(message);
  }

  /**
   * @param {(state: ClientState, detail: object) => void} listener  called on every change;
   *   `detail` has `{code, reason, delay}` on `disconnected`, `{error}` on `failed`
   * @returns {() => void} removes the listener
   */
  onState(listener) {
    return this._on('state', listener);
  }

  /**
   * Errors not tied to a promise: a subscription refused on resubscribing, a token
   * that could not be refreshed, an exception thrown by a callback.
   * @param {(error: Error) => void} listener @returns {() => void}
   */
  onError(listener) {
    return this._on('error', listener);
  }

  /**
   * Messages for every client (`channel: "all"`, an operator's broadcast).
   * @param {(message: ChannelMessage) => void} listener @returns {() => void}
   */
  onMessage(listener) {
    return this._on('message', listener);
  }

  // -- connection lifecycle -------------------------------------------------------

  _resetConnection() {
    this._outbox = []; // requests waiting to be sent, in order
    this._inflight = []; // sent, waiting for their reply, in order
    this._refused = []; // refused with rate_limited: sent again after the pause
    this._pausedUntil = 0;
    clearTimeout(this._pauseTimer);
    this._pauseTimer = null;
    this._authenticated = false;
    this._authError = null;
    /** the msgpack codec when the server agreed to it on this connection, else null (JSON) */
    this._codec = null;
    this._subprotocolMissing = false;
  }

  async _open() {
    const attempt = ++this._opens;
    this._setState('connecting');
    let token = this._token;
    if (this._getToken) {
      try {
        token = await this._getToken();
      } catch (cause) {
        if (attempt !== this._opens || this.state !== 'connecting') return;
        this._emit('error', new SlurmcastError('token_unavailable', `getToken failed: ${cause}`));
        this._scheduleReconnect(this._backoff(), {});
        return;
      }
      if (attempt !== this._opens || this.state !== 'connecting') return; // closed meanwhile
    }
    const askMsgpack = this._wireFormat === 'msgpack' && !this._msgpackRefused;
    let codec = null;
    if (askMsgpack) {
      try {
        codec = await loadMsgpack();
      } catch (cause) {
        if (attempt !== this._opens || this.state !== 'connecting') return;
        this._shutDown('failed', new SlurmcastError('msgpack_unavailable',
          `wireFormat 'msgpack' needs the @msgpack/msgpack package: ${cause?.message ?? cause}`));
        return;
      }
      if (attempt !== this._opens || this.state !== 'connecting') return;
    }
    // Exactly `new WebSocket(url)` unless asked for more: browsers take no third argument.
    const args = [this.url];
    if (askMsgpack || this._perMessageDeflate !== undefined) args.push(askMsgpack ? [MSGPACK_SUBPROTOCOL] : []);
    if (this._perMessageDeflate !== undefined) args.push({ perMessageDeflate: this._perMessageDeflate });
    let ws;
    try {
      ws = new this._WebSocket(...args);
    } catch (cause) { // a malformed URL: retrying cannot help
      this._shutDown('failed', new SlurmcastError('invalid_url', String(cause?.message ?? cause)));
      return;
    }
    // Browsers default to Blob, which cannot be read synchronously; ws to Buffer.
    ws.binaryType = 'arraybuffer';
    this._ws = ws;
    this._resetConnection();
    ws.onopen = () => {
      if (ws !== this._ws) return;
      this._codec = ws.protocol === MSGPACK_SUBPROTOCOL ? codec : null;
      if (token) {
        this._enqueue({ type: 'auth', token }, (reply) => this._onAuthReply(reply));
      } else {
        this._identity = null; // anonymous: nobody the server vouches for
        this._onReady();
      }
    };
    ws.onmessage = (event) => {
      if (ws === this._ws) this._onFrame(event.data);
    };
    ws.onclose = (event) => {
      if (ws === this._ws) this._onClose(event.code, event.reason ?? '');
    };
    ws.onerror = (event) => {
      // A close event always follows. Browsers accept an answer without the subprotocol
      // (and speak JSON); the ws package fails that handshake, with this message.
      if (ws === this._ws && askMsgpack && /no subprotocol/i.test(event?.message ?? '')) {
        this._subprotocolMissing = true;
      }
    };
  }

  _onAuthReply(reply) {
    if (reply.type === 'authenticated') {
      this._setIdentity(reply);
      this._onReady();
    } else { // the server closes the connection (1008) right after
      this._authError = new SlurmcastError(reply.code ?? 'auth_failed', reply.message ?? 'authentication failed', reply);
    }
  }

  _onReady() {
    this._authenticated = true;
    this._attempt = 0;
    this._restarting = false;
    this._authRetried = false;
    // Resubscribe before announcing the state: a listener's new requests go after these.
    for (const entry of this._channels.values()) this._sendSubscribe(entry);
    for (const request of this._requests.values()) this._outbox.push(request);
    this._pump();
    this._setState('connected');
  }

  _onClose(code, reason) {
    const { _authError: authError, _authenticated: authenticated } = this;
    const subprotocolMissing = this._subprotocolMissing;
    // Sent and unanswered: the server may have acted on them. Refused ones (rate_limited) were not.
    const unsure = this._inflight.filter((request) => request.key !== undefined && !request.repeatable);
    this._ws = null;
    this._resetConnection();
    for (const request of unsure) {
      this._requests.delete(request.key);
      request.reject(new SlurmcastError('connection_lost',
        `the connection was lost before the reply to '${request.message.type}'; it may have been processed`));
    }
    for (const entry of this._channels.values()) {
      entry.subscribing = false;
      entry.assembling = null; // an unfinished snapshot is asked for again
    }
    if (this.state === 'closed' || this.state === 'failed') return;
    if (subprotocolMissing) {
      // An older server: it works, in JSON. Not a failure, so no backoff.
      this._msgpackRefused = true;
      this._scheduleReconnect(0, { code, reason });
      return;
    }
    const authFailed = code === 1008 &&
      (authError !== null || !authenticated || reason.startsWith('Authentication failed'));
    if (authFailed) {
      // Maybe the token was stale: ask getToken once more, then give up.
      if (this._getToken && !this._authRetried) {
        this._authRetried = true;
        this._scheduleReconnect(this._backoff(), { code, reason });
      } else {
        const error = authError ?? new SlurmcastError('auth_failed', reason || 'authentication failed');
        this._shutDown('failed', error);
      }
    } else if (code === 1009) {
      this._shutDown('failed', new SlurmcastError('message_too_big', `the server refused a frame as too big: ${reason}`));
    } else if (code === 4001 && !this._getToken) {
      this._shutDown('failed', new SlurmcastError('token_expired', 'the token expired and there is no getToken to renew it'));
    } else if (code === 4029) { // too many connections: come back later
      const delay = this._backoffMax * (0.5 + this._random() / 2);
      this._scheduleReconnect(delay, { code, reason });
    } else { // 1001 going away, 1006 dropped, 1011, 4001 (fresh token), 4008 slow consumer, ...
      if (RESTART_CODES.includes(code)) this._restarting = true;
      this._scheduleReconnect(this._backoff(), { code, reason });
    }
  }

  /** Full jitter: a random delay below a ceiling that doubles with each attempt; after
   * a restart announcement, at most restartBackoffMax for RESTART_ATTEMPTS attempts. */
  _backoff() {
    let ceiling = Math.min(this._backoffMax, this._backoffInitial * 2 ** this._attempt);
    if (this._restarting && this._attempt < RESTART_ATTEMPTS) ceiling = Math.min(ceiling, this._restartBackoffMax);
    this._attempt += 1;
    return this._random() * ceiling;
  }

  _scheduleReconnect(delay, { code, reason }) {
    this._setState('disconnected', { code, reason, delay });
    this._timer = setTimeout(() => {
      this._timer = null;
      if (this.state === 'disconnected') this._open();
    }, delay);
  }

  _shutDown(state, error) {
    clearTimeout(this._timer);
    this._timer = null;
    const ws = this._ws;
    this._ws = null;
    this._resetConnection();
    if (ws && ws.readyState <= OPEN) ws.close(1000);
    this.error = state === 'failed' ? error : null;
    const pending = [...this._requests.values()];
    this._requests.clear();
    for (const request of pending) request.reject(error);
    for (const entry of this._channels.values()) {
      // The new options stay, for a later connect(), as a fresh subscription.
      entry.previous = null;
      this._settleUpdates(entry, error);
    }
    if (this.state !== state) this._setState(state, { error });
  }

  // -- requests -------------------------------------------------------------------

  /** A request made through the public API: kept across reconnections until answered, but
   * one that is not REPEATABLE fails if the connection drops after it was sent. */
  _userRequest(message) {
    if (this.state === 'closed' || this.state === 'failed') {
      return Promise.reject(this.error ?? new SlurmcastError('closed', 'the client was closed'));
    }
    return new Promise((resolve, reject) => {
      // The caller's own id goes on the wire; the key only tells requests apart here.
      const key = this._nextId++;
      const request = {
        message: { ...message, id: message.id ?? key },
        key,
        repeatable: REPEATABLE.includes(message.type),
        reject,
        onReply: (reply) => {
          this._requests.delete(key);
          if (reply.type === 'error') reject(new SlurmcastError(reply.code, reply.message, reply));
          else resolve(reply);
        },
      };
      this._requests.set(key, request);
      if (this.state === 'connected') {
        this._outbox.push(request);
        this._pump();
      }
    });
  }

  /** Queue a request of this connection only (auth, subscribe, ...). */
  _enqueue(message, onReply) {
    const id = this._nextId++;
    this._outbox.push({ message: { ...message, id }, onReply });
    this._pump();
    return id;
  }

  /** Send what the window and the server's rate limit allow. */
  _pump() {
    const ws = this._ws;
    const waitFor = this._pausedUntil - Date.now();
    if (waitFor > 0) {
      this._pauseTimer ??= setTimeout(() => {
        this._pauseTimer = null;
        this._pump();
      }, waitFor);
      return;
    }
    if (this._refused.length) {
      this._outbox.unshift(...this._refused);
      this._refused = [];
    }
    while (ws && ws.readyState === OPEN && this._outbox.length && this._inflight.length < MAX_IN_FLIGHT) {
      const request = this._outbox.shift();
      this._inflight.push(request);
      ws.send(this._codec ? this._codec.encode(request.message, { ignoreUndefined: true }) : JSON.stringify(request.message));
    }
  }

  // -- incoming -------------------------------------------------------------------

  _onFrame(data) {
    // A binary frame is msgpack where the server agreed to it; anything else is JSON.
    const codec = typeof data === 'string' ? null : this._codec;
    let message;
    try {
      message = codec ? codec.decode(data) : JSON.parse(typeof data === 'string' ? data : new TextDecoder().decode(data));
    } catch {
      const [code, format] = codec ? ['invalid_msgpack', 'msgpack'] : ['invalid_json', 'JSON'];
      this._emit('error', new SlurmcastError(code, `the server sent a frame that is not ${format}`));
      return;
    }
    if (message === null || typeof message !== 'object') return;
    // A refusal is not the request's answer, even when it names the request: sent again later.
    const refusal = message.type === 'error' && message.code === 'rate_limited';
    if (message.id !== undefined && !refusal) {
      const index = this._inflight.findIndex((r) => r.message.id === message.id);
      if (index >= 0) {
        const [request] = this._inflight.splice(index, 1);
        request.onReply(message);
        this._pump();
        return;
      }
    }
    if (message.type === 'error') {
      this._onError(message);
    } else if (message.type === 'snapshot') {
      this._onSnapshot(message);
    } else if (message.type === 'unsubscribed') {
      // Without an id: a refreshed token no longer allows this channel.
      const entry = this._channels.get(message.channel);
      if (entry) this._drop(entry, new SlurmcastError('forbidden', message.message, message));
    } else if (message.channel === 'all') {
      this._emit('message', message);
    } else if (typeof message.channel === 'string' && 'data' in message) {
      this._onChannelMessage(message);
    }
  }

  _onError(message) {
    if (message.code === 'rate_limited') {
      // Not processed. Servers that name the request say which; others need not: replies
      // come in order, so it is the oldest request's.
      const named = message.id === undefined ? -1 : this._inflight.findIndex((r) => r.message.id === message.id);
      const [request] = this._inflight.splice(Math.max(named, 0), 1);
      if (request) this._refused.push(request);
      this._pausedUntil = Math.max(this._pausedUntil, Date.now() + (message.retry_after ?? 1) * 1000);
      this._pump();
    } else if (message.code === 'token_expired' && this._getToken) {
      this._refresh();
    } else {
      this._emit('error', new SlurmcastError(message.code, message.message, message));
    }
  }

  async _refresh() {
    const ws = this._ws;
    let token;
    try {
      token = await this._getToken();
    } catch (cause) {
      this._emit('error', new SlurmcastError('token_unavailable', `getToken failed: ${cause}`));
      return; // the server closes with 4001; the reconnection asks getToken again
    }
    if (ws !== this._ws) return;
    this._enqueue({ type: 'refresh', token }, (reply) => {
      if (reply.type === 'error') this._emit('error', new SlurmcastError(reply.code, reply.message, reply));
      else if (reply.type === 'refreshed') this._setIdentity(reply);
    });
  }

  /** From an `authenticated` or `refreshed` reply. A server without authentication answers
   * an `auth` with `user: null`: no identity. */
  _setIdentity(reply) {
    if (typeof reply.user !== 'string') {
      this._identity = null;
      return;
    }
    const expires = typeof reply.expires_at === 'string' ? Date.parse(reply.expires_at) : NaN;
    this._identity = Object.freeze({
      user: reply.user,
      roles: Object.freeze(Array.isArray(reply.roles) ? reply.roles.map(String) : []),
      expiresAt: Number.isNaN(expires) ? null : expires,
    });
  }

  // -- subscriptions ----------------------------------------------------------------

  _sendSubscribe(entry) {
    const message = { type: 'subscribe', channel: entry.channel };
    // After update() the old stream's position means nothing to the new filter.
    const since = entry.fresh ? null : entry.position;
    if (since) message.since = { offset: since.offset, epoch: since.epoch };
    if (entry.snapshot) message.snapshot = true;
    if (entry.filter) message.filter = entry.filter;
    // Options make the server replace its subscription; without any it would keep the old one.
    else if (entry.fresh) message.filter = {};
    entry.subscribing = true;
    const request = {};
    entry.request = request;
    this._enqueue(message, (reply) => this._onSubscribed(entry, reply, since !== null, request));
  }

  _onSubscribed(entry, reply, withSince, request) {
    if (this._channels.get(entry.channel) !== entry) {
      // Unsubscribed meanwhile: leave the server's subscription too, unless it is a new one's.
      if (reply.type === 'subscribed' && !this._channels.has(entry.channel)) {
        this._enqueue({ type: 'unsubscribe', channel: entry.channel }, () => {});
      }
      return;
    }
    // update() sent another subscribe after this one: the server replaced it, its reply decides.
    if (request !== entry.request) return;
    entry.subscribing = false;
    if (reply.type === 'error') {
      if (reply.code === 'unauthorized') {
        this._shutDown('failed', new SlurmcastError('unauthorized',
          'the server requires authentication: pass {token} or {getToken}', reply));
        return;
      }
      const error = new SlurmcastError(reply.code, reply.message, reply);
      if (entry.previous) {
        // The new options were refused: back to the old ones. The server kept the old
        // subscription or (a store or broker failure) has none: either way, resume it from
        // the last message delivered.
        Object.assign(entry, entry.previous);
        entry.previous = null;
        error.channel = entry.channel;
        this._settleUpdates(entry, error);
        this._sendSubscribe(entry);
      } else {
        this._drop(entry, error);
      }
      return;
    }
    const position = reply.position ?? null;
    if (withSince && reply.recovered === false) this._deliver(entry, { type: 'resync', channel: entry.channel });
    if (entry.snapshot && reply.recovered !== true) {
      entry.assembling = { position, data: [] }; // the position is committed with the last part
    } else if (reply.recovered !== true && position) {
      entry.position = position; // recovered: the replayed messages advance it one by one
    }
    entry.fresh = false;
    entry.previous = null;
    this._settleUpdates(entry, null, position);
    if (!entry.started) {
      entry.started = true;
      entry.resolveReady(position);
    }
  }

  /** Change `sub`'s channel's options (Subscription#update). */
  _update(sub, options) {
    if (options === null || typeof options !== 'object') throw new TypeError('options must be an object');
    const entry = sub._entry;
    if (this.state === 'closed' || this.state === 'failed') {
      return Promise.reject(this.error ?? new SlurmcastError('closed', 'the client was closed'));
    }
    if (!entry.subs.has(sub)) {
      return Promise.reject(new SlurmcastError('unsubscribed', `this subscription to ${entry.channel} is no longer active`));
    }
    if (entry.subs.size > 1) {
      return Promise.reject(new SlurmcastError('conflicting_subscription',
        `other callbacks share ${entry.channel}'s subscription, hence its filter; unsubscribe them first or use another client`));
    }
    const filter = options.filter ?? null;
    const snapshot = Boolean(options.snapshot);
    const settled = entry.started && !entry.subscribing && !entry.fresh && !entry.updates.length;
    if (settled && !snapshot && canonical(filter) === canonical(entry.filter)) {
      entry.snapshot = false; // no snapshot after a resync from now on
      return Promise.resolve(sub.position);
    }
    entry.previous ??= {
      filter: entry.filter, snapshot: entry.snapshot, snapshotDelivered: entry.snapshotDelivered, fresh: entry.fresh,
    };
    entry.filter = filter;
    entry.snapshot = snapshot;
    entry.snapshotDelivered = false;
    entry.fresh = true;
    entry.assembling = null; // the rest of an old snapshot is not wanted any more
    const done = new Promise((resolve, reject) => entry.updates.push({ resolve, reject }));
    if (this.state === 'connected') this._sendSubscribe(entry);
    return done;
  }

  /** Settle the pending update() promises of `entry`: rejected with `error`, or resolved. */
  _settleUpdates(entry, error, position = null) {
    const updates = entry.updates;
    entry.updates = [];
    for (const update of updates) {
      if (error) update.reject(error);
      else update.resolve(position);
    }
  }

  _onSnapshot(message) {
    const entry = this._channels.get(message.channel);
    const assembling = entry?.assembling;
    if (!assembling) return;
    assembling.data.push(...message.data);
    if (message.part < message.parts) return;
    entry.assembling = null;
    entry.position = message.position;
    entry.snapshotDelivered = true;
    this._deliver(entry, {
      type: 'snapshot', channel: entry.channel, position: message.position, data: assembling.data,
    });
  }

  _onChannelMessage(message) {
    const entry = this._channels.get(message.channel);
    if (!entry) return;
    if (typeof message.offset === 'number') {
      const last = entry.position;
      if (last && message.epoch !== last.epoch) {
        // The history changed under a live subscription: let the server say what was lost.
        if (!entry.subscribing) this._sendSubscribe(entry);
        return;
      }
      if (entry.subscribing || entry.assembling) return; // its replacement is on the way
      if (last && message.offset <= last.offset) return; // already delivered
      entry.position = { offset: message.offset, epoch: message.epoch };
    }
    this._deliver(entry, message);
  }

  _deliver(entry, message) {
    for (const sub of [...entry.subs]) {
      try {
        sub.callback(message);
      } catch (error) {
        this._emit('error', error);
      }
    }
  }

  _remove(sub) {
    const entry = sub._entry;
    if (!entry.subs.delete(sub) || entry.subs.size) return;
    this._channels.delete(entry.channel);
    if (!entry.started) entry.rejectReady(new SlurmcastError('unsubscribed', `left ${entry.channel} before it started`));
    this._settleUpdates(entry, new SlurmcastError('unsubscribed', `left ${entry.channel} before the update was confirmed`));
    if (this.state === 'connected') this._enqueue({ type: 'unsubscribe', channel: entry.channel }, () => {});
  }

  /** The server refused a channel: it is no longer subscribed. */
  _drop(entry, error) {
    this._channels.delete(entry.channel);
    for (const sub of entry.subs) entry.subs.delete(sub);
    if (!entry.started) entry.rejectReady(error);
    error.channel = entry.channel;
    this._settleUpdates(entry, error);
    this._emit('error', error);
  }

  // -- events ---------------------------------------------------------------------

  _setState(state, detail = {}) {
    this.state = state;
    this._emit('state', state, detail);
  }

  _on(kind, listener) {
    this._listeners[kind].add(listener);
    return () => this._listeners[kind].delete(listener);
  }

  _emit(kind, ...args) {
    const listeners = [...this._listeners[kind]];
    if (kind === 'error' && !listeners.length) console.error('slurmcast:', args[0]);
    for (const listener of listeners) {
      try {
        listener(...args);
      } catch (error) {
        if (kind !== 'error') this._emit('error', error);
      }
    }
  }
}

/**
 * Create a client and start connecting: the seed's `connect()`. Subscribe and make requests
 * right away; they go out once connected. Whether it connected is told by `client.state`,
 * `onState` and `await client.connect()`, so nothing here rejects unobserved.
 *
 * @example
 * const client = connect();  // ws://localhost:5011, the server's default port
 * client.subscribe('jobs', (m) => console.log(m.type, m.data));
 *
 * @param {string} [url='ws://localhost:5011'] @param {ClientOptions} [options]
 * @returns {SlurmcastClient}
 */
export function connect(url = 'ws://localhost:5011', options = {}) {
  const client = new SlurmcastClient(url, options);
  client.connect().catch(() => {}); // a closed or failed client says so through its state
  return client;
}

/** A stable text form of a filter, for comparing two of them. */
function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(',')}}`;
  }
  return JSON.stringify(value ?? null);
}

export default SlurmcastClient;
