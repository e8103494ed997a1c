// Test support: real slurmcast servers in child processes, and ways to wait for events.
//
// Lives outside test/ because `node --test test/` runs every .js file under test/.
// Everything here waits for conditions (a health check answering, a process
// exiting, a message arriving); nothing sleeps to synchronise.

import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

/** The repository root: clients/js/support -> ../../.. */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const SLURMCAST = path.join(ROOT, '.venv', 'bin', process.platform === 'win32' ? 'slurmcast.exe' : 'slurmcast');

/** Quiet monitors: the only channel messages are the ones a test publishes. */
export const QUIET = ['--jobs-interval', '3600', '--nodes-interval', '3600', '--metrics-interval', '3600'];

/** Upper bound on any single wait: a guard against hanging, not a speed requirement. */
const GIVE_UP_MS = 30000;

/** Every server process started and not yet reaped, killed on exit whatever happens. */
const running = new Set();
function killAll() {
  for (const child of running) child.kill('SIGKILL');
}
process.on('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    killAll();
    process.kill(process.pid, signal); // then die of it as usual
  });
}

/** A TCP port nobody listens on right now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.unref();
    probe.on('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/** One `slurmcast serve` process on loopback. */
export class Server {
  /**
   * Start a server and wait until GET /health answers.
   * @param {{wsPort?: number, httpPort?: number, args?: string[], env?: object}} [options]
   *   the same ports as an earlier server to restart "it"; `args` defaults to QUIET
   */
  static async start({ wsPort, httpPort, args = QUIET, env = {} } = {}) {
    // A port free when probed may be taken (by any outgoing connection's source
    // port) before the server binds it: with ports of our choosing, try others.
    for (let attempt = 1; ; attempt++) {
      const server = new Server(wsPort ?? (await freePort()), httpPort ?? (await freePort()), args, env);
      try {
        await server._start();
        return server;
      } catch (error) {
        const chosen = wsPort === undefined && httpPort === undefined;
        if (!chosen || attempt >= 5 || !/address already in use/.test(String(error))) throw error;
      }
    }
  }

  constructor(wsPort, httpPort, args, env) {
    this.wsPort = wsPort;
    this.httpPort = httpPort;
    this.args = args;
    this.env = env;
    this.url = `ws://127.0.0.1:${wsPort}/`;
    this.http = `http://127.0.0.1:${httpPort}`;
  }

  async _start() {
    if (!existsSync(SLURMCAST)) {
      throw new Error(`${SLURMCAST} is missing: run \`make install-test\` in ${ROOT} first`);
    }
    this.dataDir = mkdtempSync(path.join(os.tmpdir(), 'slurmcast-js-'));
    const argv = ['serve', '--host', '127.0.0.1', '--ws-port', String(this.wsPort),
      '--http-port', String(this.httpPort), '--log-level', 'WARNING', ...this.args];
    this.output = '';
    this.child = spawn(SLURMCAST, argv, {
      env: { ...process.env, SLURMCAST_DATA_DIR: this.dataDir, ...this.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    running.add(this.child);
    // A failed or hung test must not keep this process alive: once nothing else
    // does, it exits and the 'exit' handler above kills the server.
    this.child.unref();
    this.child.stdout.unref();
    this.child.stderr.unref();
    const keep = (chunk) => { this.output = (this.output + chunk).slice(-4000); };
    this.child.stdout.on('data', keep);
    this.child.stderr.on('data', keep);
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        running.delete(this.child);
        resolve({ code, signal });
      });
    });
    let gone = null;
    this.exited.then((status) => { gone = status; });
    const started = Date.now();
    for (;;) {
      if (gone) throw new Error(`slurmcast exited (${JSON.stringify(gone)}) before serving:\n${this.output}`);
      try {
        const response = await fetch(`${this.http}/health`);
        if (response.ok) return;
      } catch { /* not listening yet */ }
      if (Date.now() - started > GIVE_UP_MS) {
        await this.kill();
        throw new Error(`slurmcast did not answer /health within ${GIVE_UP_MS} ms:\n${this.output}`);
      }
      await delay(25); // polling interval while waiting for the condition
    }
  }

  /** Publish on a channel through POST /broadcast (with the server's API key, if it has one);
   * answered after delivery. */
  async publish(channel, message) {
    const headers = { 'content-type': 'application/json' };
    if (this.env.SLURMCAST_API_KEY) headers['x-api-key'] = this.env.SLURMCAST_API_KEY;
    const response = await fetch(`${this.http}/broadcast`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ channel, message }),
    });
    const body = await response.json();
    if (!response.ok) throw new Error(`broadcast failed: ${JSON.stringify(body)}`);
    return body;
  }

  async health() {
    return (await fetch(`${this.http}/health`)).json();
  }

  /** Send a signal (SIGKILL: a crash; SIGTERM: a shutdown, clients get 1001) and wait for the exit. */
  async kill(signal = 'SIGKILL') {
    this.child.ref(); // wait for the exit below
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    const status = await this.exited;
    rmSync(this.dataDir, { recursive: true, force: true });
    return status;
  }

  stop() {
    return this.kill('SIGTERM');
  }
}

/**
 * Records values (messages, states) and lets a test wait until they satisfy a condition.
 * @template T
 */
export class Recorder {
  constructor() {
    /** @type {T[]} */
    this.items = [];
    this._waiters = [];
    this.push = this.push.bind(this);
  }

  /** @param {T} item */
  push(item) {
    this.items.push(item);
    for (const waiter of [...this._waiters]) {
      if (waiter.predicate(this.items)) {
        this._waiters.splice(this._waiters.indexOf(waiter), 1);
        waiter.resolve(this.items);
      }
    }
  }

  /** Wait until `predicate(items)` holds. @param {(items: T[]) => boolean} predicate */
  until(predicate) {
    if (predicate(this.items)) return Promise.resolve(this.items);
    return new Promise((resolve) => this._waiters.push({ predicate, resolve }));
  }

  /** Wait until `count` items match `test`. */
  count(test, count = 1) {
    return this.until((items) => items.filter(test).length >= count);
  }
}

/** A minimal HS256 JWT, signed like `slurmcast token` does. */
export function hs256(secret, claims) {
  const encode = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const body = `${encode({ alg: 'HS256', typ: 'JWT' })}.${encode(claims)}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}
