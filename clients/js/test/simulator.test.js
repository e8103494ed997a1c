// Real job events from a fast simulated cluster: snapshot, then filtered deltas.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { WebSocket } from 'ws';

import { SlurmcastClient } from '../slurmcast.js';
import { Recorder, Server } from '../support/server.js';

const FAST = ['--sim-speed', '600', '--jobs-interval', '0.05', '--nodes-interval', '3600', '--metrics-interval', '3600'];

const cleanup = [];
after(async () => {
  while (cleanup.length) await cleanup.pop()();
});

test('a filtered jobs snapshot, then only matching job events, in order', { timeout: 60000 }, async () => {
  const server = await Server.start({ args: FAST });
  cleanup.push(() => server.kill());
  const client = new SlurmcastClient(server.url, { WebSocket });
  cleanup.push(() => client.close());
  const seen = new Recorder();
  client.subscribe('jobs', seen.push, { snapshot: true, filter: { partition: 'gpu', status: ['pending', 'running'] } });
  await client.connect();

  const isEvent = (m) => m.type === 'job_submitted' || m.type === 'job_update';
  await seen.count(isEvent, 5);
  const [snapshot, ...events] = seen.items.slice();
  assert.equal(snapshot.type, 'snapshot');
  assert.ok(snapshot.data.length > 0);
  for (const job of snapshot.data) {
    assert.equal(job.partition, 'gpu');
    assert.ok(['PENDING', 'RUNNING'].includes(job.status), job.status);
  }
  assert.ok(events.every(isEvent));
  for (const event of events) {
    assert.equal(event.data.partition, 'gpu');
    assert.ok(['PENDING', 'RUNNING'].includes(event.data.status), event.data.status);
  }
  let last = snapshot.position.offset;
  for (const event of events) {
    assert.equal(event.epoch, snapshot.position.epoch);
    assert.ok(event.offset > last, `${event.offset} after ${last}`);
    last = event.offset;
  }
});
