"""Liveness and readiness: broker reachable, database reachable, migrations current.

One set of checks for the worker's probe port, the dashboard's /healthz and /readyz, and `worker check`.
"""

from __future__ import annotations

import time
from typing import Any

from settings import Settings


def redis_probe_client(settings: Settings, timeout_s: float, url: str | None = None) -> Any:
    """A client of ``url`` or BROKER_URL (any Redis form, Sentinel included) that gives up after ``timeout_s``, no
    retry."""
    import redis

    from worker_service.brokers.redis import make_connection_pool

    return redis.Redis(
        connection_pool=make_connection_pool(
            url or settings.broker_url,
            socket_timeout=timeout_s,
            health_check_interval=0,
            connect_attempts=1,
            sentinel_password=settings.redis_sentinel_password,
            sentinel_timeout=min(settings.redis_sentinel_timeout_seconds, timeout_s),
        )
    )


class HealthChecks:
    """Parameters: settings (which broker and database to check)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.started = time.time()

    def live(self) -> dict[str, Any]:
        return {"alive": True, "uptime_seconds": round(time.time() - self.started, 1)}

    def broker_ok(self, timeout_s: float = 2) -> tuple[bool, str]:
        try:
            if self.settings.broker_kind == "redis":
                # BROKER_URL's Redis and each of BROKER_SHARDS' (a worker enqueues onto queues of other shards)
                for queue, url in [("", None), *sorted(self.settings.shard_urls.items())]:
                    client = redis_probe_client(self.settings, timeout_s, url)
                    try:
                        client.ping()
                    except Exception as exc:  # noqa: BLE001 - any failure means not ready
                        if not queue:
                            raise
                        return (
                            False,
                            f"the Redis of queue {queue} (BROKER_SHARDS): {type(exc).__name__}: {exc}"[:300],
                        )
                    finally:
                        client.close()
            else:
                import pika

                nodes = []  # BROKER_URL may list a cluster's nodes, ';'-separated: one answering is enough
                for url in self.settings.broker_url.split(";"):
                    params = pika.URLParameters(url)
                    params.connection_attempts, params.socket_timeout = 1, timeout_s
                    params.stack_timeout = timeout_s + 1
                    nodes.append(params)
                pika.BlockingConnection(nodes).close()
            return True, "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            return False, f"{type(exc).__name__}: {exc}"[:300]

    def database_ok(self, *, schema_must_be_current: bool = True) -> tuple[bool, str]:
        """Reachable (and, unless told otherwise, migrated to the latest version); the detail says what is not."""
        from worker_service.database import current_version, latest_version, session

        try:
            with session() as db:
                db.execute_sql("SELECT 1")
            version = current_version()
        except Exception as exc:  # noqa: BLE001
            return False, f"{type(exc).__name__}: {exc}"[:300]
        if version < latest_version():
            return (
                not schema_must_be_current,
                f"schema version {version}, latest {latest_version()}: run worker migrate",
            )
        return True, "ok"

    def ready(self) -> dict[str, Any]:
        broker, broker_detail = self.broker_ok()
        database, database_detail = self.database_ok()
        return {"ready": broker and database, "broker": broker_detail, "database": database_detail}
