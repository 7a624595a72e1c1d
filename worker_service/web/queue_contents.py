"""What a Redis queue holds, for the queue pages: the messages waiting, delayed (retries and deferrals, in the
delay queue or held by a worker until due) and fetched by a worker, each decoded and masked.

Reads Redis only (the layout of worker_service.brokers.redis: ``<ns>:<queue>`` the waiting ids,
``<ns>:<queue>.msgs`` and ``<ns>:<queue>.DQ.msgs`` the payloads, ``<ns>:__acks__.<broker id>.<queue>`` what a
worker fetched and has not started, ``<ns>:__started__.<broker id>.<queue>`` what it runs,
``<ns>:__heartbeats__`` the workers, ``<ns>:__workers__`` their reports).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from worker_service.masking import mask

#: at most this many messages a section lists (each section says how many there are in all)
SHOWN = 50


def _iso(ms: Any) -> str | None:
    try:
        return (
            datetime.fromtimestamp(int(ms) / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        )
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def describe(
    redis_id: str, body: bytes | None, worker: str | None = None, *, running: bool = False
) -> dict[str, Any]:
    """One message as the page shows it (masked; ``undecodable`` when its body cannot be read)."""
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return {"redis_id": redis_id, "undecodable": True, "worker": worker, "running": running}
    return _described(redis_id, data, worker, running)


def _described(redis_id: str, data: dict[str, Any], worker: str | None, running: bool) -> dict[str, Any]:
    raw_kwargs, raw_options = data.get("kwargs"), data.get("options")
    kwargs: dict[str, Any] = raw_kwargs if isinstance(raw_kwargs, dict) else {}
    options: dict[str, Any] = raw_options if isinstance(raw_options, dict) else {}
    shown = json.dumps(
        mask({"args": data.get("args") or [], "kwargs": kwargs}), ensure_ascii=False, default=str
    )
    asset_id = kwargs.get("asset_id")
    return {
        "redis_id": redis_id,
        "message_id": data.get("message_id"),
        "actor": data.get("actor_name"),
        "asset_id": asset_id if isinstance(asset_id, str) else None,
        "arguments": shown if len(shown) <= 400 else shown[:400] + "…",
        "sent_at": _iso(data.get("message_timestamp")),
        "eta": _iso(options.get("eta")),
        "retries": options.get("retries", 0),
        "worker": worker,
        "running": running,
    }


def _worker_names(client: Any, ns: str) -> dict[str, str]:
    """Broker id -> "host pid N", as the overview names workers (their reports)."""
    names = {}
    for field, raw in client.hgetall(f"{ns}:__workers__").items():
        try:
            info = json.loads(raw)
            names[field.decode()] = f"{info.get('host')} pid {info.get('pid')}"
        except (ValueError, AttributeError):
            continue
    return names


def contents(client: Any, ns: str, queue: str, *, shown: int = SHOWN) -> dict[str, Any]:
    """``{"queue", "waiting": {"total", "messages"}, "delayed": {...}, "fetched": {...}}``, the first ``shown`` of
    each: waiting in queue order, delayed by when they are due, fetched by worker."""
    key = f"{ns}:{queue}"
    pipe = client.pipeline(transaction=False)
    pipe.llen(key)
    pipe.lrange(key, 0, shown - 1)
    pipe.hlen(f"{key}.DQ.msgs")
    waiting_total, waiting_ids, delayed_total = pipe.execute()
    waiting_ids = [i.decode() for i in waiting_ids]
    bodies = client.hmget(f"{key}.msgs", waiting_ids) if waiting_ids else []
    waiting = [describe(i, b) for i, b in zip(waiting_ids, bodies, strict=True)]
    _cursor, delayed_raw = client.hscan(f"{key}.DQ.msgs", 0, count=shown)
    delayed = sorted(
        (describe(i.decode(), b) for i, b in list(delayed_raw.items())[:shown]),
        key=lambda m: m.get("eta") or "",
    )
    names = _worker_names(client, ns)
    fetched: list[dict[str, Any]] = []
    fetched_total = 0
    for broker_id in (m.decode() for m in client.zrange(f"{ns}:__heartbeats__", 0, -1)):
        for running, held in ((True, "__started__"), (False, "__acks__")):
            ids = [i.decode() for i in client.smembers(f"{ns}:{held}.{broker_id}.{queue}")]
            fetched_total += len(ids)
            room = shown - len(fetched)
            if ids and room > 0:
                bodies = client.hmget(f"{key}.msgs", ids[:room])
                worker = names.get(broker_id, broker_id[:8])
                fetched += [
                    describe(i, b, worker, running=running) for i, b in zip(ids[:room], bodies, strict=True)
                ]
    return {
        "queue": queue,
        "waiting": {"total": int(waiting_total), "messages": waiting},
        "delayed": {"total": int(delayed_total), "messages": delayed},
        "fetched": {"total": fetched_total, "messages": fetched},
    }
