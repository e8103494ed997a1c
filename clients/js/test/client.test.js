// The client against a real server: subscriptions, filters, snapshots, requests.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { WebSocket } from 'ws';

import { SlurmcastClient, SlurmcastError } from '../slurmcast.js';
import { Recorder, Server } from '../support/server.js';

const WAIT = { timeout: 60000 }; // per test: a guard against hanging only

describe('a connected client', WAIT, () => {
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

  test('delivers broadcasts with increasing offsets', async () => {
    const client = newClient();
    const states = new Recorder();
    client.onState(states.push);
    const seen = new Recorder();
    const sub = client.subscribe('jobs', seen.push);
    assert.equal(client.state, 'disconnected');
    await client.connect();
    assert.equal(client.state, 'connected');
    const start = await sub.ready;
    for (let seq = 0; seq < 5; seq += 1) await server.publish('jobs', { seq });
    await seen.count((m) => m.type === 'broadcast', 5);
    assert.deepEqual(seen.items.map((m) => m.data.seq), [0, 1, 2, 3, 4]);
    assert.deepEqual(seen.items.map((m) => m.offset), [1, 2, 3, 4, 5].map((n) => start.offset + n));
    assert.ok(seen.items.every((m) => m.channel === 'jobs' && m.epoch === start.epoch));
    assert.deepEqual(sub.position, { offset: start.offset + 5, epoch: start.epoch });
    assert.deepEqual(states.items, ['connecting', 'connected']);
  });

  test('identity stays null without authentication, token or not', async () => {
    const client = newClient();
    await client.connect();
    assert.equal(client.identity, null);
    // A server run with --auth none answers an auth too, for nobody in particular.
    const withToken = newClient({ token: 'eyJhbGciOiJub25lIn0.e30.' });
    await withToken.connect();
    assert.equal(withToken.identity, null);
    await withToken.ping();
  });

  test('ping and history are answered', async () => {
    const client = newClient();
    const pending = client.ping(); // asked before connecting: sent once connected
    client.connect();
    assert.equal(typeof (await pending), 'number');
    for (let seq = 0; seq < 3; seq += 1) await server.publish('alerts', { seq });
    const last = await client.history('alerts', { limit: 2 });
    assert.equal(last.channel, 'alerts');
    assert.deepEqual(last.publications.map((p) => p.data.seq), [1, 2]);
    assert.equal(last.position.offset, last.publications[1].offset);
    const since = { offset: last.position.offset - 1, epoch: last.position.epoch };
    const after = await client.history('alerts', { since });
    assert.deepEqual(after.publications.map((p) => p.data.seq), [2]);
    assert.equal(after.complete, true);
    await assert.rejects(client.history('alerts', { limit: 0 }),
      (error) => error instanceof SlurmcastError && error.code === 'invalid_field');
  });

  test('filters apply on the server', async () => {
    const client = newClient();
    const seen = new Recorder();
    const sub = client.subscribe('jobs', seen.push, { filter: { partition: 'gpu' } });
    await client.connect();
    await sub.ready;
    for (const [seq, partition] of [[0, 'cpu'], [1, 'gpu'], [2, 'cpu'], [3, 'gpu'], [4, 'gpu']]) {
      await server.publish('jobs', { job_id: String(seq), partition, seq });
    }
    await seen.until((items) => items.some((m) => m.data.seq === 4));
    assert.deepEqual(seen.items.map((m) => m.data.seq), [1, 3, 4]);
    const offsets = seen.items.map((m) => m.offset);
    assert.deepEqual(offsets, [...offsets].sort((a, b) => a - b));
  });

  test('a snapshot comes first, as one message, filtered', async () => {
    const client = newClient();
    const seen = new Recorder();
    const sub = client.subscribe('nodes', seen.push, { snapshot: true, filter: { partition: 'gpu' } });
    await client.connect();
    const [snapshot] = await seen.count(() => true);
    assert.equal(snapshot.type, 'snapshot');
    assert.equal(snapshot.channel, 'nodes');
    assert.deepEqual(snapshot.position, await sub.ready);
    assert.ok(snapshot.data.length > 0);
    assert.ok(snapshot.data.every((node) => node.partitions.includes('gpu')), 'filtered snapshot');
    assert.deepEqual(Object.keys(snapshot.data[0]).filter((k) => ['node', 'state', 'cpus'].includes(k)),
      ['node', 'state', 'cpus']);
    await server.publish('nodes', { node: 'node099', partitions: ['gpu'], seq: 1 });
    const [, delta] = await seen.count(() => true, 2);
    assert.equal(delta.offset, snapshot.position.offset + 1);
  });

  test('callbacks share a channel; unsubscribe stops delivery', async () => {
    const client = newClient();
    const first = new Recorder();
    const second = new Recorder();
    const a = client.subscribe('alerts', first.push);
    client.subscribe('alerts', second.push);
    assert.throws(() => client.subscribe('alerts', () => {}, { filter: { severity: 'critical' } }),
      (error) => error.code === 'conflicting_subscription');
    await client.connect();
    await a.ready;
    await server.publish('alerts', { seq: 1 });
    await first.count(() => true);
    await second.count(() => true);
    a.unsubscribe();
    assert.equal(a.active, false);
    await server.publish('alerts', { seq: 2 });
    await second.count(() => true, 2);
    client.unsubscribe('alerts');
    // Replies come in order: after this pong the server has processed the unsubscribe.
    await client.ping();
    await server.publish('alerts', { seq: 3 }); // answered once written to every subscriber
    await client.ping(); // so anything delivered to this client came before this pong
    assert.deepEqual(first.items.map((m) => m.data.seq), [1]);
    assert.deepEqual(second.items.map((m) => m.data.seq), [1, 2]);
  });

  test('refusals reject the subscription and are reported', async () => {
    const client = newClient();
    const errors = new Recorder();
    client.onError(errors.push);
    const unknown = client.subscribe('gpus', () => {});
    const noSnapshot = client.subscribe('notifications', () => {}, { snapshot: true });
    const badFilter = client.subscribe('metrics', () => {}, { filter: { node: 'node001' } });
    await client.connect();
    await assert.rejects(unknown.ready, (error) => error.code === 'unknown_channel');
    await assert.rejects(noSnapshot.ready, (error) => error.code === 'snapshot_not_available');
    await assert.rejects(badFilter.ready, (error) => error.code === 'invalid_filter');
    assert.deepEqual(errors.items.map((e) => e.channel).sort(), ['gpus', 'metrics', 'notifications']);
    assert.equal(unknown.active, false);
    assert.equal(client.state, 'connected');
  });

  test('messages to every client reach onMessage', async () => {
    const client = newClient();
    const all = new Recorder();
    client.onMessage(all.push);
    await client.connect();
    await client.ping(); // the server has registered the connection
    await server.publish('all', { text: 'maintenance at 18:00' });
    const [message] = await all.count(() => true);
    assert.equal(message.channel, 'all');
    assert.deepEqual(message.data, { text: 'maintenance at 18:00' });
    assert.equal(message.offset, undefined);
  });

  test('many subscriptions at once stay within the rate limit', async () => {
    // 12 subscribe requests plus pings exceed the server's burst of 10: the client paces itself.
    const client = newClient();
    const errors = new Recorder();
    client.onError(errors.push);
    const subs = [];
    for (let i = 0; i < 12; i += 1) subs.push(client.subscribe(`user:u${i}`, () => {}));
    await client.connect();
    await Promise.all(subs.map((sub) => sub.ready));
    await client.ping();
    assert.equal(client.state, 'connected');
    assert.deepEqual(errors.items, []);
  });

  test('close() rejects what is pending and stops', async () => {
    const client = newClient();
    const connecting = client.connect();
    await connecting;
    client.close();
    assert.equal(client.state, 'closed');
    await assert.rejects(client.ping(), (error) => error.code === 'closed');
  });
});
