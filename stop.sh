#!/usr/bin/env bash
# Stop the slurmcast started by ./start.sh, by the pid in its pid file only.
# SIGTERM makes it close every client with 1001 and exit; after 20 s it is killed.
set -euo pipefail
cd "$(dirname "$0")"
pidfile=${SLURMCAST_PIDFILE:-slurmcast.pid}

if [[ ! -f $pidfile ]]; then
  echo "slurmcast is not running (no $pidfile)"
  exit 0
fi
pid=$(cat "$pidfile")
if ! kill -0 "$pid" 2>/dev/null; then
  echo "slurmcast is not running (stale pid $pid); removing $pidfile"
  rm -f "$pidfile"
  exit 0
fi
# Never signal a process that merely reused the pid.
if ! grep -q slurmcast "/proc/$pid/cmdline" 2>/dev/null; then
  echo "pid $pid is not slurmcast; removing stale $pidfile" >&2
  rm -f "$pidfile"
  exit 1
fi

kill -TERM "$pid"
for _ in $(seq 1 100); do
  if ! kill -0 "$pid" 2>/dev/null; then
    rm -f "$pidfile"
    echo "slurmcast stopped (pid $pid)"
    exit 0
  fi
  sleep 0.2
done
echo "slurmcast (pid $pid) did not stop within 20 s; killing it" >&2
kill -KILL "$pid" 2>/dev/null || true
rm -f "$pidfile"
