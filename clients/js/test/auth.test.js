// Authentication against a real server run with --auth jwt: tokens, failures, expiry.
import assert from 'node:assert/strict';
import { after, afterEach, before, test } from 'node:test';
import { WebSocket } from 'ws';

import { SlurmcastClient } from '../slurmcast.js';
import { Recorder, QUIET, Server, hs256 } from '../support/server.js';

const WAIT = { timeout: 60000 }; // per test: a guard against hanging only
const SECRET = 'js-client-test-secret-0123456789abcdef';
const ENV = { SLURMCAST_JWT_SECRET: SECRET, SLURMCAST_API_KEY: 'js-client-test-api-key' };

const cleanup = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()();
});

// One server for every test here: exact expiry, and a short grace after it.
let server;
before(async () => {
  const args = [...QUIET, '--auth', 'jwt', '--jwt-leeway', '0', '--refresh-grace', '0.5'];
  server = await Server.start({ args, env: ENV });
});
after(() => server?.kill());

/** A token for `sub` valid `ttl` seconds from now (at least, whole seconds). */
function token(sub = 'alice', ttl = 3600, secret = SECRET, extra = {}) {
  const now = Math.floor(Date.now() / 1000);
  return hs256(secret, { sub, iat: now, exp: now + 1 + ttl, ...extra });
}

/** The `exp` of a token, in epoch ms. */
function expiry(jwt) {
  return JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString()).exp * 1000;
}

/** A WebSocket that records what the server sends, to observe replies the client consumes. */
function spying(recorder) {
  return class extends WebSocket {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (event) => recorder.push(JSON.parse(event.data)));
    }
  };
}

function startClient(url, options) {
  const client = new SlurmcastClient(url, { WebSocket, backoffInitial: 20, backoffMax: 200, ...options });
  cleanup.push(() => client.close());
  return client;
}

test('getToken is asked before every connection; the stream resumes', WAIT, async () => {
  let calls = 0;
  const client = startClient(server.url, { getToken: async () => { calls += 1; return token(); } });
  const seen = new Recorder();
  const sub = client.subscribe('jobs', seen.push);
  await client.connect();
  await sub.ready;
  await server.publish('jobs', { seq: 0 });
  await seen.count(() => true);
  const reconnected = new Promise((resolve) => client.onState((s) => s === 'connected' && resolve()));
  client._ws.terminate();
  await reconnected;
  assert.equal(calls, 2);
  await server.publish('jobs', { seq: 1 });
  const [first, second] = await seen.count(() => true, 2);
  assert.deepEqual([first.data.seq, second.data.seq], [0, 1]);
  assert.equal(second.offset, first.offset + 1);
});

test('identity: who the server says the client is, set again at every connection', WAIT, async () => {
  const tokens = [token('alice', 3600, SECRET, { roles: ['admin'] }), token('alice', 7200, SECRET, { roles: ['admin'] })];
  let calls = 0;
  const client = startClient(server.url, { getToken: () => tokens[Math.min(calls++, 1)] });
  assert.equal(client.identity, null, 'nobody before authenticating');
  const seen = [];
  client.onState((state) => {
    if (state === 'connected') seen.push(client.identity); // already set when `connected` is announced
  });
  await client.connect();
  assert.deepEqual({ ...client.identity }, { user: 'alice', roles: ['admin'], expiresAt: expiry(tokens[0]) });
  assert.ok(Object.isFrozen(client.identity) && Object.isFrozen(client.identity.roles));
  assert.throws(() => { client.identity = null; }, TypeError, 'read-only');

  const reconnected = new Promise((resolve) => client.onState((s) => s === 'connected' && resolve()));
  const dropped = new Promise((resolve) => client.onState((s) => s === 'disconnected' && resolve()));
  client._ws.terminate();
  await dropped;
  assert.equal(client.identity.user, 'alice', 'kept while reconnecting');
  await reconnected;
  assert.equal(calls, 2);
  assert.deepEqual({ ...client.identity }, { user: 'alice', roles: ['admin'], expiresAt: expiry(tokens[1]) });
  assert.deepEqual(seen.map((identity) => identity?.expiresAt), [expiry(tokens[0]), expiry(tokens[1])]);
});

test('a refused token: getToken is asked once more', WAIT, async () => {
  const tokens = [token('alice', 3600, 'not-the-secret'), token()];
  let calls = 0;
  const client = startClient(server.url, { getToken: () => tokens[calls++] });
  await client.connect();
  assert.equal(calls, 2);
  assert.equal(client.state, 'connected');
});

test('refused twice: the client stops in the failed state', WAIT, async () => {
  let calls = 0;
  const client = startClient(server.url, { getToken: () => { calls += 1; return token('alice', 3600, 'wrong'); } });
  const states = new Recorder();
  client.onState(states.push);
  await assert.rejects(client.connect(), (error) => error.code === 'invalid_token');
  assert.equal(calls, 2);
  assert.equal(client.state, 'failed');
  assert.equal(client.error.code, 'invalid_token');
  assert.deepEqual(states.items, ['connecting', 'disconnected', 'connecting', 'failed']);
  await assert.rejects(client.ping(), (error) => error.code === 'invalid_token');
});

test('a static token that is refused fails at once', WAIT, async () => {
  const client = startClient(server.url, { token: 'not-a-jwt' });
  await assert.rejects(client.connect(), (error) => error.code === 'invalid_token');
  assert.equal(client.state, 'failed');
});

test('no token for a server that needs one fails clearly', WAIT, async () => {
  const client = startClient(server.url);
  client.subscribe('jobs', () => {});
  const failed = new Promise((resolve) => client.onState((s) => s === 'failed' && resolve()));
  await client.connect().catch(() => {}); // resolves on open: the server says nothing until asked
  await failed;
  assert.equal(client.error.code, 'unauthorized');
});

test('an expiring token is refreshed on the same connection', WAIT, async () => {
  const received = new Recorder();
  const tokens = [token('alice', 1), token('alice')];
  let calls = 0;
  const client = startClient(server.url, {
    WebSocket: spying(received),
    getToken: () => tokens[Math.min(calls++, 1)],
  });
  const states = new Recorder();
  client.onState(states.push);
  await client.connect();
  // The server warns when the token expires; the client answers with a refresh.
  await received.count((m) => m.type === 'error' && m.code === 'token_expired');
  const [refreshed] = (await received.count((m) => m.type === 'refreshed')).filter((m) => m.type === 'refreshed');
  assert.equal(refreshed.user, 'alice');
  assert.equal(calls, 2);
  assert.equal(client.identity.expiresAt, expiry(tokens[1]), 'the identity follows the refresh');
  await client.ping();
  assert.deepEqual(states.items, ['connecting', 'connected']);
});

test('a token that cannot be refreshed: closed with 4001, reconnected with a fresh one', WAIT, async () => {
  // 1: expires soon; 2 (the refresh): another user's, refused; 3 (reconnecting): good.
  const tokens = [token('alice', 1), token('mallory'), token('alice')];
  let calls = 0;
  const client = startClient(server.url, { getToken: () => tokens[Math.min(calls++, 2)] });
  const errors = new Recorder();
  client.onError(errors.push);
  const states = new Recorder();
  client.onState((state, detail) => states.push({ state, ...detail }));
  const seen = new Recorder();
  const sub = client.subscribe('jobs', seen.push);
  await client.connect();
  await sub.ready;
  await server.publish('jobs', { seq: 0 });
  await seen.count(() => true);
  await states.count((s) => s.code === 4001);
  await states.count((s) => s.state === 'connected', 2);
  assert.equal(calls, 3);
  assert.ok(errors.items.some((e) => e.code === 'forbidden'), 'the refused refresh is reported');
  await server.publish('jobs', { seq: 1 });
  const [first, second] = await seen.count(() => true, 2);
  assert.equal(second.type, 'broadcast', 'recovered: no resync');
  assert.equal(second.offset, first.offset + 1);
});

test('too many connections for a user (4029): retried later, connected once one closes', WAIT, async () => {
  const args = [...QUIET, '--auth', 'jwt', '--max-connections-per-user', '1'];
  const limited = await Server.start({ args, env: ENV });
  cleanup.push(() => limited.kill());
  const first = startClient(limited.url, { getToken: () => token('carol') });
  await first.connect();
  const second = startClient(limited.url, { getToken: () => token('carol'), backoffMax: 100 });
  const states = new Recorder();
  second.onState((state, detail) => states.push({ state, ...detail }));
  const connected = second.connect();
  const [refused] = (await states.count((s) => s.code === 4029)).filter((s) => s.code === 4029);
  assert.ok(refused.delay >= 50 && refused.delay <= 100, `later: half to all of backoffMax (${refused.delay})`);
  first.close();
  await connected;
  assert.equal(second.state, 'connected');
});
