// Mistakes slurmcast.d.ts must catch. Never run: test/types.test.js compiles this file and
// expects tsc to report an error on exactly the lines marked `// error`, each one, so a type
// that silently became `any` (or a file tsc skipped) fails the test.

import { SlurmcastClient, SlurmcastError } from 'slurmcast-client';

export async function mistakes(client: SlurmcastClient): Promise<void> {
  // A field of another channel's messages.
  client.subscribe('nodes', (m) => {
    if (m.type === 'node_update') void m.data.job_id; // error
  });
  client.subscribe('jobs', (m) => {
    if (m.type === 'job_update') void m.data.node; // error
    if (m.type === 'job_updated') return; // error
    if (m.type === 'snapshot') void m.data[0]?.cpu_load; // error
  });
  client.subscribe('alerts', (m) => {
    if (m.type === 'alert') void m.data.job_id; // error
  });
  // A null the code forgets.
  client.subscribe('jobs', (m) => {
    if (m.type === 'job_update') { const code: number = m.data.exit_code; void code; } // error
  });

  // Options of the wrong type, or that the channel does not take.
  client.subscribe('jobs', () => {}, { snapshot: 'yes' }); // error
  client.subscribe('nodes', () => {}, { filter: { user: 'alice' } }); // error
  client.subscribe('metrics', () => {}, { filter: { node: 'node001' } }); // error
  client.subscribe('notifications', () => {}, { snapshot: true }); // error
  client.subscribe('job', () => {}); // error
  void new SlurmcastClient('ws://localhost:5011/', { wireFormat: 'xml' }); // error
  void new SlurmcastClient('ws://localhost:5011/', { backoffInitial: '500' }); // error

  // A subscription updated with options of another channel, or the identity misread.
  const jobs = client.subscribe('jobs', () => {});
  await jobs.update({ filter: { state: 'DRAINED' } }); // error
  await jobs.update({ snapshot: 1 }); // error
  client.subscribe('notifications', () => {}).update({ snapshot: true }); // error
  const expiry: string | null | undefined = client.identity?.expiresAt; // error
  void expiry;
  void client.identity.user; // error
  client.identity = null; // error

  // Methods given the wrong arguments, or their results misread.
  await client.history('jobs', { limit: '5' }); // error
  await client.markRead(42); // error
  await client.broadcast('jobs', 'maintenance at 18:00'); // error
  void (await client.send({ type: 'ping' })).publications; // error
  await client.send({ type: 'subscribe', channel: 'jobs' }); // error
  const rtt: string = await client.ping(); // error
  void rtt;

  // Listeners.
  client.onState((state, detail) => {
    if (state === 'connected') void detail.delay; // error
  });
  client.onMessage((m) => void m.offset); // error
  client.onError((error) => void error.code); // error
  client.onError((error) => {
    if (error instanceof SlurmcastError && error.code === 'not_a_code') return; // error
  });
}
