// Wire formats and compression: msgpack clients against a real server, deflate on and off,
// and an older server that does not know the msgpack subprotocol.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { WebSocket, WebSocketServer } from 'ws';

import { SlurmcastClient, SlurmcastError } from '../slurmcast.js';
import { Recorder, Server } from '../support/server.js';

const WAIT = { timeout: 60000 }; // per test: a guard against hanging only
const MSGPACK = 'slurmcast.msgpack';
/** Values JSON and msgpack could disagree on if either side encoded carelessly. */
const AWKWARD = {
  text: 'näïve 🚀 \u2028',
  float: 0.1,
  wholeFloat: 2.5,
  negative: -7,
  big: 2 ** 40,
  flags: [true, false, null],
  nested: { empty: {}, list: [], deep: [[{ k: 'v' }]] },
};

/** A ws WebSocket that records the kind of every frame it sends and receives, and the
 * extensions the server's handshake answer names. */
function watching(frames) {
  return class extends WebSocket {
    constructor(...args) {
      super(...args);
      this.on('upgrade', (response) => {
        frames.extensions = response.headers['sec-websocket-extensions'] ?? '';
      });
      this.addEventListener('message', (event) => {
        frames.received.push(typeof event.data === 'string' ? 'text' : 'binary');
      });
    }

    send(data, ...rest) {
      frames.sent.push(typeof data === 'string' ? 'text' : 'binary');
      return super.send(data, ...rest);
    }
  };
}

const newFrames = () => ({ sent: [], received: [] });
const kinds = (list) => [...new Set(list)];

describe('wire formats against a real server', WAIT, () => {
  let server;
  const clients = [];
  const newClient = (options = {}) => {
    const client = new SlurmcastClient(server.url, { WebSocket, backoffInitial: 20, ...options });
    clients.push(client);
    return client;
  };

  before(async () => {
    server = await Server.start();
  });
  after(async () => {
    for (const client of clients) client.close();
    await server?.stop();
  });

  test('a msgpack client receives the same messages as a JSON client', async () => {
    const frames = newFrames();
    const json = newClient();
    const packed = newClient({ wireFormat: 'msgpack', WebSocket: watching(frames) });
    const seen = { json: new Recorder(), packed: new Recorder() };
    const everyone = { json: new Recorder(), packed: new Recorder() };
    const ready = [];
    for (const [name, client] of [['json', json], ['packed', packed]]) {
      client.onMessage(everyone[name].push);
      ready.push(client.subscribe('nodes', seen[name].push, { snapshot: true }).ready);
      ready.push(client.subscribe('jobs', seen[name].push, { filter: { user: 'alice' } }).ready);
    }
    await Promise.all([json.connect(), packed.connect()]);
    await Promise.all(ready);
    assert.equal(json._ws.protocol, '');
    assert.equal(packed._ws.protocol, MSGPACK);
    for (const user of ['bob', 'alice', 'carol', 'alice']) {
      await server.publish('jobs', { job_id: user, user, extra: AWKWARD });
    }
    await server.publish('all', AWKWARD);
    const count = (items) => items.filter((m) => m.channel === 'jobs').length >= 2;
    await Promise.all([seen.json.until(count), seen.packed.until(count)]);
    await Promise.all([everyone.json.count(() => true), everyone.packed.count(() => true)]);
    const [snapshot] = seen.json.items;
    assert.equal(snapshot.type, 'snapshot');
    assert.ok(snapshot.data.length > 0);
    assert.deepEqual(seen.json.items.filter((m) => m.channel === 'jobs').map((m) => m.data.user), ['alice', 'alice']);
    assert.deepEqual(seen.packed.items, seen.json.items);
    assert.deepEqual(everyone.json.items[0].data, AWKWARD);
    assert.deepEqual(everyone.packed.items, everyone.json.items);
    const [jsonPage, packedPage] = await Promise.all([json.history('jobs', { limit: 3 }), packed.history('jobs', { limit: 3 })]);
    assert.equal(jsonPage.publications.length, 3);
    assert.deepEqual(packedPage, jsonPage);
    assert.deepEqual(kinds(frames.sent), ['binary']);
    assert.deepEqual(kinds(frames.received), ['binary']);
  });

  test('requests sent in msgpack are answered, refusals included', async () => {
    const frames = newFrames();
    const client = newClient({ wireFormat: 'msgpack', WebSocket: watching(frames) });
    const errors = new Recorder();
    client.onError(errors.push);
    const unknown = client.subscribe('gpus', () => {});
    await client.connect();
    await assert.rejects(unknown.ready, (error) => error.code === 'unknown_channel');
    assert.equal(typeof (await client.ping()), 'number');
    for (let seq = 0; seq < 3; seq += 1) await server.publish('alerts', { seq });
    const page = await client.history('alerts', { limit: 2 });
    assert.deepEqual(page.publications.map((p) => p.data.seq), [1, 2]);
    const since = { offset: page.position.offset - 1, epoch: page.position.epoch };
    const rest = await client.history('alerts', { since });
    assert.deepEqual(rest.publications.map((p) => p.data.seq), [2]);
    assert.equal(rest.complete, true);
    await assert.rejects(client.history('alerts', { limit: 0 }),
      (error) => error instanceof SlurmcastError && error.code === 'invalid_field');
    assert.deepEqual(errors.items.map((e) => e.code), ['unknown_channel']);
    assert.equal(client.state, 'connected');
    assert.deepEqual(kinds(frames.sent), ['binary']);
    assert.deepEqual(kinds(frames.received), ['binary']);
  });

  test('deflate is negotiated without context takeover; perMessageDeflate: false turns it off', async () => {
    const [deflatingFrames, plainFrames] = [newFrames(), newFrames()];
    const deflating = newClient({ wireFormat: 'msgpack', WebSocket: watching(deflatingFrames) });
    const plain = newClient({ perMessageDeflate: false, WebSocket: watching(plainFrames) });
    const big = { text: 'job 42 finished on node001 '.repeat(100) };
    const seen = [new Recorder(), new Recorder()];
    const subs = [deflating.subscribe('metrics', seen[0].push), plain.subscribe('metrics', seen[1].push)];
    await Promise.all([deflating.connect(), plain.connect()]);
    await Promise.all(subs.map((sub) => sub.ready));
    assert.equal(deflating._ws.extensions, 'permessage-deflate');
    const answer = deflatingFrames.extensions.split(';').map((p) => p.trim());
    assert.equal(answer[0], 'permessage-deflate');
    assert.ok(answer.includes('server_no_context_takeover') && answer.includes('client_no_context_takeover'), answer.join('; '));
    assert.equal(deflating._ws.protocol, MSGPACK);
    assert.equal(plain._ws.extensions, '');
    assert.equal(plainFrames.extensions, '');
    await server.publish('metrics', big);
    const ours = (m) => m.data?.text === big.text;
    const [a, b] = (await Promise.all(seen.map((r) => r.count(ours)))).map((items) => items.find(ours));
    assert.deepEqual(a.data, big);
    assert.deepEqual(b, a);
  });

  test('a msgpack client reconnects and recovers what it missed', async () => {
    const client = newClient({ wireFormat: 'msgpack' });
    const seen = new Recorder();
    const states = new Recorder();
    client.onState(states.push);
    const sub = client.subscribe('jobs', seen.push);
    await client.connect();
    const start = await sub.ready;
    await server.publish('jobs', { seq: 0 });
    await seen.count(() => true);
    client._ws.terminate();
    await states.count((s) => s === 'disconnected');
    for (let seq = 1; seq < 4; seq += 1) await server.publish('jobs', { seq }); // while away
    await seen.count(() => true, 4);
    assert.deepEqual(seen.items.map((m) => m.type), Array(4).fill('broadcast'), 'no resync');
    assert.deepEqual(seen.items.map((m) => m.data.seq), [0, 1, 2, 3]);
    assert.deepEqual(seen.items.map((m) => m.offset), [1, 2, 3, 4].map((n) => start.offset + n));
    assert.equal(client._ws.protocol, MSGPACK);
  });

  test('an unknown wire format is refused at once', () => {
    assert.throws(() => new SlurmcastClient(server.url, { WebSocket, wireFormat: 'xml' }),
      (error) => error instanceof TypeError && /wireFormat must be one of json, msgpack/.test(error.message));
  });
});

test('a server that does not agree to msgpack is spoken to in JSON', WAIT, async () => {
  // What an older server does: it answers the handshake without a subprotocol.
  const offered = [];
  const requests = [];
  const old = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    handleProtocols: () => false,
  });
  old.on('headers', (headers, request) => offered.push(request.headers['sec-websocket-protocol'] ?? null));
  old.on('connection', (socket) => {
    socket.on('message', (data, isBinary) => {
      requests.push(isBinary ? 'binary' : JSON.parse(String(data)).type);
      if (!isBinary) socket.send(JSON.stringify({ type: 'pong', id: JSON.parse(String(data)).id }));
    });
  });
  await new Promise((resolve) => old.once('listening', resolve));
  const client = new SlurmcastClient(`ws://127.0.0.1:${old.address().port}/`, {
    WebSocket, wireFormat: 'msgpack', backoffInitial: 20,
  });
  const states = new Recorder();
  client.onState((state, detail) => states.push({ state, ...detail }));
  try {
    await client.connect();
    assert.equal(client._ws.protocol, '');
    assert.equal(typeof (await client.ping()), 'number');
    // ws refuses a handshake answered without the subprotocol: one attempt asked, then none.
    assert.deepEqual(offered, [MSGPACK, null]);
    const dropped = states.items.find((s) => s.state === 'disconnected');
    assert.equal(dropped.delay, 0, 'an older server is no failure: no backoff');
    // Later connections keep to JSON rather than fail a handshake each time.
    client._ws.terminate();
    await states.count((s) => s.state === 'connected', 2);
    assert.equal(typeof (await client.ping()), 'number');
    assert.deepEqual(offered, [MSGPACK, null, null]);
    assert.deepEqual(requests, ['ping', 'ping']);
  } finally {
    client.close();
    await new Promise((resolve) => old.close(resolve));
  }
});
