/**
 * dashboard.js: the page's wiring. Reads /dashboard.json, signs in if the server
 * wants a token, opens one connection with the project's client (./slurmcast.js,
 * which reconnects and recovers), subscribes every channel the page shows and routes
 * each message to the module that renders it.
 * @module dashboard
 */
import { SlurmcastClient } from './slurmcast.js';
import { Alerts } from './alerts.js';
import { Announcements, BroadcastForm, isAnnouncement } from './announcements.js';
import { Auth } from './auth.js';
import { Charts } from './charts.js';
import { ConnectionIndicator } from './connection.js';
import { humanState } from './format.js';
import { JobsTable } from './jobs.js';
import { NodeGrid } from './nodes.js';
import { JOB_END_TYPES, Notifications } from './notifications.js';
import { NotifyRules } from './rules.js';
import { Toasts } from './toasts.js';

/** Stored metrics asked for to fill the charts (30 min at the default 15 s interval). */
const METRICS_HISTORY = 120;
const ALERTS_HISTORY = 200;

const DEFAULT_CONFIG = { ws_port: 5011, ws_url: null, auth: 'none', notifications: true, jobs_visibility: 'all', notify: false };

const $ = (id) => document.getElementById(id);

async function loadConfig() {
  try {
    const response = await fetch('dashboard.json', { credentials: 'same-origin' });
    if (!response.ok) return { ...DEFAULT_CONFIG };
    return { ...DEFAULT_CONFIG, ...(await response.json()) };
  } catch {
    return { ...DEFAULT_CONFIG };
  }
}

function wsUrl(config) {
  if (config.ws_url) return config.ws_url;
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const host = location.hostname.includes(':') ? `[${location.hostname}]` : location.hostname;
  return `${scheme}://${host}:${config.ws_port}/`;
}

async function main() {
  const config = await loadConfig();
  const toasts = new Toasts($('toasts'));
  const auth = new Auth(config.auth, {
    panel: $('signin-panel'), form: $('signin'), input: $('token-input'), error: $('signin-error'),
    badge: $('user-badge'), signout: $('signout'),
  });
  auth.render();
  const url = wsUrl(config);
  $('footer-info').textContent = `${url} · auth ${auth.mode} · jobs visible: ${config.jobs_visibility}`;

  if (!config.notifications) {
    $('notifications-panel').hidden = true;
    $('unread-link').hidden = true;
  }

  if (!auth.ready) {
    const indicator = $('connection');
    indicator.dataset.state = 'offline';
    indicator.title = 'Sign in to connect';
    indicator.querySelector('.connection-label').textContent = 'Signed out';
    document.body.dataset.signedOut = 'true';
    await auth.askForToken();
    delete document.body.dataset.signedOut;
  }

  const client = new SlurmcastClient(url, auth.mode === 'jwt' ? { getToken: () => auth.token } : {});
  const connection = new ConnectionIndicator($('connection'), client);

  // -- modules ----------------------------------------------------------------------
  let nodesReady = false;
  let jobsReady = false;
  const markReady = () => {
    if (nodesReady && jobsReady) document.body.dataset.ready = 'true';
  };

  const announcements = new Announcements(
    { panel: $('announcements-panel'), list: $('announcements'), clear: $('announcements-clear') }, { toasts });

  /** Wrap a channel handler: `resync` goes to the indicator, broadcasts (any type not the server's) to announcements. */
  const wrap = (handler, onResync) => (message) => {
    if (message.type === 'resync') {
      connection.noteResync(message.channel);
      onResync?.();
    } else if (isAnnouncement(message)) {
      announcements.add(message);
    } else {
      handler(message);
    }
  };
  const fromHistory = (message) => {
    if (isAnnouncement(message)) announcements.add(message, { live: false });
  };

  const me = () => auth.identity.user;
  const jobEndToast = (title, text, severity) => toasts.show({
    kind: severity === 'success' ? 'success' : severity === 'error' ? 'error' : 'warning', title, text, timeout: 10000,
  });

  const jobs = new JobsTable({
    table: $('jobs-table'), empty: $('jobs-empty'), count: $('jobs-count'), note: $('jobs-note'),
    myJobs: $('my-jobs'), myJobsLabel: $('my-jobs-label'), user: $('filter-user'),
    partition: $('filter-partition'), state: $('filter-state'), form: $('job-filters'),
  }, {
    client,
    wrap: (handler) => wrap(handler),
    onFirstSnapshot: () => { jobsReady = true; markReady(); },
    onHistoryMessage: fromHistory,
    onFinal: (job) => {
      // Without the notifications channel, the jobs channel says when my job ends.
      if (config.notifications || !me() || job.user !== me()) return;
      const ok = job.status === 'COMPLETED';
      jobEndToast(`Job ${job.job_id} ${humanState(job.status).toLowerCase()}`,
        `${job.name ?? ''}${job.exit_code !== null && job.exit_code !== undefined ? ` (exit ${job.exit_code})` : ''}`,
        ok ? 'success' : 'error');
    },
  });
  jobs.setIdentity(auth.identity, { initial: true });

  // Notification rules (e-mail, Slack, webhooks): only where the server delivers them.
  const rules = config.notify ? new NotifyRules($('rules-panel'), { auth, toasts }) : null;
  rules?.show();

  const nodes = new NodeGrid(
    { grid: $('node-grid'), legend: $('node-legend'), detail: $('node-detail'), summary: $('cluster-summary') },
    {
      onPartitions: (names) => {
        jobs.setPartitions(names);
        rules?.setPartitions(names);
      },
      onFirstSnapshot: () => { nodesReady = true; markReady(); },
    });

  const charts = new Charts({
    gauges: $('gauges'), range: $('charts-range'),
    containers: { cpu: $('chart-cpu'), memory: $('chart-memory'), gpu: $('chart-gpu'), jobs: $('chart-jobs') },
  }, { onNodes: (list) => nodes.applyMetrics(list) });

  const alerts = new Alerts({ banner: $('alerts-banner'), history: $('alerts-history'), historyEmpty: $('alerts-history-empty') });

  const notifications = config.notifications ? new Notifications({
    panel: $('notifications-panel'), list: $('notifications-list'), empty: $('notifications-empty'),
    count: $('unread-count'), link: $('unread-link'), markAll: $('mark-all-read'),
  }, {
    auth,
    toasts,
    onLive: (n) => {
      rules?.noteNotification(); // a delivery may hang on it
      const user = me();
      if (JOB_END_TYPES.includes(n.type)) {
        if (user && (n.user === user || n.data?.user === user)) jobEndToast(n.title ?? 'Job ended', n.message ?? '', n.severity);
      } else if (['system', 'info', 'alert'].includes(n.type)) {
        toasts.show({ kind: n.severity === 'error' || n.severity === 'critical' ? 'error' : 'info', title: n.title, text: n.message ?? '' });
      }
    },
  }) : null;

  const broadcastForm = new BroadcastForm({
    panel: $('broadcast-panel'), form: $('broadcast-form'), channel: $('broadcast-channel'),
    text: $('broadcast-text'), status: $('broadcast-status'),
  }, { client, auth });
  broadcastForm.setVisible(auth.identity.isAdmin);

  auth.onChange((identity) => {
    jobs.setIdentity(identity);
    broadcastForm.setVisible(identity.isAdmin);
    if (connectedOnce) rules?.load();
  });

  // -- connection -------------------------------------------------------------------
  /** Channel -> what to do when the server refuses it. */
  const refusals = {
    jobs: (error) => jobs.refuse(error),
    nodes: (error) => nodes.refuse(error.message),
    metrics: (error) => charts.refuse(error.message),
    alerts: (error) => alerts.refuse(error.message),
    notifications: () => {},
  };
  const recentErrors = new Map();
  client.onError((error) => {
    if (error.channel && refusals[error.channel]) {
      refusals[error.channel](error);
      return;
    }
    const key = `${error.code}:${error.message}`;
    const now = Date.now();
    if ((recentErrors.get(key) ?? 0) > now - 15000) return;
    recentErrors.set(key, now);
    if (error.code === 'token_expired' || error.code === 'invalid_token') return; // the state says it
    toasts.show({ kind: 'error', title: 'Server error', text: `${error.message}${error.code ? ` (${error.code})` : ''}` });
  });

  let connectedOnce = false;
  client.onState((state) => {
    if (state === 'connected') {
      auth.confirm(client.identity); // the server's word, once per (re)connection; null without auth
      if (!connectedOnce) {
        connectedOnce = true;
        // The API takes the same token: ask once the server has accepted it.
        notifications?.load();
        rules?.load();
      }
    } else if (state === 'failed' && auth.mode === 'jwt') {
      const code = client.error?.code;
      if (['invalid_token', 'token_expired', 'auth_failed', 'unauthorized', 'forbidden'].includes(code)) {
        const why = code === 'token_expired' ? 'Your token has expired: sign in with a new one.'
          : `The server refused the token: ${client.error?.message ?? code}`;
        auth.rejected(why);
      }
    }
  });

  client.onMessage((message) => {
    if (isAnnouncement(message)) announcements.add(message);
  });

  const subscribe = (channel, handler, options, onResync) => {
    const sub = client.subscribe(channel, wrap(handler, onResync), options);
    sub.ready.catch(() => {}); // refusals arrive through onError
    return sub;
  };
  subscribe('nodes', (m) => nodes.handle(m), { snapshot: true });
  jobs.start();
  subscribe('metrics', (m) => charts.handle(m), { snapshot: true });
  subscribe('alerts', (m) => alerts.handle(m), { snapshot: true });
  if (notifications) subscribe('notifications', (m) => notifications.handle(m), {}, () => notifications.resync());

  // Requests wait for the connection and go after the subscriptions.
  client.history('alerts', { limit: ALERTS_HISTORY }).then((reply) => {
    alerts.addHistory(reply.publications);
    for (const m of reply.publications ?? []) fromHistory(m);
  }, () => {});
  client.history('metrics', { limit: METRICS_HISTORY }).then((reply) => {
    charts.addHistory(reply.publications);
    for (const m of reply.publications ?? []) fromHistory(m);
  }, () => {});

  client.connect().catch(() => {}); // failures show on the indicator
  window.slurmcastDashboard = { client, auth, jobs, nodes, charts, alerts, notifications, announcements, rules };
}

main();
