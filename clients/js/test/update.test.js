// Subscription.update(): a new filter (and snapshot) for the same subscription and callback, in
// one request, against a real server whose simulated cluster has jobs of several users.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { WebSocket } from 'ws';

import { SlurmcastClient } from '../slurmcast.js';
import { Recorder, Server } from '../support/server.js';

const WAIT = { timeout: 60000 }; // per test: a guard against hanging only

/** A WebSocket that records the requests the client sends. */
function counting(sent) {
  return class extends WebSocket {
    send(data, ...rest) {
      sent.push(JSON.parse(data));
      return super.send(data, ...rest);
    }
  };
}

const isEvent = (m) => m.type !== 'snapshot' && m.type !== 'resync';

describe('Subscription.update', WAIT, () => {
  let server;
  /** two users with queued jobs in the simulated cluster */
  let users;
  const clients = [];
  const newClient = (sent = []) => {
    const client = new SlurmcastClient(server.url, { WebSocket: counting(sent), backoffInitial: 20, backoffMax: 200 });
    clients.push(client);
    return client;
  };

  before(async () => {
    server = await Server.start();
    const probe = newClient();
    const seen = new Recorder();
    probe.subscribe('jobs', seen.push, { snapshot: true });
    await probe.connect();
    const [snapshot] = await seen.count((m) => m.type === 'snapshot');
    const counts = new Map();
    for (const job of snapshot.data) counts.set(job.user, (counts.get(job.user) ?? 0) + 1);
    users = [...counts].sort((a, b) => b[1] - a[1]).map(([user]) => user).slice(0, 2);
    assert.equal(users.length, 2, 'the simulator has jobs of two users at least');
    probe.close();
  });
  after(async () => {
    for (const client of clients) client.close();
    await server?.stop();
  });

  test('one subscribe: a snapshot of the new filter only, then only its messages', async () => {
    const [a, b] = users;
    const sent = [];
    const client = newClient(sent);
    const seen = new Recorder();
    const sub = client.subscribe('jobs', seen.push, { filter: { user: a }, snapshot: true });
    await client.connect();
    const [first] = await seen.count((m) => m.type === 'snapshot');
    assert.ok(first.data.length > 0 && first.data.every((job) => job.user === a));
    await server.publish('jobs', { user: a, seq: 1 });
    await seen.count((m) => m.data?.seq === 1);

    // Messages of the old filter on their way when the update is sent must not arrive: held
    // back in the socket (the server has written them) until the subscribe is sent.
    const before = sent.length;
    const mark = seen.items.length;
    client._ws.pause();
    for (const seq of [2, 3, 4]) await server.publish('jobs', { user: a, seq });
    const updated = sub.update({ filter: { user: b }, snapshot: true });
    client._ws.resume();
    const start = await updated;
    assert.deepEqual(sent.slice(before).map(({ id, ...m }) => m),
      [{ type: 'subscribe', channel: 'jobs', snapshot: true, filter: { user: b } }], 'exactly one request, without since');

    const [second] = (await seen.count((m) => m.type === 'snapshot', 2)).filter((m) => m.type === 'snapshot').slice(1);
    assert.ok(second.data.length > 0 && second.data.every((job) => job.user === b), 'the new filter\'s snapshot');
    assert.deepEqual(second.position, start);
    assert.equal(seen.items.indexOf(second), mark, 'nothing of the old filter after update()');

    await server.publish('jobs', { user: a, seq: 5 });
    await server.publish('jobs', { user: b, seq: 6 });
    await seen.count((m) => m.data?.seq === 6);
    const after = seen.items.slice(mark + 1);
    assert.deepEqual(after.map((m) => [m.data.user, m.data.seq]), [[b, 6]]);
    assert.ok(after[0].offset > start.offset);
    assert.deepEqual(sub.position, { offset: after[0].offset, epoch: after[0].epoch });
    assert.equal(sub.active, true);

    // A reconnection resumes with the new filter, from the last message delivered.
    const reconnected = new Promise((resolve) => client.onState((s) => s === 'connected' && resolve()));
    const beforeReconnect = sent.length;
    client._ws.terminate();
    await reconnected;
    const resubscribe = sent.slice(beforeReconnect).find((m) => m.type === 'subscribe');
    assert.deepEqual(resubscribe.filter, { user: b });
    assert.deepEqual(resubscribe.since, sub.position);
    await server.publish('jobs', { user: a, seq: 7 });
    await server.publish('jobs', { user: b, seq: 8 });
    await seen.count((m) => m.data?.seq === 8);
    assert.deepEqual(seen.items.slice(mark + 1).filter(isEvent).map((m) => m.data.seq), [6, 8]);
  });

  test('a refused update keeps the old filter and loses nothing', async () => {
    const [a, b] = users;
    const client = newClient();
    const seen = new Recorder();
    const sub = client.subscribe('jobs', seen.push, { filter: { user: a } });
    await client.connect();
    await sub.ready;
    const racing = server.publish('jobs', { user: a, seq: 1 });
    await assert.rejects(sub.update({ filter: { colour: 'blue' } }),
      (error) => error.code === 'invalid_filter' && error.channel === 'jobs');
    await racing;
    await server.publish('jobs', { user: b, seq: 2 });
    await server.publish('jobs', { user: a, seq: 3 });
    await seen.count((m) => m.data?.seq === 3);
    assert.deepEqual(seen.items.map((m) => m.data.seq), [1, 3], 'once each, the old filter');
    assert.equal(sub.active, true);
    // A new callback must now match the old filter, which is in force again.
    assert.throws(() => client.subscribe('jobs', () => {}, { filter: { colour: 'blue' } }),
      (error) => error.code === 'conflicting_subscription');
  });

  test('before connecting: the first subscribe already has the new options', async () => {
    const [a, b] = users;
    const sent = [];
    const client = newClient(sent);
    const seen = new Recorder();
    const sub = client.subscribe('jobs', seen.push, { filter: { user: a }, snapshot: true });
    const updated = sub.update({ filter: { user: b } });
    await client.connect();
    const start = await updated;
    assert.deepEqual(await sub.ready, start);
    assert.deepEqual(sent.filter((m) => m.type === 'subscribe').map(({ id, ...m }) => m),
      [{ type: 'subscribe', channel: 'jobs', filter: { user: b } }]);
    await server.publish('jobs', { user: a, seq: 1 });
    await server.publish('jobs', { user: b, seq: 2 });
    await seen.count((m) => m.data?.seq === 2);
    assert.deepEqual(seen.items.map((m) => m.data.seq), [2], 'no snapshot asked for, none sent');
  });

  test('the connection lost before the reply: the reconnection subscribes with the new options', async () => {
    const [a, b] = users;
    const sent = [];
    const client = newClient(sent);
    const seen = new Recorder();
    const sub = client.subscribe('jobs', seen.push, { filter: { user: a } });
    await client.connect();
    await server.publish('jobs', { user: a, seq: 1 });
    await seen.count(() => true);
    client._ws.pause(); // the reply never arrives on this connection
    const updated = sub.update({ filter: { user: b }, snapshot: true });
    const count = sent.length;
    client._ws.terminate();
    const start = await updated;
    assert.deepEqual(sent.slice(count).filter((m) => m.type === 'subscribe').map(({ id, ...m }) => m),
      [{ type: 'subscribe', channel: 'jobs', snapshot: true, filter: { user: b } }], 'a new stream: no since');
    const [snapshot] = (await seen.count((m) => m.type === 'snapshot')).filter((m) => m.type === 'snapshot');
    assert.deepEqual(snapshot.position, start);
    assert.ok(snapshot.data.length > 0 && snapshot.data.every((job) => job.user === b));
  });

  test('no filter any more, two updates in a row, and updates that need no request', async () => {
    const [a, b] = users;
    const sent = [];
    const client = newClient(sent);
    const seen = new Recorder();
    const sub = client.subscribe('jobs', seen.push, { filter: { user: a } });
    await client.connect();
    await sub.ready;
    // The same filter, no snapshot: nothing to ask.
    const count = sent.length;
    assert.deepEqual(await sub.update({ filter: { user: a } }), sub.position);
    assert.equal(sent.length, count);
    // Two in a row: the second replaces the first, both settle with it.
    const first = sub.update({ filter: { user: b } });
    const second = sub.update({});
    assert.deepEqual(await first, await second);
    const frames = sent.slice(count).map(({ id, ...m }) => m);
    assert.deepEqual(frames, [
      { type: 'subscribe', channel: 'jobs', filter: { user: b } },
      { type: 'subscribe', channel: 'jobs', filter: {} }, // options, so the server replaces its subscription
    ]);
    await server.publish('jobs', { user: a, seq: 1 });
    await server.publish('jobs', { user: b, seq: 2 });
    await seen.count((m) => m.data?.seq === 2);
    assert.deepEqual(seen.items.map((m) => m.data.seq), [1, 2], 'unfiltered now');
  });

  test('refused at once when it cannot apply', async () => {
    const client = newClient();
    const one = client.subscribe('alerts', () => {});
    const two = client.subscribe('alerts', () => {});
    await assert.rejects(one.update({ filter: { severity: 'critical' } }), (error) => error.code === 'conflicting_subscription');
    two.unsubscribe();
    assert.throws(() => one.update(null), TypeError);
    await client.connect();
    await one.ready;
    one.unsubscribe();
    await assert.rejects(one.update({ filter: { severity: 'critical' } }), (error) => error.code === 'unsubscribed');
    const pending = client.subscribe('nodes', () => {});
    const update = pending.update({ filter: { state: 'DOWN' } });
    pending.unsubscribe();
    await assert.rejects(update, (error) => error.code === 'unsubscribed');
    const closing = client.subscribe('metrics', () => {});
    const lost = closing.update({ snapshot: true });
    client.close();
    await assert.rejects(lost, (error) => error.code === 'closed');
    await assert.rejects(closing.update({}), (error) => error.code === 'closed');
  });
});
