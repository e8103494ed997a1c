// Reconnection against real servers: dropped sockets, a server crash, a shutdown, a restart.
import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import { WebSocket } from 'ws';

import { SlurmcastClient } from '../slurmcast.js';
import { QUIET, Recorder, Server } from '../support/server.js';

const WAIT = { timeout: 120000 }; // per test: a guard against hanging only

const cleanup = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()();
});

/** A server stopped after the test, whatever happens. */
async function startServer(options) {
  const server = await Server.start(options);
  cleanup.push(() => server.kill());
  return server;
}

/** A client closed after the test; reconnects quickly (delays below 50 ms, then 400 ms). */
function startClient(url, options = {}) {
  const client = new SlurmcastClient(url, { WebSocket, backoffInitial: 50, backoffMax: 400, ...options });
  cleanup.push(() => client.close());
  return client;
}

/** Within each epoch, offsets go up by exactly one: nothing lost, duplicated or reordered. */
function assertContiguous(messages) {
  const last = new Map();
  for (const m of messages.filter((message) => typeof message.offset === 'number')) {
    if (last.has(m.epoch)) assert.equal(m.offset, last.get(m.epoch) + 1, `offset after ${last.get(m.epoch)} in ${m.epoch}`);
    last.set(m.epoch, m.offset);
  }
}

/** Publish seq = from, from+1, ... on `jobs` until stop() (or the server dies). */
function publishInBackground(server, from = 0) {
  let stopped = false;
  let next = from;
  const done = (async () => {
    while (!stopped) {
      try {
        await server.publish('jobs', { seq: next });
      } catch {
        return next; // the server is gone
      }
      next += 1;
    }
    return next;
  })();
  return { stop: () => { stopped = true; return done; } };
}

for (const [how, signal, code] of [['crashes', 'SIGKILL', 1006], ['shuts down', 'SIGTERM', 1001]]) {
  test(`a server that ${how} mid-stream is replaced on the same ports: resync, snapshot, live`, WAIT, async () => {
    const first = await startServer();
    const client = startClient(first.url);
    const states = new Recorder();
    client.onState((state, detail) => states.push({ state, ...detail }));
    const seen = new Recorder();
    const sub = client.subscribe('jobs', seen.push, { snapshot: true });
    await client.connect();
    const [snapshot] = await seen.count(() => true);
    assert.equal(snapshot.type, 'snapshot');
    const oldEpoch = snapshot.position.epoch;

    const stream = publishInBackground(first);
    await seen.count((m) => m.type === 'broadcast', 20); // mid-stream
    await first.kill(signal);
    await stream.stop();
    const lost = (await states.count((s) => s.state === 'disconnected')).find((s) => s.code);
    assert.equal(lost.code, code);
    const beforeRestart = seen.items.length;

    const second = await startServer({ wsPort: first.wsPort, httpPort: first.httpPort });
    const resynced = await seen.count((m) => m.type === 'snapshot', 2);
    const replaced = resynced.slice(beforeRestart);
    assert.deepEqual(replaced.map((m) => m.type), ['resync', 'snapshot']);
    assert.equal(replaced[0].channel, 'jobs');
    const fresh = replaced[1];
    assert.notEqual(fresh.position.epoch, oldEpoch);
    assert.ok(Array.isArray(fresh.data) && fresh.data.length > 0, 'the new server\'s jobs');

    for (let seq = 0; seq < 10; seq += 1) await second.publish('jobs', { seq, after: true });
    await seen.count((m) => m.data?.after, 10);
    const live = seen.items.filter((m) => m.data?.after);
    assert.deepEqual(live.map((m) => m.data.seq), [...Array(10).keys()]);
    assert.deepEqual(live.map((m) => m.offset), live.map((_, i) => fresh.position.offset + 1 + i));
    assert.ok(live.every((m) => m.epoch === fresh.position.epoch));

    const before = seen.items.slice(1, beforeRestart).map((m) => m.data.seq);
    assert.deepEqual(before, [...Array(before.length).keys()], 'the first server\'s stream, in order');
    assertContiguous(seen.items);
    assert.deepEqual(sub.position, { offset: live.at(-1).offset, epoch: fresh.position.epoch });
    assert.equal(client.state, 'connected');
  });
}

for (const [how, signal, capped] of [['shuts down (1001)', 'SIGTERM', true], ['crashes', 'SIGKILL', false]]) {
  test(`a server that ${how} and stays down: the delays ${capped ? 'stay below restartBackoffMax' : 'grow past it'}`, WAIT, async () => {
    const server = await startServer();
    // random() near 1: every delay is its ceiling, 20, 40, 80, then 100 while restarting.
    const client = startClient(server.url, { backoffInitial: 20, backoffMax: 30000, restartBackoffMax: 100, random: () => 0.999 });
    const states = new Recorder();
    client.onState((state, detail) => states.push({ state, ...detail }));
    await client.connect();
    await server.kill(signal);
    const waits = (await states.count((s) => s.state === 'disconnected' && s.delay !== undefined, 6))
      .filter((s) => s.state === 'disconnected' && s.delay !== undefined)
      .slice(0, 6)
      .map((s) => Math.round(s.delay));
    assert.deepEqual(waits, capped ? [20, 40, 80, 100, 100, 100] : [20, 40, 80, 160, 320, 639]);
  });
}

for (const wireFormat of ['json', 'msgpack']) {
  test(`a steady stream survives the socket dropping several times (${wireFormat}): every offset once, in order`, WAIT, async () => {
    const server = await startServer();
    const total = 600;
    const dropAt = new Set([30, 100, 170, 250, 320, 400, 470, 550]);
    let drops = 0;
    const client = startClient(server.url, { wireFormat });
    const states = new Recorder();
    client.onState((state) => states.push(state));
    const seen = new Recorder();
    const sub = client.subscribe('jobs', (message) => {
      seen.push(message);
      // Drop the connection while messages are in flight (unless it is already going).
      if (dropAt.has(message.data.seq) && client._ws?.readyState === WebSocket.OPEN) {
        drops += 1;
        client._ws.terminate();
      }
    }, { snapshot: true }); // a snapshot must not come back after a recovered reconnection
    await client.connect();
    const [snapshot] = await seen.count(() => true);
    assert.equal(snapshot.type, 'snapshot');

    const stream = publishInBackground(server);
    await seen.count((m) => m.type === 'broadcast' && m.data.seq >= total - 1);
    await stream.stop();
    await client.ping(); // nothing else is on its way

    const messages = seen.items.slice(1);
    assert.ok(messages.every((m) => m.type === 'broadcast'), 'no resync, no second snapshot');
    const seqs = messages.map((m) => m.data.seq);
    assert.deepEqual(seqs.slice(0, total), [...Array(total).keys()]);
    assertContiguous(messages);
    assert.equal(messages[0].offset, snapshot.position.offset + 1);
    assert.equal(sub.position.offset, messages.at(-1).offset);
    assert.ok(drops >= 1);
    assert.equal(states.items.filter((s) => s === 'disconnected').length, drops);
    assert.equal(client._ws.protocol, wireFormat === 'msgpack' ? 'slurmcast.msgpack' : '');
  });
}

test('a socket dropped before the subscription is confirmed is subscribed again', WAIT, async () => {
  const server = await startServer();
  const client = startClient(server.url);
  const seen = new Recorder();
  let drops = 0;
  const states = new Recorder();
  client.onState((state) => {
    states.push(state);
    if (state === 'connected' && drops < 3) { // subscribe requests just sent, not yet answered
      drops += 1;
      client._ws.terminate();
    }
  });
  const sub = client.subscribe('jobs', seen.push, { snapshot: true });
  await client.connect();
  await sub.ready;
  const [snapshot] = await seen.count(() => true);
  assert.equal(snapshot.type, 'snapshot');
  await server.publish('jobs', { seq: 0 });
  const [, message] = await seen.count(() => true, 2);
  assert.equal(message.offset, snapshot.position.offset + 1);
  assert.equal(states.items.filter((s) => s === 'disconnected').length, 3);
});

test('a frame the server refuses as too big (1009) is a client bug: failed, not retried', WAIT, async () => {
  const server = await startServer({ args: [...QUIET, '--max-message-size', '200'] });
  const client = startClient(server.url);
  const states = new Recorder();
  client.onState(states.push);
  const jobIds = Array.from({ length: 50 }, (_, i) => String(1000 + i));
  const sub = client.subscribe('jobs', () => {}, { filter: { job_id: jobIds } });
  await client.connect();
  await states.count((s) => s === 'failed');
  assert.equal(client.error.code, 'message_too_big');
  assert.deepEqual(states.items, ['connecting', 'connected', 'failed']);
  assert.equal(sub.active, true, 'still registered: connect() again would retry it');
});
