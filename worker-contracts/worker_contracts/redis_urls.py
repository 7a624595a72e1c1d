"""The Redis URL forms the worker and its senders accept, and a client for each.

``redis://`` and ``rediss://`` are redis-py's own.  A Sentinel deployment is named by
``redis+sentinel://[user:password@]HOST:PORT[,HOST:PORT...]/MASTER_NAME[/DB]`` (``rediss+sentinel://``: TLS to
the Redis nodes); user and password are the Redis nodes' (Sentinel's own password is separate:
``sentinel_password``).  The client asks the sentinels for the master and asks again after a failover.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")


@dataclass(frozen=True)
class SentinelTarget:
    sentinels: list[tuple[str, int]]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False


def parse_sentinel_url(url: str) -> SentinelTarget | None:
    """The parts of a ``redis+sentinel://`` URL, or None for any other URL; ValueError when malformed."""
    parts = urlsplit(url)
    if parts.scheme not in SENTINEL_SCHEMES:
        return None
    hosts = parts.netloc.rsplit("@", 1)[-1]
    sentinels = []
    for host_port in hosts.split(","):
        host, _, port = host_port.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"sentinel address {host_port!r} is not HOST:PORT")
        sentinels.append((host.strip("[]"), int(port)))
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ValueError("a Sentinel URL ends /MASTER_NAME or /MASTER_NAME/DB")
    return SentinelTarget(
        sentinels=sentinels,
        master=unquote(path[0]),
        db=int(path[1]) if len(path) == 2 else 0,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls=parts.scheme == "rediss+sentinel",
    )


def redis_client(
    url: str, *, sentinel_password: str | None = None, sentinel_timeout: float = 0.5, **kwargs: Any
) -> Any:
    """A ``redis.Redis`` for ``url`` (any form above); ``kwargs`` go to the connections to Redis."""
    import redis
    from redis.sentinel import Sentinel

    target = parse_sentinel_url(url)
    if target is None:
        return redis.Redis.from_url(url, **kwargs)
    sentinel = Sentinel(
        target.sentinels,
        sentinel_kwargs={
            "password": sentinel_password,
            "socket_timeout": sentinel_timeout,
            "socket_connect_timeout": sentinel_timeout,
        },
    )
    return sentinel.master_for(
        target.master,
        db=target.db,
        username=target.username,
        password=target.password,
        ssl=target.tls,
        **kwargs,
    )
