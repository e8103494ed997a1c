// Every method and message type of slurmcast.d.ts, used as a TypeScript project would. Never
// run: test/types.test.js compiles it (tsc --noEmit --strict) and expects no error. The
// exhaustive switches (`never` in `default`) fail to compile if a union gains or loses a member.

import { WebSocket as NodeWebSocket } from 'ws';

// The package's own name: resolved through package.json `exports` and its `types` condition.
import SlurmcastClientDefault, {
  connect,
  SlurmcastClient,
  SlurmcastError,
  Subscription,
  type AlertData,
  type AllClientsMessage,
  type Channel,
  type ChannelMessage,
  type ClientState,
  type Identity,
  type JobData,
  type MetricsData,
  type NodeData,
  type NotificationData,
  type Position,
  type SnapshotMessage,
  type SubscriptionMessage,
} from 'slurmcast-client';

function unreachable(value: never): never {
  throw new Error(`unexpected ${JSON.stringify(value)}`);
}

// -- construction ---------------------------------------------------------------------------

export function constructing(): SlurmcastClient[] {
  const byDefault: SlurmcastClient = connect();
  const node = connect('ws://127.0.0.1:5011/', { WebSocket: NodeWebSocket, perMessageDeflate: false });
  const browser = new SlurmcastClient('wss://slurmcast.example.org/', { WebSocket: globalThis.WebSocket });
  const everything = new SlurmcastClientDefault('ws://localhost:5011/', {
    token: 'eyJ...',
    getToken: async () => 'eyJ...',
    WebSocket: NodeWebSocket,
    backoffInitial: 500,
    backoffMax: 30000,
    restartBackoffMax: 2000,
    random: Math.random,
    wireFormat: 'msgpack',
    perMessageDeflate: { threshold: 1024 },
  });
  const syncToken = new SlurmcastClient('ws://localhost:5011/', { getToken: () => 'eyJ...' });
  const url: string = everything.url;
  const state: ClientState = everything.state;
  const why: SlurmcastError | null = everything.error;
  const identity: Identity | null = everything.identity;
  const who: string | undefined = identity?.user;
  const roles: readonly string[] = identity?.roles ?? [];
  const until: number | null | undefined = identity?.expiresAt;
  void [url, state, why, who, roles, until];
  return [byDefault, node, browser, everything, syncToken];
}

// -- lifecycle and listeners ----------------------------------------------------------------

export async function lifecycle(client: SlurmcastClient): Promise<void> {
  const offState = client.onState((state, detail) => {
    if (state === 'disconnected') {
      const retryIn: number | undefined = detail.delay;
      const code: number | undefined = detail.code;
      const reason: string | undefined = detail.reason;
      void [retryIn, code, reason];
    } else if (state === 'failed' || state === 'closed') {
      const code: string = detail.error.code;
      void code;
    } else {
      const now: 'connecting' | 'connected' = state;
      void now;
    }
  });
  const offError = client.onError((error) => {
    if (error instanceof SlurmcastError) {
      switch (error.code) {
        case 'forbidden':
        case 'invalid_filter':
          console.warn(error.channel, error.reply?.message);
          break;
        case 'rate_limited':
          if (error.reply?.type === 'error') console.warn(error.reply.retry_after);
          break;
        case 'connection_lost':
        case 'token_unavailable':
          break;
        default:
          console.error(error.code, error.message);
      }
    } else {
      console.error('a callback threw', error);
    }
  });
  const offMessage = client.onMessage((message: AllClientsMessage) => {
    const channel: 'all' = message.channel;
    const type: 'broadcast' = message.type;
    const text: unknown = message.data['text'];
    void [channel, type, text, message.timestamp];
  });
  await client.connect();
  client.close();
  offState();
  offError();
  offMessage();
}

// -- every channel, every message type --------------------------------------------------------

export function subscribing(client: SlurmcastClient): Subscription[] {
  const jobs = new Map<string, JobData>();
  const jobsSub = client.subscribe('jobs', (m) => {
    switch (m.type) {
      case 'snapshot':
        jobs.clear();
        for (const job of m.data) jobs.set(job.job_id, job);
        break;
      case 'resync':
        break;
      case 'job_submitted': {
        const expected: string | null = m.data.expected_start_time;
        const why: string | null = m.data.reason_text;
        const memory: number | null = m.data.resources.memory_mb;
        void [expected, why, memory, m.offset, m.epoch, m.timestamp];
        jobs.set(m.data.job_id, m.data);
        break;
      }
      case 'job_update': {
        const exit: number | null = m.data.exit_code;
        const before: JobData['status'] | null = m.data.previous_status;
        const cpu: number | null | undefined = m.data.efficiency?.cpu_efficiency;
        const guessed: boolean = m.data.final_state_confirmed === false;
        const formerReason: string | null | undefined = m.data.previous_reason;
        void [exit, before, cpu, guessed, formerReason];
        if (m.data.status === 'COMPLETED' || guessed) jobs.delete(m.data.job_id);
        break;
      }
      case 'broadcast':
        console.log(m.data['text']);
        break;
      default:
        unreachable(m);
    }
  }, { snapshot: true, filter: { user: 'alice', partition: ['gpu'], status: ['RUNNING', 'FAILED'] } });

  const nodesSub = client.subscribe('nodes', (m) => {
    switch (m.type) {
      case 'snapshot': {
        const nodes: NodeData[] = m.data;
        void nodes;
        break;
      }
      case 'node_update':
      case 'node_added':
      case 'node_removed': {
        const reason: string | null = m.data.reason;
        const load: number | null = m.data.cpu_load;
        const free: number = m.data.memory.free_mb;
        const gpus: number = m.data.gpus.idle;
        const notResponding = m.data.flags.includes('NOT_RESPONDING');
        void [reason, load, free, gpus, notResponding, m.data.previous_state];
        break;
      }
      case 'node_resource_change': {
        const before: number = m.data.previous_cpu_usage;
        void [before, m.data.cpu_usage];
        break;
      }
      case 'resync':
      case 'broadcast':
        break;
      default:
        unreachable(m);
    }
  }, { filter: { state: ['DRAINED', 'down'], partition: 'gpu' } });

  client.subscribe('metrics', (m) => {
    switch (m.type) {
      case 'snapshot': {
        const latest: MetricsData | undefined = m.data[0];
        void latest?.cluster.cpu_usage;
        break;
      }
      case 'metrics_update': {
        const { cluster, nodes } = m.data;
        void [cluster.gpu_usage, cluster.memory_mb.allocated, cluster.unavailable_nodes, nodes[0]?.memory_usage];
        break;
      }
      case 'resync':
      case 'broadcast':
        break;
      default:
        unreachable(m);
    }
  }, { snapshot: true });

  const onNotification = (data: NotificationData): void => {
    switch (data.type) {
      case 'job_submitted':
      case 'job_completed':
      case 'job_failed':
      case 'job_cancelled':
      case 'job_timeout': {
        const duration: string | null = data.data.duration;
        const exit: number | null = data.data.exit_code;
        const owner: string = data.user;
        void [duration, exit, owner, data.data.efficiency?.memory_efficiency];
        break;
      }
      case 'job_started':
      case 'job_pending': {
        const since: string | null = data.data.submit_time;
        const where: string[] = data.data.nodes;
        void [since, where];
        break;
      }
      case 'system':
      case 'info':
      case 'alert': {
        const everyone: boolean = data.user === null;
        void [everyone, data.data['link']];
        break;
      }
      default:
        unreachable(data);
    }
  };
  client.subscribe('notifications', (m) => {
    switch (m.type) {
      case 'notification':
        void [m.data.id, m.data.read, m.data.severity];
        onNotification(m.data);
        break;
      case 'resync':
      case 'broadcast':
        break;
      default:
        unreachable(m);
    }
  }, { filter: { type: ['job_failed', 'job_timeout'], severity: 'error' } });

  const mine = client.subscribe('user:alice', (m) => {
    if (m.type === 'notification') onNotification(m.data);
    const channel: 'user:alice' = m.channel;
    void channel;
  }, { filter: { job_id: '1251' } });

  const firing = new Map<string, AlertData>();
  client.subscribe('alerts', (m) => {
    switch (m.type) {
      case 'snapshot':
        for (const alert of m.data) firing.set(alert.id, alert);
        break;
      case 'alert':
        if (m.data.status === 'resolved') firing.delete(m.data.id);
        else firing.set(m.data.id, m.data);
        // broker alerts come without a position
        if (m.offset !== undefined) void m.epoch;
        break;
      case 'resync':
      case 'broadcast':
        break;
      default:
        unreachable(m);
    }
  }, { snapshot: true, filter: { severity: 'critical', rule: ['node_unavailable'] } });

  // A channel known only at run time: every message type of every channel.
  const channel = 'jobs' as Channel;
  const any = client.subscribe(channel, (m: SubscriptionMessage) => {
    if (m.type === 'snapshot') {
      const snapshot: SnapshotMessage = m;
      void snapshot.position;
    }
  });
  client.unsubscribe(channel);
  client.unsubscribe('jobs', jobsSub.callback);

  void jobsSub.ready.then((start: Position | null) => start?.offset);
  // New options for the same subscription and callback: one request.
  void jobsSub.update({ filter: { user: 'bob', status: ['RUNNING'] }, snapshot: true })
    .then((start: Position | null) => start?.epoch, (error: unknown) => error instanceof SlurmcastError && error.code);
  void jobsSub.update();
  void nodesSub.update({ filter: { state: 'DRAINED' } });
  const where: Position | null = nodesSub.position;
  const active: boolean = mine.active;
  const named: 'user:alice' = mine.channel;
  void [where, active, named];
  mine.unsubscribe();
  return [jobsSub, nodesSub, mine, any];
}

/** Every message any channel publishes, by `type`. */
export function describe(message: ChannelMessage): string {
  switch (message.type) {
    case 'job_submitted':
    case 'job_update':
      return `${message.data.job_id} ${message.data.status}`;
    case 'node_update':
    case 'node_resource_change':
    case 'node_added':
    case 'node_removed':
      return `${message.data.node} ${message.data.state}`;
    case 'metrics_update':
      return `${message.data.cluster.cpu_usage}%`;
    case 'notification':
      return message.data.title;
    case 'alert':
      return `${message.data.rule} ${message.data.status}`;
    case 'broadcast':
      return JSON.stringify(message.data);
    default:
      return unreachable(message);
  }
}

// -- requests -------------------------------------------------------------------------------

export async function requests(client: SlurmcastClient): Promise<void> {
  const rtt: number = await client.ping();

  const page = await client.history('jobs', { limit: 50, filter: { user: 'alice' } });
  const top: Position = page.position;
  for (const publication of page.publications) void describe(publication);
  const more = await client.history('alerts', { since: top });
  const complete: boolean | undefined = more.complete;

  const marked: string[] = await client.markRead(['notif-0b6c873ff9004a49', 'notif-1f00aa']);
  await client.markRead('notif-0b6c873ff9004a49');
  await client.markRead(new Set(marked));

  const delivered: number = await client.broadcast('jobs', { text: 'maintenance at 18:00' });
  await client.broadcast('all', { text: 'hello' });

  const pong = await client.send({ type: 'ping', id: 'p-1' });
  const pongType: 'pong' = pong.type;
  const history = await client.send({ type: 'history', channel: 'nodes', limit: 5 });
  const nodes: string[] = history.publications.map((p) => (p.type === 'broadcast' ? '' : p.data.node));
  const read = await client.send({ type: 'mark_read', ids: ['notif-1f00aa'], id: 8 });
  const ids: string[] = read.ids;
  const published = await client.send({ type: 'broadcast', channel: 'alerts', message: { text: 'x' } });
  const count: number = published.delivered;

  try {
    await client.history('gpus' as Channel);
  } catch (error) {
    if (error instanceof SlurmcastError && error.code === 'unknown_channel') {
      const reply = error.reply;
      if (reply?.type === 'error') void reply.message;
    }
  }
  void [rtt, complete, delivered, pongType, nodes, ids, count];
}
