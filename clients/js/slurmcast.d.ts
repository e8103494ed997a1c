/**
 * Types of slurmcast.js, the client for the slurmcast WebSocket gateway, and of every message
 * of its protocol (docs/protocol.md).
 *
 * Written by hand to match slurmcast.js and the server: the field names of message `data` are
 * the server's stable contract. A field the server may leave empty is `| null`; a field it
 * only sometimes sends is optional (`?`). Subscribing to a channel by name types its messages,
 * so switching on `message.type` narrows `message.data`.
 *
 * @module slurmcast
 */

// -- positions and channels ---------------------------------------------------------------

/** The client's connection state. `closed`: by {@link SlurmcastClient.close}; `failed`: it gave
 * up (see {@link SlurmcastClient.error}). Both end with a new `connect()`. */
export type ClientState = 'disconnected' | 'connecting' | 'connected' | 'closed' | 'failed';

/**
 * Where a message sits in its channel's stream. `offset` counts the channel's messages (1, 2,
 * 3, ... without gaps); `epoch` names the history they belong to and changes when the server
 * lost it (a restart, Redis emptied).
 */
export interface Position {
  offset: number;
  epoch: string;
}

/** Channels every server has. */
export type PublicChannel = 'jobs' | 'nodes' | 'metrics' | 'notifications' | 'alerts';
/** A user's private channel: their job notifications and announcements addressed to them. */
export type UserChannel = `user:${string}`;
/** Any channel a client may subscribe to. */
export type Channel = PublicChannel | UserChannel;
/** Channels that have a state, hence a snapshot (`notifications` and `user:<name>` have none). */
export type SnapshotChannel = 'jobs' | 'nodes' | 'metrics' | 'alerts';

/** A time the server sent: UTC, ISO-8601, ending in `Z`. */
export type Timestamp = string;

// -- message data ---------------------------------------------------------------------------

/** A job's state, as Slurm names it in full (never the compact `PD`, `R`). */
export type JobState =
  | 'PENDING' | 'RUNNING' | 'SUSPENDED' | 'COMPLETING' | 'CONFIGURING'
  | 'COMPLETED' | 'CANCELLED' | 'FAILED' | 'TIMEOUT' | 'NODE_FAIL' | 'PREEMPTED' | 'BOOT_FAIL'
  | 'DEADLINE' | 'OUT_OF_MEMORY' | 'REQUEUED' | 'REQUEUE_HOLD' | 'REQUEUE_FED' | 'RESV_DEL_HOLD'
  | 'RESIZING' | 'REVOKED' | 'SIGNALING' | 'SPECIAL_EXIT' | 'STAGE_OUT' | 'STOPPED' | 'UNKNOWN';

/** A node's state, derived as `sinfo` does; `NOT_RESPONDING` is in `flags`, not here. */
export type NodeState =
  | 'IDLE' | 'MIXED' | 'ALLOCATED' | 'COMPLETING' | 'DRAINING' | 'DRAINED' | 'DOWN' | 'FAIL'
  | 'FAILING' | 'MAINT' | 'RESERVED' | 'REBOOT' | 'FUTURE' | 'POWERED_DOWN' | 'INVAL' | 'UNKNOWN';

/** What a job asked for. */
export interface JobResources {
  cpus: number;
  /** readable, in Slurm's binary units with short labels (`"64GB"`); null when unknown */
  memory: string | null;
  memory_mb: number | null;
  /** whatever form the request took (`--gpus`, `--gres`, ...); kept after the job ends */
  gpus: number;
}

/**
 * How well a finished job used what it was given, as `seff` computes it. A figure accounting
 * did not record is null and `reason` says why.
 */
export interface JobEfficiency {
  elapsed_s: number | null;
  cpus: number | null;
  cpu_time_s: number | null;
  /** TotalCPU / (elapsed x allocated CPUs), percent */
  cpu_efficiency: number | null;
  memory_requested_mb: number | null;
  memory_peak_mb: number | null;
  /** largest MaxRSS of any step / the memory request, percent */
  memory_efficiency: number | null;
  gpus: number;
  reason: string | null;
}

/** `data` of `job_submitted` and `job_update`, and an item of a `jobs` snapshot. */
export interface JobData {
  /** always a string: array tasks and het jobs have ids like `1234_7` */
  job_id: string;
  name: string;
  status: JobState;
  /** the state the server saw before; null on `job_submitted` */
  previous_status: JobState | null;
  user: string;
  account: string | null;
  partition: string;
  qos: string | null;
  nodes: string[];
  submit_time: Timestamp | null;
  start_time: Timestamp | null;
  end_time: Timestamp | null;
  /** the scheduler's forecast for a job not started yet (`squeue --start`) */
  expected_start_time: Timestamp | null;
  /** the job's return code (not the raw wait status); null until it finished */
  exit_code: number | null;
  exit_signal: number | null;
  /** Slurm's reason code (`Priority`, `Resources`, `NonZeroExitCode`, ...) */
  reason: string | null;
  /** the reason in plain language: for a job not started, or one whose code says why it ended */
  reason_text: string | null;
  resources: JobResources;
  /** on a job that finished (any final `status`) */
  efficiency?: JobEfficiency;
  /** `job_update` only: the job left the queue and its final state could not be confirmed;
   * `status` is the last state seen */
  final_state_confirmed?: false;
  /** `job_update` only: a pending job now waits for another reason; this was the former code */
  previous_reason?: string | null;
}

/** `data` of every `nodes` message, and an item of a `nodes` snapshot. */
export interface NodeData {
  node: string;
  state: NodeState;
  /** on `node_update`: the state before; on `node_removed`: its last state; else null */
  previous_state: NodeState | null;
  /** raw flags that matter, such as `NOT_RESPONDING` (sinfo's `*`) */
  flags: string[];
  /** why an admin drained or downed it */
  reason: string | null;
  partitions: string[];
  cpus: { total: number; allocated: number; idle: number };
  /** readable figures (`"256GB"`) and the same in MiB; `free` is memory not allocated to jobs */
  memory: {
    total: string;
    allocated: string;
    free: string;
    total_mb: number;
    allocated_mb: number;
    free_mb: number;
  };
  gpus: { total: number; allocated: number; idle: number };
  /** allocated CPUs, percent */
  cpu_usage: number;
  /** the OS load average, where the source reports it */
  cpu_load: number | null;
  /** `node_resource_change` only */
  previous_cpu_usage?: number;
}

/** One node in {@link MetricsData.nodes}. */
export interface NodeMetrics {
  node: string;
  state: NodeState;
  cpu_usage: number;
  memory_usage: number;
  gpu_usage: number;
}

/** `data` of `metrics_update`, and the one item of a `metrics` snapshot. Usage is allocated
 * over configured capacity, in percent. */
export interface MetricsData {
  cluster: {
    cpu_usage: number;
    memory_usage: number;
    gpu_usage: number;
    /** jobs still in the queue (pending, running, suspended, completing) */
    total_jobs: number;
    running_jobs: number;
    pending_jobs: number;
    total_nodes: number;
    /** responding `IDLE` nodes */
    idle_nodes: number;
    /** down, drained, draining, failing or not responding */
    unavailable_nodes: number;
    cpus: { total: number; allocated: number };
    gpus: { total: number; allocated: number };
    memory_mb: { total: number; allocated: number };
  };
  nodes: NodeMetrics[];
}

export type NotificationSeverity = 'info' | 'success' | 'warning' | 'error' | 'critical';
/** Raised by the server about jobs. */
export type JobNotificationType = 'job_submitted' | 'job_completed' | 'job_failed' | 'job_cancelled' | 'job_timeout';
/** Made only for a person whose notification rules ask for them (docs/notifications.md). */
export type JobProgressType = 'job_started' | 'job_pending';
/** Published by operators (`POST /notifications`). */
export type AnnouncementType = 'alert' | 'system' | 'info';

/** `data.data` of a job notification. */
export interface JobNotificationDetails {
  job_id: string;
  name: string;
  user: string;
  partition: string;
  status: JobState;
  exit_code: number | null;
  exit_signal: number | null;
  nodes: string[];
  /** the run time in its two largest units (`"2h 30m"`); null for a job that never started */
  duration: string | null;
  duration_s: number | null;
  /** on a job that finished */
  efficiency?: JobEfficiency;
}

/** `data.data` of a `job_started` or `job_pending` notification. */
export interface JobProgressDetails {
  job_id: string;
  name: string;
  user: string;
  partition: string;
  status: JobState;
  nodes: string[];
  submit_time: Timestamp | null;
}

interface NotificationBase {
  /** for `markRead()` */
  id: string;
  title: string;
  message: string;
  severity: NotificationSeverity;
  read: boolean;
  /** whose it is; null: an announcement for everyone */
  user: string | null;
  created_at: Timestamp;
}

/** A notification about a job (`type` `job_*`). */
export interface JobNotificationData extends NotificationBase {
  type: JobNotificationType;
  user: string;
  data: JobNotificationDetails;
}

/** A job started, or is still pending past a rule's `pending_minutes`. */
export interface JobProgressData extends NotificationBase {
  type: JobProgressType;
  user: string;
  data: JobProgressDetails;
}

/** An operator's announcement; `data` is what they posted (an admin's alert rule's
 *  notification has `data.alert`, the alert message's data). */
export interface AnnouncementData extends NotificationBase {
  type: AnnouncementType;
  data: Record<string, unknown>;
}

/** `data` of `notification` messages: switch on `type` to tell them apart. */
export type NotificationData = JobNotificationData | JobProgressData | AnnouncementData;

export type AlertRule =
  | 'cpu_usage_high' | 'memory_usage_high' | 'node_unavailable' | 'source_unavailable'
  | 'storage_unavailable' | 'broker_unavailable';
export type AlertSeverity = 'info' | 'warning' | 'critical';
export type AlertStatus = 'firing' | 'resolved';

/** `data` of `alert` messages, and an item of an `alerts` snapshot (firing ones only). */
export interface AlertData {
  /** names the condition (`cpu_usage_high`, `node_unavailable:node004`): firing and resolved share it */
  id: string;
  rule: AlertRule;
  severity: AlertSeverity;
  status: AlertStatus;
  message: string;
  /** the figures behind it, per rule: `{cpu_usage, threshold}`, `{node, state, flags, reason}`,
   * `{source, error, loop}`, ... */
  details: Record<string, unknown>;
  /** when the condition started */
  since: Timestamp;
}

/** `data` of a `broadcast`: the `message` an operator posted, unchanged. */
export type BroadcastData = Record<string, unknown>;

// -- channel messages -----------------------------------------------------------------------

/** The envelope of every message published on a channel. */
export interface Envelope<C extends string, T extends string, D> {
  channel: C;
  /** what happened; narrows `data` */
  type: T;
  /** when the server published it */
  timestamp: Timestamp;
  data: D;
  offset: number;
  epoch: string;
}

export type JobSubmittedMessage = Envelope<'jobs', 'job_submitted', JobData>;
export type JobUpdateMessage = Envelope<'jobs', 'job_update', JobData>;
export type NodeUpdateMessage = Envelope<'nodes', 'node_update', NodeData>;
export type NodeResourceChangeMessage = Envelope<'nodes', 'node_resource_change', NodeData & { previous_cpu_usage: number }>;
export type NodeAddedMessage = Envelope<'nodes', 'node_added', NodeData>;
export type NodeRemovedMessage = Envelope<'nodes', 'node_removed', NodeData>;
export type MetricsUpdateMessage = Envelope<'metrics', 'metrics_update', MetricsData>;
export type NotificationMessage<C extends 'notifications' | UserChannel = 'notifications' | UserChannel> =
  Envelope<C, 'notification', NotificationData>;
/** An alert. One about this server instance's own Redis connection (`broker_unavailable`)
 * cannot go through Redis: it reaches this instance's subscribers only, without a position. */
export type AlertMessage =
  | Envelope<'alerts', 'alert', AlertData>
  | (Omit<Envelope<'alerts', 'alert', AlertData>, 'offset' | 'epoch'> & { offset?: undefined; epoch?: undefined });
/** An operator's message on a channel (`POST /broadcast`, or an admin's {@link SlurmcastClient.broadcast}). */
export type BroadcastMessage<C extends Channel = Channel> = Envelope<C, 'broadcast', BroadcastData>;

/** What each public channel publishes. */
export interface ChannelMessages {
  jobs: JobSubmittedMessage | JobUpdateMessage | BroadcastMessage<'jobs'>;
  nodes: NodeUpdateMessage | NodeResourceChangeMessage | NodeAddedMessage | NodeRemovedMessage | BroadcastMessage<'nodes'>;
  metrics: MetricsUpdateMessage | BroadcastMessage<'metrics'>;
  notifications: NotificationMessage<'notifications'> | BroadcastMessage<'notifications'>;
  alerts: AlertMessage | BroadcastMessage<'alerts'>;
}

/** A message published on channel `C`, live or from history. */
export type PublicationOf<C extends Channel> = C extends PublicChannel
  ? ChannelMessages[C]
  : C extends UserChannel ? NotificationMessage<C> | BroadcastMessage<C> : never;

/** Every message published on any channel. */
export type ChannelMessage = PublicationOf<Channel>;

/** The item type of each channel's state. */
export interface SnapshotItems {
  jobs: JobData;
  nodes: NodeData;
  metrics: MetricsData;
  alerts: AlertData;
}

/**
 * The channel's whole state as of `position` (every part the server sent, joined), delivered
 * first to a subscription made with `snapshot: true`, and again after a `resync`. The deltas
 * that follow apply to it: see docs/protocol.md#snapshots.
 */
export interface SnapshotMessage<C extends SnapshotChannel = SnapshotChannel> {
  type: 'snapshot';
  channel: C;
  position: Position;
  /** `jobs`: jobs still queued; `nodes`: every node; `metrics`: one item, the latest;
   * `alerts`: those firing */
  data: SnapshotItems[C][];
}

/**
 * The server could not replay what this client missed (a restart, a gap too old): state built
 * from earlier messages may be wrong. A fresh snapshot follows if the subscription asked for
 * snapshots.
 */
export interface ResyncMessage<C extends Channel = Channel> {
  type: 'resync';
  channel: C;
}

/** What a subscription's callback receives on channel `C`: its publications, a snapshot (for
 * channels that have one), and `resync`. */
export type SubscriptionMessage<C extends Channel = Channel> =
  | PublicationOf<C>
  | ResyncMessage<C>
  | (C extends SnapshotChannel ? SnapshotMessage<C> : never);

/** A message for every client (`channel: "all"`): an operator's broadcast, without a position. */
export interface AllClientsMessage {
  channel: 'all';
  type: 'broadcast';
  timestamp: Timestamp;
  data: BroadcastData;
}

// -- filters --------------------------------------------------------------------------------

/** One value, or a list of values any of which matches. State and level names (`status`,
 * `state`, `severity`, `type`, `rule`) match regardless of case. */
export type FilterValue = string | number | ReadonlyArray<string | number>;

/** The fields each channel's filter knows; `metrics` has none. */
export interface FilterFields {
  /** `node`: any of the job's nodes */
  jobs: 'job_id' | 'user' | 'partition' | 'status' | 'node' | 'name' | 'account';
  /** `partition`: any of the node's partitions */
  nodes: 'node' | 'state' | 'partition';
  alerts: 'rule' | 'severity' | 'status' | 'node';
  notifications: 'job_id' | 'user' | 'type' | 'severity' | 'status';
}

/** A server-side filter on channel `C`: every field given must match. */
export type Filter<C extends Channel = Channel> = {
  [F in C extends keyof FilterFields ? FilterFields[C] : C extends UserChannel ? FilterFields['notifications'] : never]?: FilterValue;
};

// -- requests and replies -------------------------------------------------------------------

/** A request `id`: an integer (up to 2^53 - 1 in magnitude) or a string of at most 128 characters. */
export type RequestId = number | string;

export interface PingRequest {
  type: 'ping';
  id?: RequestId;
}

export interface HistoryRequest<C extends Channel = Channel> {
  type: 'history';
  channel: C;
  /** 1 to 1000; default 100 */
  limit?: number;
  /** the messages after this position instead of the last `limit` */
  since?: Position;
  filter?: Filter<C>;
  id?: RequestId;
}

export interface MarkReadRequest {
  type: 'mark_read';
  /** 1 to 500 notification ids */
  ids: string[];
  id?: RequestId;
}

export interface BroadcastRequest {
  type: 'broadcast';
  /** a channel, or `"all"` for every client */
  channel: Channel | 'all';
  message: BroadcastData;
  id?: RequestId;
}

/** Managed by the client itself (see {@link SlurmcastClient.send}). */
export interface SubscribeRequest {
  type: 'subscribe';
  channel?: Channel;
  /** 1 to 32 channels, instead of `channel` */
  channels?: Channel[];
  since?: Position;
  snapshot?: boolean;
  filter?: Filter;
  id?: RequestId;
}

/** Managed by the client itself. */
export interface UnsubscribeRequest {
  type: 'unsubscribe';
  channel?: Channel;
  channels?: Channel[];
  id?: RequestId;
}

/** Managed by the client itself: the first message, with `token` or `getToken`. */
export interface AuthRequest {
  type: 'auth';
  token: string;
  id?: RequestId;
}

/** Managed by the client itself: sent when the server says the token expired. */
export interface RefreshRequest {
  type: 'refresh';
  token: string;
  id?: RequestId;
}

/** Every request of the protocol. */
export type ProtocolRequest =
  | PingRequest | HistoryRequest | MarkReadRequest | BroadcastRequest
  | SubscribeRequest | UnsubscribeRequest | AuthRequest | RefreshRequest;

/** The requests {@link SlurmcastClient.send} takes. */
export type SendableRequest = PingRequest | HistoryRequest | MarkReadRequest | BroadcastRequest;

/** The server copies a request's `id` into each reply to it. */
interface ReplyBase {
  id?: RequestId;
}

export interface PongReply extends ReplyBase {
  type: 'pong';
}

/** The reply to `history`. */
export interface HistoryReply<C extends Channel = Channel> extends ReplyBase {
  type: 'history';
  channel: C;
  /** the channel's position now */
  position: Position;
  /** oldest first */
  publications: PublicationOf<C>[];
  /** with `since` only: whether these are all the messages after it (false: the epoch changed
   * or it fell out of the history window) */
  complete?: boolean;
}

export interface MarkedReadReply extends ReplyBase {
  type: 'marked_read';
  /** the ids now read that were the caller's to mark */
  ids: string[];
}

export interface PublishedReply extends ReplyBase {
  type: 'published';
  channel: Channel | 'all';
  /** how many clients it was written to (this instance's, with Redis) */
  delivered: number;
}

export interface SubscribedReply extends ReplyBase {
  type: 'subscribed';
  channel: Channel;
  message: string;
  /** where the stream starts; absent when it was already subscribed with the same options */
  position?: Position;
  /** with `since`: whether the missed messages follow (false: resync from a snapshot) */
  recovered?: boolean;
}

/** Also sent without `id` when a refreshed token no longer allows a channel. */
export interface UnsubscribedReply extends ReplyBase {
  type: 'unsubscribed';
  channel: Channel;
  message: string;
}

export interface AuthenticatedReply extends ReplyBase {
  type: 'authenticated';
  /** null from a server without authentication (`--auth none`), which answers `auth` too */
  user: string | null;
  roles: string[];
  /** when the token expires; null if it does not */
  expires_at: Timestamp | null;
}

export interface RefreshedReply extends ReplyBase {
  type: 'refreshed';
  user: string;
  roles: string[];
  expires_at: Timestamp | null;
}

/** The codes of the server's error replies (docs/protocol.md#errors). */
export type ErrorCode =
  | 'invalid_json' | 'not_an_object' | 'missing_type' | 'unknown_type' | 'missing_channel'
  | 'unknown_channel' | 'invalid_field' | 'missing_message' | 'missing_token'
  | 'binary_not_supported' | 'invalid_msgpack' | 'unauthorized' | 'invalid_token'
  | 'token_expired' | 'already_authenticated' | 'forbidden' | 'rate_limited'
  | 'too_many_channels' | 'invalid_filter' | 'snapshot_not_available' | 'storage_unavailable'
  | 'broker_unavailable';

/** Codes of failures the client finds itself. */
export type ClientErrorCode =
  /** close() was called */
  | 'closed'
  /** the subscription was left before the server confirmed it (or an update of it), or
   * update() was called on one no longer active */
  | 'unsubscribed'
  /** the server refused the token */
  | 'auth_failed'
  /** another subscription on the channel has another filter, or its snapshot is gone; or
   * update() on a channel other callbacks share */
  | 'conflicting_subscription'
  /** getToken threw or rejected */
  | 'token_unavailable'
  /** wireFormat 'msgpack' without the @msgpack/msgpack package */
  | 'msgpack_unavailable'
  /** the WebSocket constructor refused the URL */
  | 'invalid_url'
  /** the server closed with 1009: a request was too big */
  | 'message_too_big'
  /** a request other than ping/history/mark_read was sent, then the connection dropped before
   * its reply: it may or may not have been processed */
  | 'connection_lost';

export interface ErrorReply extends ReplyBase {
  type: 'error';
  code: ErrorCode;
  message: string;
  /** with `rate_limited`: seconds until a request is accepted again */
  retry_after?: number;
}

/** Every reply to a request. */
export type ProtocolReply =
  | PongReply | HistoryReply | MarkedReadReply | PublishedReply | SubscribedReply
  | UnsubscribedReply | AuthenticatedReply | RefreshedReply | ErrorReply;

// -- the client -----------------------------------------------------------------------------

/** The parts of a WebSocket constructor the client uses: the browser's and the `ws` package's fit. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[], options?: any) => unknown;

export interface ClientOptions {
  /** a JWT, sent as the first message (servers run with `--auth jwt`) */
  token?: string;
  /** called before every connection and when the token expires; preferred over `token` */
  getToken?: () => string | Promise<string>;
  /** the WebSocket constructor; default `globalThis.WebSocket` (in Node.js 20: pass the `ws` package's) */
  WebSocket?: WebSocketConstructor;
  /** ms, ceiling of the first reconnection delay; default 500 */
  backoffInitial?: number;
  /** ms, largest ceiling; delays are random in [0, ceiling); default 30000 */
  backoffMax?: number;
  /** ms, ceiling of the delays after the server closed saying it restarts (1001, 1012), for 15
   * attempts; default 2000 */
  restartBackoffMax?: number;
  /** jitter source in [0, 1); default Math.random */
  random?: () => number;
  /** `msgpack` asks for binary MessagePack frames (needs `@msgpack/msgpack`); a server that does
   * not agree gets JSON. Default `json`. */
  wireFormat?: 'json' | 'msgpack';
  /** the `ws` package only: its `perMessageDeflate` option (`false`: no compression) */
  perMessageDeflate?: boolean | object;
}

/** Options of {@link SlurmcastClient.subscribe}. */
export interface SubscribeOptions<C extends Channel = Channel> {
  /** a server-side filter; `metrics` takes none */
  filter?: C extends 'metrics' ? never : Filter<C>;
  /** deliver the channel's state first, and again after a resync; only channels with a state */
  snapshot?: C extends SnapshotChannel ? boolean : false;
}

/**
 * Who the server says the client is ({@link SlurmcastClient.identity}): its answer to `auth`
 * and to each token refresh.
 */
export interface Identity {
  readonly user: string;
  readonly roles: readonly string[];
  /** when the token expires, in epoch milliseconds; null if it does not */
  readonly expiresAt: number | null;
}

/** Options of {@link SlurmcastClient.history}. */
export interface HistoryOptions<C extends Channel = Channel> {
  /** 1 to 1000; default 100 */
  limit?: number;
  /** the messages after this position (at most `limit`) instead of the last ones */
  since?: Position;
  filter?: C extends 'metrics' ? never : Filter<C>;
}

/** What {@link SlurmcastClient.history} resolves with: the reply without its `id`. */
export type HistoryResult<C extends Channel = Channel> = Omit<HistoryReply<C>, 'id'>;

/** The arguments of an {@link SlurmcastClient.onState} listener, by state. */
export type StateChange =
  | [state: 'connecting' | 'connected', detail: {}]
  /** `code` and `reason` of the close and `delay` before the next attempt, when one is scheduled */
  | [state: 'disconnected', detail: { code?: number; reason?: string; delay?: number }]
  | [state: 'closed' | 'failed', detail: { error: SlurmcastError }];

/** An error reply from the server, or a failure of the client; `code` says which. */
export declare class SlurmcastError extends Error {
  constructor(code: ErrorCode | ClientErrorCode, message: string, reply?: ErrorReply | UnsubscribedReply);
  name: 'SlurmcastError';
  code: ErrorCode | ClientErrorCode;
  /** the server's message, when there is one (an `unsubscribed` one when a refreshed token lost
   * a channel) */
  reply?: ErrorReply | UnsubscribedReply;
  /** set on errors that ended a subscription (reported to onError), and on a refused update() */
  channel?: string;
}

/** One callback on one channel, from {@link SlurmcastClient.subscribe}. */
export declare class Subscription<C extends Channel = Channel> {
  private constructor();
  readonly channel: C;
  /** the function given to subscribe() (a method here so that subscriptions to different
   * channels fit in one `Subscription[]`) */
  callback(message: SubscriptionMessage<C>): void;
  /** resolves with the start position once the server confirmed the subscription; rejects with
   * a {@link SlurmcastError} if it refused it (`unknown_channel`, `invalid_filter`, `forbidden`,
   * `snapshot_not_available`, ...) or it was left first (`unsubscribed`) */
  readonly ready: Promise<Position | null>;
  /** the position of the last message (or snapshot) delivered */
  get position(): Position | null;
  /** whether it still receives messages */
  get active(): boolean;
  /** stop delivering to this callback; the channel is left when no callback remains */
  unsubscribe(): void;
  /**
   * Change the subscription's options in place: one `subscribe` request, which the server takes
   * as a replacement (instead of unsubscribe + subscribe). The options replace the old ones
   * whole (no `filter`: none); with `snapshot: true` the callback gets the new filter's snapshot
   * first, as one message. Messages of the old filter still on the way are dropped, and
   * reconnections use the new options. The same filter without a snapshot sends nothing.
   *
   * Resolves with the new stream's start position once the server confirmed it. Rejects with a
   * {@link SlurmcastError} if the server refused the new options (`invalid_filter`, `forbidden`,
   * `snapshot_not_available`, ...): the subscription then goes on with the old ones, from where
   * it was. Also `unsubscribed` (no longer active, or left first), `conflicting_subscription`
   * (other callbacks share the channel, hence its filter), `closed`. An update made before an
   * earlier one was answered replaces it; both settle with the later one's outcome.
   */
  update(options?: SubscribeOptions<C>): Promise<Position | null>;
}

/**
 * A self-healing connection to a slurmcast server: it reconnects, authenticates again,
 * resubscribes from the last position delivered (the server replays what was missed, or the
 * callback gets `resync` and a fresh snapshot) and never delivers a message twice.
 */
export declare class SlurmcastClient {
  /** @param url `ws://host:5011/` or `wss://...` */
  constructor(url: string, options?: ClientOptions);
  readonly url: string;
  readonly state: ClientState;
  /** why the client gave up (state `failed`) */
  readonly error: SlurmcastError | null;
  /** who the server says this client is (its `authenticated` / `refreshed` reply); null until
   * the first authentication and without a token (`--auth none`). Replaced at every
   * (re)connection and refresh, kept while reconnecting. */
  get identity(): Identity | null;

  /** Start connecting (if not already); resolves once connected and authenticated. Keeps
   * retrying through failures; rejects only if the client is closed or fails. */
  connect(): Promise<void>;
  /** Close and stop reconnecting; pending requests are rejected with `closed`. */
  close(): void;

  /**
   * Receive a channel's messages. Works before `connect()` and survives reconnections.
   * Callbacks on one channel share one server subscription, hence one filter.
   * @throws {SlurmcastError} `conflicting_subscription`: the channel is subscribed with another
   *   filter, or a snapshot is asked for that it was not subscribed with (or already delivered)
   */
  subscribe<C extends Channel>(
    channel: C,
    callback: (message: SubscriptionMessage<C>) => void,
    options?: SubscribeOptions<C>,
  ): Subscription<C>;
  /** Remove `callback` from `channel`, or every callback on it when none is given. */
  unsubscribe<C extends Channel>(channel: C, callback?: (message: SubscriptionMessage<C>) => void): void;

  /** Stored messages of a channel: the last `limit`, or those after `since`. Waits for the
   * connection if there is none yet. */
  history<C extends Channel>(channel: C, options?: HistoryOptions<C>): Promise<HistoryResult<C>>;
  /** An application-level round trip; resolves with its time in milliseconds. */
  ping(): Promise<number>;
  /** Mark stored notifications read; resolves with the ids that are now read and were the
   * caller's to mark (already read ones included). A lone string is one id. */
  markRead(ids: string | Iterable<string>): Promise<string[]>;
  /** Publish `message` on `channel` (`"all"`: every client); admins only, others get
   * `forbidden`. Resolves with how many clients it was written to. Rejects with
   * `connection_lost` (not sent again) if the connection drops before the reply. */
  broadcast(channel: Channel | 'all', message: BroadcastData): Promise<number>;

  /**
   * Send a request as it is (with an `id` if it has none) and resolve with the server's reply;
   * an error reply rejects with a {@link SlurmcastError}. `ping`, `history` and `mark_read` are
   * sent again after a reconnection; anything else rejects with `connection_lost` if the
   * connection drops before its reply.
   * @throws {TypeError} for `subscribe`, `unsubscribe`, `auth` and `refresh`, which the client
   *   manages itself, and for an `id` the server would not accept
   */
  send(message: PingRequest): Promise<PongReply>;
  send<C extends Channel>(message: HistoryRequest<C>): Promise<HistoryReply<C>>;
  send(message: MarkReadRequest): Promise<MarkedReadReply>;
  send(message: BroadcastRequest): Promise<PublishedReply>;

  /** Called on every state change; `detail` depends on the state. Returns a function that
   * removes the listener. */
  onState(listener: (...change: StateChange) => void): () => void;
  /**
   * Errors no promise reports: a subscription refused on resubscribing, a token that could not
   * be refreshed, an undecodable frame, and whatever a callback throws (hence `unknown`: narrow
   * with `instanceof SlurmcastError`). Without a listener they go to console.error.
   */
  onError(listener: (error: unknown) => void): () => void;
  /** Messages for every client (`channel: "all"`, an operator's broadcast). */
  onMessage(listener: (message: AllClientsMessage) => void): () => void;
}

/**
 * Create a client and start connecting (the seed's `connect()`); subscribe and make requests
 * right away. Never rejects unobserved: `await client.connect()` or `onState` tell the outcome.
 * @param url default `ws://localhost:5011`, the server's default port
 */
export declare function connect(url?: string, options?: ClientOptions): SlurmcastClient;

export default SlurmcastClient;
