// connect(), send(), markRead() and broadcast(): the default URL, then real servers, one
// without authentication and one with --auth jwt (users, an admin); and rate-limit refusals
// that name their request, from a stand-in server.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';
import { WebSocket, WebSocketServer } from 'ws';

import { SlurmcastClient, SlurmcastError, connect } from '../slurmcast.js';
import { QUIET, Recorder, Server, hs256 } from '../support/server.js';

const WAIT = { timeout: 60000 }; // per test: a guard against hanging only
const SECRET = 'js-client-test-secret-0123456789abcdef';
const API_KEY = 'js-client-test-api-key';

/** A WebSocket constructor that records how it was called and never connects. */
function recordingSocket(calls) {
  return class {
    constructor(...args) {
      calls.push(args);
      this.readyState = 0; // CONNECTING, for ever
    }

    close() {
      this.readyState = 3;
    }
  };
}

const isError = (code) => (error) => error instanceof SlurmcastError && error.code === code;

test('connect() defaults to ws://localhost:5011 and starts connecting', async () => {
  const calls = [];
  const unhandled = [];
  const record = (reason) => unhandled.push(reason);
  process.on('unhandledRejection', record);
  try {
    const client = connect(undefined, { WebSocket: recordingSocket(calls) });
    assert.ok(client instanceof SlurmcastClient);
    assert.equal(client.url, 'ws://localhost:5011');
    assert.equal(client.state, 'connecting');
    assert.deepEqual(calls, [['ws://localhost:5011']]);
    // Closing rejects the connect() it made: that must not surface as an unhandled rejection.
    client.close();
    const other = connect('ws://127.0.0.1:9/', { WebSocket: recordingSocket(calls) });
    assert.equal(calls[1][0], 'ws://127.0.0.1:9/');
    other.close();
    await tick();
    await tick();
    assert.deepEqual(unhandled, []);
  } finally {
    process.off('unhandledRejection', record);
  }
});

describe('send() against a real server', WAIT, () => {
  let server;
  const clients = [];
  const newClient = () => {
    const client = new SlurmcastClient(server.url, { WebSocket, backoffInitial: 20 });
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

  test('answers with the raw reply, with the caller\'s id or one of its own', async () => {
    const client = newClient();
    const early = client.send({ type: 'ping' }); // before connecting: sent once connected
    client.connect();
    const pong = await early;
    assert.equal(pong.type, 'pong');
    assert.equal(typeof pong.id, 'number');
    assert.deepEqual(await client.send({ type: 'ping', id: 'mine-1' }), { type: 'pong', id: 'mine-1' });
    // An id equal to one the client uses itself is fine: replies come in order.
    const [a, b] = await Promise.all([client.send({ type: 'ping', id: 1 }), client.ping()]);
    assert.deepEqual(a, { type: 'pong', id: 1 });
    assert.equal(typeof b, 'number');

    await server.publish('metrics', { seq: 1 });
    const history = await client.send({ type: 'history', channel: 'metrics', limit: 1, id: 'h' });
    assert.equal(history.type, 'history');
    assert.equal(history.id, 'h');
    assert.deepEqual(history.publications.map((p) => p.data), [{ seq: 1 }]);
    assert.deepEqual(Object.keys(history.position).sort(), ['epoch', 'offset']);
  });

  test('an error reply rejects with its code and the reply', async () => {
    const client = newClient();
    await client.connect();
    const sent = { type: 'history', channel: 'gpus', id: 'bad' };
    await assert.rejects(client.send(sent), (error) => {
      assert.ok(isError('unknown_channel')(error));
      assert.equal(error.reply.id, 'bad');
      assert.equal(error.reply.type, 'error');
      return true;
    });
    // A type the server does not know: its answer, not a hang.
    await assert.rejects(client.send({ type: 'frobnicate' }), isError('unknown_type'));
    assert.deepEqual(sent, { type: 'history', channel: 'gpus', id: 'bad' }, 'the caller\'s object is left as it was');
    assert.equal(client.state, 'connected');
  });

  test('refuses what the client manages, and ids the server would not echo', () => {
    const client = newClient();
    for (const type of ['subscribe', 'unsubscribe', 'auth', 'refresh']) {
      assert.throws(() => client.send({ type, channel: 'jobs', token: 'x' }), TypeError);
    }
    for (const id of [1.5, 2 ** 53, 'x'.repeat(129), true, {}]) {
      assert.throws(() => client.send({ type: 'ping', id }), TypeError, String(id));
    }
    for (const message of [null, 'ping', ['ping'], { id: 1 }]) {
      assert.throws(() => client.send(message), TypeError);
    }
  });

  test('broadcast() without authentication is refused: nobody is an admin', async () => {
    const client = newClient();
    client.connect();
    await assert.rejects(client.broadcast('jobs', { text: 'hi' }), (error) => {
      assert.ok(isError('forbidden')(error));
      assert.match(error.message, /POST \/broadcast/);
      return true;
    });
  });

  test('a broadcast in flight when the connection drops fails; a ping is sent again', async () => {
    const client = newClient();
    await client.connect();
    const reconnected = new Promise((resolve) => client.onState((s) => s === 'connected' && resolve()));
    const broadcast = client.broadcast('jobs', { text: 'maybe twice' });
    const ping = client.ping();
    client._ws.terminate(); // both were written; no reply can arrive on this socket
    await assert.rejects(broadcast, isError('connection_lost'));
    await reconnected;
    assert.equal(typeof (await ping), 'number');
  });
});

describe('markRead() and broadcast() with --auth jwt', WAIT, () => {
  let server;
  const clients = [];
  const newClient = (sub, roles = []) => {
    const now = Math.floor(Date.now() / 1000);
    const token = hs256(SECRET, { sub, roles, iat: now, exp: now + 3600 });
    const client = new SlurmcastClient(server.url, { WebSocket, token, backoffInitial: 20 });
    clients.push(client);
    return client;
  };
  /** Store a notification for `user` through the HTTP API; its id. */
  const notify = async (user) => {
    const response = await fetch(`${server.http}/notifications`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': API_KEY },
      body: JSON.stringify({ type: 'info', title: 'Note', message: `for ${user}`, user }),
    });
    assert.equal(response.status, 201);
    return (await response.json()).notification.id;
  };
  const unread = async (user) => {
    const response = await fetch(`${server.http}/notifications?user=${user}&unread=true`, {
      headers: { 'x-api-key': API_KEY },
    });
    return (await response.json()).notifications.map((n) => n.id);
  };

  before(async () => {
    server = await Server.start({
      args: [...QUIET, '--auth', 'jwt'],
      env: { SLURMCAST_JWT_SECRET: SECRET, SLURMCAST_API_KEY: API_KEY },
    });
  });
  after(async () => {
    for (const client of clients) client.close();
    await server?.stop();
  });

  test('markRead() marks the caller\'s own notifications and says which', async () => {
    const alice = newClient('alice');
    const live = new Recorder();
    alice.subscribe('user:alice', live.push);
    await alice.connect();
    await alice.ping(); // subscribed: replies come in order
    const [mine, other, bobs] = [await notify('alice'), await notify('alice'), await notify('bob')];
    const [message] = await live.count((m) => m.type === 'notification');
    assert.equal(message.data.id, mine);
    assert.equal(message.data.read, false);

    assert.deepEqual(await alice.markRead([mine, bobs, 'notif-unknown']), [mine]);
    assert.deepEqual(await unread('alice'), [other]);
    assert.deepEqual(await unread('bob'), [bobs]);
    // One id on its own, and an iterable; marking again is not an error.
    assert.deepEqual(await alice.markRead(other), [other]);
    assert.deepEqual(await alice.markRead(new Set([mine, other])), [mine, other]);
    assert.deepEqual(await unread('alice'), []);
    await assert.rejects(alice.markRead([]), isError('invalid_field'));
  });

  test('broadcast() publishes for an admin and is refused to a user', async () => {
    const admin = newClient('ops', ['admin']);
    const alice = newClient('alice');
    const onJobs = new Recorder();
    const toAll = new Recorder();
    const sub = alice.subscribe('jobs', onJobs.push);
    alice.onMessage(toAll.push);
    const early = admin.broadcast('jobs', { text: 'early' }); // waits for the connection
    await alice.connect();
    const start = await sub.ready;
    admin.connect();
    assert.ok(await early >= 1);

    assert.ok(await admin.broadcast('jobs', { text: 'maintenance at 18:00' }) >= 1);
    await onJobs.count((m) => m.type === 'broadcast', 2);
    assert.deepEqual(onJobs.items.map((m) => [m.channel, m.type, m.data.text]),
      [['jobs', 'broadcast', 'early'], ['jobs', 'broadcast', 'maintenance at 18:00']]);
    assert.equal(onJobs.items[1].offset, start.offset + 2);

    assert.ok(await admin.broadcast('all', { text: 'to everyone' }) >= 2);
    const [everyone] = await toAll.count(() => true);
    assert.deepEqual([everyone.channel, everyone.data], ['all', { text: 'to everyone' }]);

    await assert.rejects(alice.broadcast('jobs', { text: 'me too' }), isError('forbidden'));
    await assert.rejects(admin.broadcast('gpus', { text: 'x' }), isError('unknown_channel'));
    await assert.rejects(admin.broadcast('jobs', 'not an object'), isError('invalid_field'));
    assert.equal(alice.state, 'connected');
    assert.equal(admin.state, 'connected');
  });
});

for (const named of [true, false]) {
  test(`a rate_limited refusal ${named ? 'naming' : 'not naming'} its request: sent again, then answered`, WAIT, async () => {
    // Refuses the second request it receives, as slurmcast does over its burst.
    const seen = [];
    const stub = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    stub.on('connection', (socket) => {
      socket.on('message', (data) => {
        const request = JSON.parse(String(data));
        seen.push(request.id);
        if (seen.length === 2) {
          const refusal = { type: 'error', code: 'rate_limited', message: 'too many messages', retry_after: 0.05 };
          socket.send(JSON.stringify(named ? { ...refusal, id: request.id } : refusal));
        } else {
          socket.send(JSON.stringify({ type: 'pong', id: request.id }));
        }
      });
    });
    await new Promise((resolve) => stub.once('listening', resolve));
    const client = new SlurmcastClient(`ws://127.0.0.1:${stub.address().port}/`, { WebSocket });
    try {
      const errors = new Recorder();
      client.onError(errors.push);
      await client.connect();
      const replies = await Promise.all([client.send({ type: 'ping', id: 'a' }), client.send({ type: 'ping', id: 'b' })]);
      assert.deepEqual(replies, [{ type: 'pong', id: 'a' }, { type: 'pong', id: 'b' }]);
      assert.deepEqual(seen, ['a', 'b', 'b']);
      assert.deepEqual(errors.items, []);
    } finally {
      client.close();
      await new Promise((resolve) => stub.close(resolve));
    }
  });
}
