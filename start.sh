#!/usr/bin/env bash
# Start slurmcast in the background.
#   ./start.sh [serve options...]     e.g. ./start.sh --ws-port 6011
# Writes the pid to slurmcast.pid and appends output to slurmcast.log (override with
# SLURMCAST_PIDFILE / SLURMCAST_LOGFILE). Stop it with ./stop.sh.
set -euo pipefail
cd "$(dirname "$0")"
pidfile=${SLURMCAST_PIDFILE:-slurmcast.pid}
logfile=${SLURMCAST_LOGFILE:-slurmcast.log}

if [[ -f $pidfile ]]; then
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    echo "slurmcast is already running (pid $pid)" >&2
    exit 1
  fi
  echo "removing stale pid file $pidfile (pid $pid is not running)"
  rm -f "$pidfile"
fi

[[ -x .venv/bin/slurmcast ]] || make -s install

touch "$logfile"  # a first start has no log yet: count its lines from an empty file
start_line=$(($(wc -l <"$logfile") + 1))
nohup .venv/bin/slurmcast serve "$@" >>"$logfile" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$pidfile"

# Report success only once the servers listen; report failure with the log's reason.
for _ in $(seq 1 100); do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "slurmcast failed to start; see $logfile:" >&2
    tail -n +"$start_line" "$logfile" | tail -n 20 >&2
    rm -f "$pidfile"
    exit 1
  fi
  if tail -n +"$start_line" "$logfile" | grep -q "serving the"; then
    echo "slurmcast started (pid $pid, log $logfile)"
    exit 0
  fi
  sleep 0.2
done
echo "slurmcast (pid $pid) has not reported ready after 20 s; see $logfile" >&2
exit 1
