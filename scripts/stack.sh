#!/usr/bin/env bash
# The local Prefect stack for ieflow: server + UI, a process work pool, a worker, the deployments.
#
#   scripts/stack.sh up        # start everything (idempotent), deploy prefect.yaml; UI at :4200
#   scripts/stack.sh down      # stop the worker and the server started by `up`
#   scripts/stack.sh status    # what is running
#   eval "$(scripts/stack.sh env)"   # point this shell's `prefect` commands at the stack
#
# Settings (environment): PREFECT_HOME (default: <repo>/.prefect, so the stack's database, logs
# and task caches stay with the checkout), IEFLOW_PREFECT_PORT (4200), IEFLOW_WORK_POOL
# (ieflow-process), IEFLOW_NIGHTLY_CRON / IEFLOW_NIGHTLY_TZ (override the nightly schedule, e.g.
# "30 1 * * *" and "Europe/Paris"). Only processes recorded in $PREFECT_HOME/*.pid are ever stopped.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PREFECT_HOME="${PREFECT_HOME:-$ROOT/.prefect}"
PORT="${IEFLOW_PREFECT_PORT:-4200}"
POOL="${IEFLOW_WORK_POOL:-ieflow-process}"
export PREFECT_API_URL="http://127.0.0.1:$PORT/api"
export PREFECT_UI_URL="http://127.0.0.1:$PORT"
# Offline: no analytics, no phoning home (the same defaults as ieflow/_offline.py).
export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1 LITELLM_LOCAL_MODEL_COST_MAP=True \
       GX_ANALYTICS_ENABLED=False UNSTRUCTURED_DISABLE_NOTICE=1
# Workers look for work every 10 s by default; 2 s makes a run from the UI start at once.
export PREFECT_WORKER_QUERY_SECONDS="${PREFECT_WORKER_QUERY_SECONDS:-2}"

if [ -x "$ROOT/.venv/bin/prefect" ]; then PREFECT="$ROOT/.venv/bin/prefect"; else PREFECT="prefect"; fi
command -v "$PREFECT" >/dev/null 2>&1 || { echo "error: prefect not found: run 'make install' first" >&2; exit 2; }

LOGS="$PREFECT_HOME/logs"
mkdir -p "$LOGS"

healthy() { curl -sf -m 2 "$PREFECT_API_URL/health" >/dev/null 2>&1; }

alive() {  # alive NAME: the process recorded in NAME.pid is running
  local pidfile="$PREFECT_HOME/$1.pid"
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

start() {  # start NAME COMMAND...: in its own session, so `stop` can end it with its children
  local name="$1"; shift
  setsid nohup "$@" >"$LOGS/$name.log" 2>&1 < /dev/null &
  echo $! >"$PREFECT_HOME/$name.pid"
}

stop() {  # stop NAME: TERM the recorded process group, KILL it after 15 s
  local pidfile="$PREFECT_HOME/$1.pid" pid
  [ -f "$pidfile" ] || return 0
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    echo "stopped $1 (pid $pid)"
  fi
  rm -f "$pidfile"
}

up() {
  cd "$ROOT"
  if healthy; then
    echo "server: already up at $PREFECT_UI_URL"
  else
    start server "$PREFECT" server start --host 127.0.0.1 --port "$PORT"
    echo -n "server: starting"
    for _ in $(seq 1 90); do healthy && break; alive server || break; echo -n "."; sleep 1; done
    echo
    if ! healthy; then
      echo "error: the Prefect server did not become healthy; see $LOGS/server.log" >&2
      tail -n 20 "$LOGS/server.log" >&2 || true
      exit 1
    fi
    echo "server: up at $PREFECT_UI_URL (logs: $LOGS/server.log)"
  fi
  if ! "$PREFECT" work-pool inspect "$POOL" >/dev/null 2>&1; then
    "$PREFECT" work-pool create "$POOL" --type process >/dev/null
    echo "work pool: created $POOL (process)"
  else
    echo "work pool: $POOL exists"
  fi
  if alive worker; then
    echo "worker: already running (pid $(cat "$PREFECT_HOME/worker.pid"))"
  else
    start worker "$PREFECT" worker start --pool "$POOL" --type process --name "ieflow-$(hostname)"
    echo "worker: started (logs: $LOGS/worker.log)"
  fi
  echo "deployments: prefect deploy --all"
  "$PREFECT" --no-prompt deploy --all >"$LOGS/deploy.log" 2>&1 || {
    echo "error: prefect deploy failed; see $LOGS/deploy.log" >&2; tail -n 20 "$LOGS/deploy.log" >&2; exit 1; }
  if [ -n "${IEFLOW_NIGHTLY_CRON:-}${IEFLOW_NIGHTLY_TZ:-}" ]; then
    local cron="${IEFLOW_NIGHTLY_CRON:-0 2 * * *}" tz="${IEFLOW_NIGHTLY_TZ:-UTC}"
    "$PREFECT" deployment schedule clear nightly/nightly -y >/dev/null
    "$PREFECT" deployment schedule create nightly/nightly --cron "$cron" --timezone "$tz" >/dev/null
    echo "nightly schedule: '$cron' in $tz"
  fi
  "$PREFECT" deployment ls 2>/dev/null | grep -E "ingest|split|optimize|extract|nightly|benchmark" || true
  echo
  echo "UI: $PREFECT_UI_URL   (this shell: eval \"\$(scripts/stack.sh env)\")"
}

down() {
  stop worker
  stop server
  if healthy; then echo "note: a server not started by this script still answers at $PREFECT_API_URL"; fi
}

status() {
  if healthy; then echo "server: up at $PREFECT_UI_URL"; else echo "server: down"; fi
  if alive worker; then echo "worker: running (pid $(cat "$PREFECT_HOME/worker.pid"))"; else echo "worker: stopped"; fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  env) printf 'export PREFECT_HOME=%q PREFECT_API_URL=%q PREFECT_UI_URL=%q\n' \
         "$PREFECT_HOME" "$PREFECT_API_URL" "$PREFECT_UI_URL" ;;
  *) echo "usage: scripts/stack.sh up|down|status|env" >&2; exit 2 ;;
esac
