"""A Redis broker that cannot lose a message between processing and ack.

Subclass of :class:`dramatiq.brokers.redis.RedisBroker` (same keys, same
wire format, so foreign senders and Dramatiq's own tooling keep working).
What it changes, and why no middleware hook could do it:

* ``settle`` acks a message and enqueues its successor (retry, deferral,
  pending dead letter) in one Lua script, so a Redis blip during a retry
  never acks-and-loses the message (Dramatiq #545).  Settles and the
  "started" marks of the crash-loop guard from all threads of a process
  share round trips (brokers.groupcommit): one round trip per batch, plain
  commands unless a successor needs the script.  A message's crash count
  travels in its Redis id (``<id>#crashes=<n>``), so fetch and settle never
  touch a crash table.
* ``fetch`` returns each Redis id with its payload, so an undecodable body
  is dead-lettered and removed instead of crashing the consumer and staying
  forever in a live worker's acks set.
* Dead-worker recovery no longer depends on the 0.1 % maintenance lottery
  or Redis ``KEYS``: ``recover_dead_workers`` (run by middleware.recovery
  every few seconds) requeues everything a dead worker held, on every
  registered queue and delay queue, and counts a crash for each message it
  had started; messages over ``crash_loop_limit`` become ``crash_loop``
  dead letters.
* Nothing a consumer fetched stays held by a live (or cleanly exited)
  worker: ``close`` gives back messages fetched but never handed to a
  thread, and delay-queue messages whose in-memory copy Dramatiq's consumer
  thread dropped after a connection error; a give-back that fails is
  retried by the next consumer of that queue.
* A queue paused by an operator (``set_paused``) is not fetched from while
  paused: nothing leaves it, nothing is lost, and resuming lets consumers
  fetch again (middleware.queuepause puts back what was already prefetched).
* ``heartbeat`` is sent by a thread, so a worker whose threads are all busy
  (full prefetch, no broker traffic) is not mistaken for a dead one.
* Queues can live on Redis servers of their own (``shards``, BROKER_SHARDS):
  every operation on a queue's messages goes to the client of its queue,
  each shard keeps its own heartbeats, registry and recovery, and what is
  fleet-wide (pauses, worker reports, leases) stays on ``client``.
* The consumer never sleeps a growing backoff while work waits: an idle
  consumer (of a queue or a delay queue) blocks in Redis until a message
  arrives: ``BLMOVE`` of the queue onto its landing list hands each
  message to one waiting consumer and wakes no other, so the Redis
  work per message does not grow with the number of idle consumers (needs
  Redis >= 6.2); a consumer whose prefetch is full sleeps until settles free
  a quarter of it.  Dramatiq's consumer sleeps up to ``worker_timeout`` (1 s)
  in both cases, which costs throughput and send-to-start latency, and wakes
  every consumer of a queue for each message.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import dramatiq
import redis
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.common import current_millis
from dramatiq.errors import ConnectionClosed, DecodeError
from dramatiq.logging import get_logger
from dramatiq.message import Message
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry
from redis.sentinel import (
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)
from worker_contracts.redis_urls import parse_sentinel_url

from worker_service.brokers.groupcommit import GroupCommit
from worker_service.brokers.hooks import DefinedHooksDispatch
from worker_service.brokers.lua import SCRIPTS
from worker_service.brokers.pausing import PAUSE_READ_S, PausedQueues
from worker_service.brokers.settle import DeadLetterSink, dead_letter_of, get_successor
from worker_service.outcome import PENDING_DEAD_LETTER, Dead, Successor, kill

if TYPE_CHECKING:
    from worker_service.ratelimit import RateLimiter

_REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError)
MAX_CONNECTIONS = 10_000  # Redis's own maxclients; connections are opened only as threads need them
# One operation of lua/batch.lua: kind, queue, id, successor queue, successor id, successor payload.
_BatchOp = tuple[str, str, str, str, str, bytes]
#: a wait that returned later than this blocked (its queue was empty): the message it brought likely came alone
TRICKLE_WAIT_S = 0.005
#: batches of at most this many operations without a successor go as plain commands (fewest Redis commands:
#: no script call); larger ones as one script call (less client work per operation than a long pipeline)
PLAIN_BATCH_MAX = 4
#: how recover.lua renames a message that was running when its worker died: the id carries the crash count
CRASH_SUFFIX = "#crashes="


@dataclasses.dataclass(eq=False)
class _Shard:
    """A Redis of BROKER_SHARDS: its client; its group committer (its outage holds up its own settles and marks,
    no other queue's); when a heartbeat last got through (from start: one out of reach since then counts as an
    outage), and before when nobody may be judged dead on it (after an outage longer than the heartbeat timeout,
    every live worker reports there again first)."""

    client: redis.Redis
    batches: GroupCommit[_BatchOp, int]
    reached: float
    judge_after: float = 0.0


def crash_count(redis_id: str) -> int:
    """Worker deaths ``redis_id`` has been running through (recover.lua counts them in the id)."""
    _, mark, count = redis_id.rpartition(CRASH_SUFFIX)
    return int(count) if mark and count.isdigit() else 0


#: error replies of a Redis whose role changed under us (a failover, planned or not): the write did not happen
FAILOVER_REPLIES = ("READONLY", "NOREPLICAS", "MASTERDOWN", "UNBLOCKED")


class _FailoverIsAnOutage:
    """A connection that turns a failover's error replies into a ConnectionError and drops itself, so every
    caller (group commit, consumers, limiter, leases, heartbeats, the dashboard) treats a failover as the
    outage it is, the pool retries, and a Sentinel pool asks the sentinels for the new master."""

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)  # type: ignore[misc]
        except redis.ResponseError as exc:
            text = str(exc)
            if not any(reply in text[:300] for reply in FAILOVER_REPLIES):
                raise
            self.disconnect()  # type: ignore[attr-defined]
            raise redis.ConnectionError(f"Redis changed role (failover): {text[:200]}") from exc


class FailoverAwareConnection(_FailoverIsAnOutage, redis.Connection):
    pass


class FailoverAwareSSLConnection(_FailoverIsAnOutage, redis.SSLConnection):
    pass


class FailoverAwareSentinelConnection(_FailoverIsAnOutage, SentinelManagedConnection):
    pass


class FailoverAwareSentinelSSLConnection(_FailoverIsAnOutage, SentinelManagedSSLConnection):
    pass


def make_connection_pool(
    url: str,
    *,
    socket_timeout: float,
    health_check_interval: int,
    connect_attempts: int,
    sentinel_password: str | None = None,
    sentinel_timeout: float = 0.5,
) -> redis.ConnectionPool:
    """Pool with socket timeouts, health checks and retries with exponential backoff and jitter, for a
    ``redis://``/``rediss://`` URL or a Sentinel deployment's ``redis+sentinel://`` (worker_contracts.redis_urls):
    the master is asked of the sentinels, and again after a failover."""
    options: dict[str, Any] = {
        # redis-py 8 caps a pool at 100 connections and raises past it; a process's blocking consumers, worker
        # threads that enqueue and rate-limiter waits can need more (KNOWLEDGE_THREADS goes to 1,024)
        "max_connections": MAX_CONNECTIONS,
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": min(socket_timeout, 5.0),
        "socket_keepalive": True,
        "health_check_interval": health_check_interval,
        "retry": Retry(ExponentialWithJitterBackoff(base=0.1, cap=2.0), connect_attempts - 1),
        "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
    }
    target = parse_sentinel_url(url)
    if target is None:
        tls = url.startswith("rediss://")
        return redis.ConnectionPool.from_url(
            url, connection_class=FailoverAwareSSLConnection if tls else FailoverAwareConnection, **options
        )
    sentinel = Sentinel(
        target.sentinels,
        sentinel_kwargs={
            "password": sentinel_password,
            "socket_timeout": sentinel_timeout,
            "socket_connect_timeout": sentinel_timeout,
        },
    )
    return SentinelConnectionPool(
        target.master,
        sentinel,
        db=target.db,
        username=target.username,
        password=target.password,
        connection_class=FailoverAwareSentinelSSLConnection
        if target.tls
        else FailoverAwareSentinelConnection,
        **options,
    )


class ReliableRedisBroker(DefinedHooksDispatch, RedisBroker):
    """RedisBroker with atomic settle, decode-safe fetch, lottery-free recovery and a crash-loop guard.

    Parameters:
      crash_loop_limit(int): worker deaths while running one message before it is dead-lettered.
      idle_poll_ms(int): the longest an idle delay-queue consumer sleeps between fetches (Dramatiq:
        worker_timeout, 1 s); queue consumers block in Redis instead.
      dead_letter_sink(DeadLetterSink): where consumer-level dead letters go (set by middleware).
      wait_replicas(int), wait_timeout_ms(int): REDIS_WAIT_REPLICAS / REDIS_WAIT_TIMEOUT_MS: enqueues, settles
        and the retry copies they carry wait (``WAIT``, on the connection that wrote them) until that many
        replicas have them, or the time-out (logged: the write stands, its copy is late).  0: off.
      shards(Mapping[str, redis.Redis]): BROKER_SHARDS: queue name -> the client of the Redis holding it (its
        delay queue too); queues not named live on ``client``.
      Everything else as :class:`RedisBroker`; ``maintenance_chance`` is forced to 0.
    """

    def __init__(
        self,
        *,
        crash_loop_limit: int = 3,
        idle_poll_ms: int = 1000,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 1000,
        shards: Mapping[str, redis.Redis] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs["maintenance_chance"] = 0
        super().__init__(**kwargs)
        self.shards = dict(shards or {})
        self.crash_loop_limit = crash_loop_limit
        self.idle_poll_ms = idle_poll_ms
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self.can_block = True
        self.dead_letter_sink: DeadLetterSink | None = None
        self.rate_limiter: RateLimiter | None = None  # set by middleware.ratelimit at process boot
        self.reliable_scripts = {name: self.client.register_script(src) for name, src in SCRIPTS.items()}
        # Ids a closing consumer could not give back (Redis unreachable), by queue; the next consumer retries.
        self.orphans: dict[str, set[str]] = {}
        self.orphans_lock = threading.Lock()
        self.batches: GroupCommit[_BatchOp, int] = GroupCommit(
            functools.partial(self._run_batch, self.client), transient=_REDIS_ERRORS
        )
        # by id of the client: the shards' clients are not hashable by value
        self.shard_nodes = {
            id(client): _Shard(
                client,
                GroupCommit(
                    functools.partial(self._run_batch, client),
                    name=f"group-commit-{i}",
                    transient=_REDIS_ERRORS,
                ),
                reached=time.monotonic(),
            )
            for i, client in enumerate({id(c): c for c in self.shards.values()}.values(), 1)
            if client is not self.client
        }
        self.pauses = PausedQueues(self.client, self.key("__paused_queues__"))
        self.landed_seen: dict[str, set[str]] = {}  # ids on each landing list at the last maintenance round
        self.started_ids: set[str] = set()  # Redis ids marked started (moved to a started set), until settled
        self.pop_many = True  # LPOP with a count (Redis >= 6.2); off after the server refused it
        self.live_consumers: weakref.WeakSet[ReliableRedisConsumer] = weakref.WeakSet()

    @property
    def consumer_class(self) -> type[_RedisConsumer]:
        return ReliableRedisConsumer

    def key(self, name: str) -> str:
        return f"{self.namespace}:{name}"

    def client_for(self, queue_name: str) -> redis.Redis:
        """The client of the Redis that holds ``queue_name`` (and its delay queue): its shard, or ``client``."""
        return self.shards.get(queue_name.removesuffix(".DQ"), self.client) if self.shards else self.client

    def queue_clients(self) -> list[redis.Redis]:
        """``client``, then every shard's client, each once."""
        return [self.client, *(shard.client for shard in self.shard_nodes.values())]

    # --- fleet maintenance --------------------------------------------------------
    def heartbeat(self) -> None:
        """On every Redis holding queues: recovery on each reads the heartbeats kept there.  ``client``'s errors
        are raised (middleware.recovery handles that outage); a shard out of reach is logged and skipped, so it
        stops none of the others' maintenance, and once back after more than the heartbeat timeout nobody is
        judged dead on it for one more timeout (every live worker reports there again first)."""
        self.follow_master()
        self.client.zadd(self.key("__heartbeats__"), {self.broker_id: current_millis()})
        for shard in self.shard_nodes.values():
            if (
                self._on_shard(
                    shard.client,
                    "heartbeat",
                    lambda c: c.zadd(self.key("__heartbeats__"), {self.broker_id: current_millis()}),
                )
                is None
            ):
                continue
            now, timeout_s = time.monotonic(), self.heartbeat_timeout / 1000
            if now - shard.reached > timeout_s:
                shard.judge_after = now + timeout_s
            shard.reached = now

    def follow_master(self) -> bool:
        """Behind Sentinel, ask the sentinels which node is the master (each maintenance round); when another
        node is named, drop every connection to the old one, in use or idle: an old master frozen through a
        failover says "master" for seconds after it resumes, and what is written there is discarded when it
        resyncs, while a blocked consumer would go on taking messages from it.  True when it moved."""
        pool = self.client.connection_pool
        proxy = getattr(pool, "proxy", None)  # a SentinelConnectionPool's
        if proxy is None:
            return False
        before = proxy.master_address
        try:
            now = proxy.get_master_address()  # drops the idle connections when the address changed
        except (redis.ConnectionError, redis.TimeoutError) as exc:  # MasterNotFoundError is one
            self.logger.warning("No sentinel named the master this round: %s", exc)
            return False
        if before is None or now == before:
            return False
        self.logger.warning(
            "The sentinels name a new master, %s:%s (was %s:%s): leaving the old one",
            now[0],
            now[1],
            before[0],
            before[1],
        )
        pool.disconnect(
            inuse_connections=True
        )  # a blocked BLMOVE there ends with an error and is retried here
        return True

    def _on_shard(self, client: redis.Redis, what: str, action: Any) -> Any:
        """``action(client)`` on a shard's client, or None when that Redis is out of reach (logged)."""
        try:
            return action(client)
        except _REDIS_ERRORS as exc:
            self.logger.warning("A BROKER_SHARDS Redis is out of reach (%s): %s", what, exc)
            return None

    def register_queues(self) -> None:
        """Every queue in ``client``'s registry (the dashboard lists them from it); a shard's queues in the
        shard's too (its recovery walks them)."""
        if not self.queues:
            return
        self.client.sadd(self.key("__queues__"), *self.queues)
        for queue in self.queues:
            if self.client_for(queue) is not self.client:
                self._on_shard(
                    self.client_for(queue), "registry", lambda c, q=queue: c.sadd(self.key("__queues__"), q)
                )

    def report_worker(self, info: dict[str, Any]) -> None:
        """``<ns>:__workers__`` field ``broker_id``: this process's JSON (readers drop silent entries)."""
        self.client.hset(self.key("__workers__"), self.broker_id, json.dumps(info, separators=(",", ":")))

    def withdraw_worker(self) -> None:
        """Remove this process's report (a graceful stop); its heartbeat stays, so whatever it could not give
        back is still recovered by the others."""
        self.client.hdel(self.key("__workers__"), self.broker_id)

    def paused_queues(self) -> frozenset[str]:
        """The queues paused fleet-wide (brokers.pausing)."""
        return self.pauses.current()

    def held_messages(self) -> list[MessageProxy]:
        return []  # the reconciler reads what workers hold from Redis itself

    def backlog(self, queue_name: str) -> int:
        """Messages of ``queue_name`` anywhere: queued, delayed or held by a worker (payloads stay until the ack)."""
        pipe = self.client_for(queue_name).pipeline(transaction=False)
        pipe.hlen(self.key(f"{queue_name}.msgs"))
        pipe.hlen(self.key(f"{queue_name}.DQ.msgs"))
        return int(sum(pipe.execute()))

    def waiting_count(self, queue_name: str) -> int:
        """Messages a purge of ``queue_name`` would delete: waiting in it or in its delay queue."""
        pipe = self.client_for(queue_name).pipeline(transaction=False)
        pipe.llen(self.key(queue_name))
        pipe.llen(self.key(f"{queue_name}.DQ"))
        return int(sum(pipe.execute()))

    def held_delayed_count(self, queue_name: str) -> int:
        """Delayed messages of ``queue_name`` (retries, deferrals) that workers hold in memory until they are due: a
        purge cannot reach them; when due they go to the queue (where a purge of a paused queue takes them)."""
        pipe = self.client_for(queue_name).pipeline(transaction=False)
        pipe.hlen(self.key(f"{queue_name}.DQ.msgs"))
        pipe.llen(self.key(f"{queue_name}.DQ"))
        delayed, waiting = pipe.execute()
        return max(0, int(delayed) - int(waiting))

    def purge(self, queue_name: str) -> list[dict[str, Any]]:
        """Delete, atomically, what waits in ``queue_name`` and its delay queue (not what workers hold);
        returns the deleted messages, decoded (their records must be ended by the caller)."""
        bodies = self.reliable_scripts["purge"](
            args=[self.namespace, queue_name], client=self.client_for(queue_name)
        )
        encoder = dramatiq.get_encoder()
        out = []
        for body in bodies:
            try:
                data = encoder.decode(body)
            except Exception:  # noqa: BLE001 - an undecodable body is gone with the rest
                continue
            if isinstance(data, dict):
                out.append(data)
        return out

    def set_paused(self, queue_name: str, paused: bool) -> bool:
        """Pause or resume ``queue_name`` for the whole fleet; False if it already was."""
        return self.pauses.set(queue_name, paused)

    def stop_deliveries(self) -> None:
        return None  # consumers fetch only what a thread will take

    def drain_dead_lettered(self, queues: Iterable[str] | None = None) -> int:
        return 0  # the consumer dead-letters crash loops itself, at fetch

    def master_identity(self) -> str:
        """The run ids of the Redis servers this broker writes queues to (BROKER_URL's, then the shards'): they
        change when another node became a master (a failover) or a server restarted."""
        ids = [str(self.client.info("server").get("run_id", ""))]
        for client in self.queue_clients()[1:]:
            info = self._on_shard(client, "run id", lambda c: c.info("server"))
            ids.append("out of reach" if info is None else str(info.get("run_id", "")))
        return ",".join(ids)

    def reconcile_held(self) -> int:
        """After a master change: what this worker's acks sets say it holds, and no consumer of it holds, goes
        back to its queue (a settle that did not reach the new master would keep it held by a live worker
        forever); returns how many.  An id fetched during the check may run twice: at least once, as always."""
        recorded: dict[str, set[Any]] = {}
        for queue in self.queues:
            sets = ((queue, "acks"), (queue, "started"), (f"{queue}.DQ", "acks"))

            def read(client: redis.Redis, sets: tuple[tuple[str, str], ...] = sets) -> list[Any]:
                pipe = client.pipeline(transaction=False)
                for name, kind in sets:
                    pipe.smembers(self.key(f"__{kind}__.{self.broker_id}.{name}"))
                return pipe.execute()

            client = self.client_for(queue)
            found = read(client) if client is self.client else self._on_shard(client, "held messages", read)
            for (name, _), members in zip(sets, found or [set()] * len(sets), strict=True):
                recorded.setdefault(name, set()).update(members)
        held: dict[str, set[str]] = {}
        for consumer in list(self.live_consumers):
            held.setdefault(consumer.queue_name, set()).update(consumer.held_ids())
        requeued = 0
        for name, members in recorded.items():
            stray = {m.decode() if isinstance(m, bytes) else str(m) for m in members} - held.get(name, set())
            if stray:
                self.do_requeue(name, *stray)
                requeued += len(stray)
        return requeued

    def recover_dead_workers(self) -> tuple[int, int]:
        """Requeue what dead workers held, and ids left on landing lists; returns (dead workers, messages
        requeued)."""

        def recover(client: redis.Redis) -> tuple[int, int]:
            found, moved = self.reliable_scripts["recover"](
                args=[self.namespace, current_millis(), self.heartbeat_timeout], client=client
            )
            return int(found), int(moved)

        dead, requeued = recover(self.client)
        for shard in self.shard_nodes.values():
            if time.monotonic() < shard.judge_after:
                continue  # back from an outage: the live workers report there first
            found, moved = self._on_shard(shard.client, "recovery", recover) or (0, 0)
            dead, requeued = max(dead, found), requeued + moved
        return dead, requeued + self.unland_stale()

    def tracked_messages(self, queues: Iterable[str]) -> Iterator[dict[str, Any]]:
        """Every message stored for ``queues`` and their delay queues, decoded.

        A message's payload stays in ``<queue>.msgs`` from enqueue until its ack, whether it is
        queued, delayed or held by a worker (alive or dead), so this sees all of them.  The scan is
        not a snapshot: a message moving between a queue and its delay queue meanwhile can be missed
        once, which is why the reconciler repairs only what two rounds found missing.
        """
        encoder = dramatiq.get_encoder()
        for queue in queues:
            for name in (f"{queue}.DQ", queue):
                for _, body in self.client_for(queue).hscan_iter(self.key(f"{name}.msgs"), count=1000):
                    try:
                        data = encoder.decode(body)
                    except Exception:  # noqa: BLE001 - undecodable bodies are the consumer's to reject
                        continue
                    if isinstance(data, dict):
                        yield data

    def take_lease(self, name: str, holder: str, ttl_ms: int) -> bool:
        return bool(
            self.reliable_scripts["lease"](keys=[self.key(f"__lease__.{name}")], args=[holder, ttl_ms])
        )

    def mark_started(self, message: MessageProxy) -> None:
        redis_id = message.options.get("redis_message_id")
        if (
            redis_id
            and not message.queue_name.endswith(".DQ")
            and self.batches_for(message.queue_name).submit(
                ("mark", message.queue_name, redis_id, "", "", b"")
            )
        ):
            self.started_ids.add(redis_id)

    def settle(self, queue_name: str, redis_id: str, successor: Successor | None) -> bool:
        """Ack ``redis_id`` (and enqueue ``successor`` atomically); False if this worker no longer held it."""
        return bool(self.batches_for(queue_name).submit(self._settle_op(queue_name, redis_id, successor)))

    def settle_later(self, queue_name: str, redis_id: str, successor: Successor | None) -> None:
        """``settle`` without waiting: the group committer writes it, retrying through Redis outages."""
        self.batches_for(queue_name).submit_detached(self._settle_op(queue_name, redis_id, successor))

    def batches_for(self, queue_name: str) -> GroupCommit[_BatchOp, int]:
        """The group committer of the Redis holding ``queue_name``."""
        shard = self.shard_nodes.get(id(self.client_for(queue_name))) if self.shards else None
        return self.batches if shard is None else shard.batches

    def _settle_op(self, queue_name: str, redis_id: str, successor: Successor | None) -> _BatchOp:
        kind = "settle"
        if redis_id in self.started_ids:  # marked: its id moved from the acks set to the started set
            self.started_ids.discard(redis_id)
            kind = "settle-started"
        if successor is None:
            return (kind, queue_name, redis_id, "", "", b"")
        prepared = self.prepare_enqueue(successor.message, successor.delay_ms)
        return (
            kind,
            queue_name,
            redis_id,
            prepared.queue_name,
            prepared.options["redis_message_id"],
            prepared.encode(),
        )

    def flush_settles(self, timeout_s: float = 10.0) -> None:
        """Wait for detached settles to reach Redis (shutdown); a message whose settle never does is
        still in this worker's acks set and is redelivered once its heartbeat expires."""
        deadline = time.monotonic() + timeout_s
        if not all(
            [
                batches.flush(max(0.0, deadline - time.monotonic()))
                for batches in (self.batches, *(shard.batches for shard in self.shard_nodes.values()))
            ]
        ):
            self.logger.warning(
                "Settles not written within %.0f s (Redis unreachable?); those messages will be "
                "redelivered after the heartbeat timeout.",
                timeout_s,
            )

    def close(self) -> None:
        """Dramatiq's worker process calls this after ``Worker.stop``: write the detached settles first."""
        self.flush_settles()
        super().close()
        for client in self.queue_clients()[1:]:
            client.connection_pool.disconnect()

    def _run_batch(self, client: redis.Redis, ops: list[_BatchOp]) -> list[int]:
        """One round trip: lua/batch.lua when an operation enqueues a successor (it must be written only while
        the message is held) or the batch is large; else plain commands, two per settle and one per mark (a
        message at a time: no script call).  A successor goes to its message's queue or delay queue, so to the
        same Redis."""
        if len(ops) > PLAIN_BATCH_MAX or any(op[3] for op in ops):
            args: list[Any] = [self.namespace, self.broker_id, current_millis()]
            for op in ops:
                args.extend(op)
            if not self.wait_replicas:
                return self.reliable_scripts["batch"](args=args, client=client)
            return self._replicated(
                lambda pipe: self.reliable_scripts["batch"](args=args, client=pipe), "settles", client
            )
        pipe = client.pipeline(transaction=False)
        for kind, queue_name, redis_id, *_ in ops:
            acks, started = (
                self.key(f"__{name}__.{self.broker_id}.{queue_name}") for name in ("acks", "started")
            )
            if kind == "mark":
                pipe.smove(acks, started, redis_id)
            else:
                # The payload goes first: a death between the two leaves an id whose payload is gone, which
                # recovery drops; the other way round would leave a payload nothing points to.  A message that
                # recovery already handed on loses its payload too, so it does not run again: it just did.
                pipe.hdel(self.key(f"{queue_name}.msgs"), redis_id)
                pipe.srem(started if kind == "settle-started" else acks, redis_id)
        if self.wait_replicas:
            pipe.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
        replies = pipe.execute()
        if self.wait_replicas:
            self._check_replicas(int(replies.pop()), "settles")
        results, at = [], 0
        for kind, *_ in ops:
            at += 1 if kind == "mark" else 2
            results.append(int(replies[at - 1]))
        return results

    def _replicated(self, write: Any, what: str, client: redis.Redis | None = None) -> Any:
        """Run ``write(pipe)`` then WAIT on the same connection (of ``client``, default the broker's); returns
        what the write returned."""
        pipe = (client or self.client).pipeline(transaction=False)
        write(pipe)
        pipe.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
        result, acked = pipe.execute()
        self._check_replicas(int(acked), what)
        return result

    def _check_replicas(self, acked: int, what: str) -> None:
        if acked < self.wait_replicas:
            self.logger.warning(
                "%s reached %d of %d replica(s) within %d ms (REDIS_WAIT_REPLICAS): written on "
                "the master, at risk if it fails now.",
                what.capitalize(),
                acked,
                self.wait_replicas,
                self.wait_timeout_ms,
            )

    def do_enqueue(self, queue_name: str, redis_id: str, payload: bytes) -> Any:
        """Dramatiq's enqueue script, then WAIT on the same connection when REDIS_WAIT_REPLICAS is set."""
        if not self.wait_replicas:
            return self._dispatch("enqueue")(queue_name, redis_id, payload)
        args = [
            "enqueue",
            current_millis(),
            queue_name,
            self.broker_id,
            self.heartbeat_timeout,
            self.dead_message_ttl,
            0,
            self._max_unpack_size(),
            redis_id,
            payload,
        ]  # Dramatiq's layout
        return self._replicated(
            lambda pipe: self.scripts["dispatch"](args=args, keys=[self.namespace], client=pipe),
            "an enqueue",
            self.client_for(queue_name),
        )

    def _dispatch(self, command: str) -> Any:
        """Dramatiq's dispatch script (enqueue, requeue, nack, purge, qsize), run on the Redis of the queue."""
        if not self.shards:
            return super()._dispatch(command)
        dispatch, keys = self.scripts["dispatch"], [self.namespace]

        def do_dispatch(queue_name: str, *args: Any) -> Any:
            return dispatch(
                args=[
                    command,
                    current_millis(),
                    queue_name,
                    self.broker_id,
                    self.heartbeat_timeout,
                    self.dead_message_ttl,
                    0,
                    self._max_unpack_size(),
                    *args,
                ],
                keys=keys,
                client=self.client_for(queue_name),
            )

        return do_dispatch

    def prepare_enqueue(self, message: Message, delay_ms: int | None) -> Message:
        """The exact copy ``enqueue`` would store: new Redis id, and an eta when delayed."""
        options = {**message.options, "redis_message_id": str(uuid4())}
        options.pop("eta", None)
        queue_name = message.queue_name.removesuffix(".DQ")
        if delay_ms is not None:
            options["eta"] = current_millis() + delay_ms
            queue_name = f"{queue_name}.DQ"
        return dataclasses.replace(message, queue_name=queue_name, options=options)

    def give_back(self, queue_name: str, redis_ids: list[str]) -> None:
        """Return held ids to the queue (only those this worker still holds), plus any earlier orphans.

        If Redis is unreachable they are kept for the next consumer of the queue; should the
        process exit first, they are still in its acks set and recovery requeues them once its
        heartbeat expires.
        """
        with self.orphans_lock:
            ids = self.orphans.pop(queue_name, set()) | set(redis_ids)
        if not ids:
            return
        try:
            self.do_requeue(queue_name, *ids)
        except _REDIS_ERRORS as exc:
            with self.orphans_lock:
                self.orphans.setdefault(queue_name, set()).update(ids)
            self.logger.warning(
                "Could not give back %d held messages of %s (%s); retrying on the next fetch.",
                len(ids),
                queue_name,
                exc,
            )

    def fetch(self, queue_name: str, count: int, landed: str = "") -> list[Any]:
        """Up to ``count`` messages: the ``landed`` id a wait moved onto the queue's landing list (if no one put it
        back meanwhile), then from the head of the queue (lua/fetch.lua); flat: id, payload."""
        args = [self.namespace, queue_name, self.broker_id, landed, count, "1" if self.pop_many else "0"]
        try:
            return self.reliable_scripts["fetch"](args=args, client=self.client_for(queue_name))
        except redis.ResponseError as exc:
            if not self.pop_many or "wrong number of arguments" not in str(exc).lower():
                raise
            self.pop_many = (
                False  # Redis < 6.2: LPOP takes no count; the script rolled back, nothing was taken
            )
            self.logger.warning("Redis has no LPOP with a count (%s): fetches pop one id at a time.", exc)
            return self.fetch(queue_name, count, landed)

    def landing_key(self, queue_name: str) -> str:
        return self.key(f"__landing__.{queue_name}")

    def wait_for_message(self, queue_name: str, timeout_s: float) -> str | None:
        """Block until a message arrives in ``queue_name``: its id, moved onto the queue's landing list for this
        caller's next fetch; None when the time-out passed with nothing (or, without BLMOVE, after one poll).

        ``BLMOVE q landing LEFT RIGHT`` hands each pushed id to exactly one waiting consumer and wakes no other:
        one wake-up per message however many consumers wait.  The id is never only in flight: it sits on the
        landing list until the fetch takes it, and one left there (its consumer died or closed in between) goes
        back to the queue within two maintenance rounds (``unland_stale``), whoever runs them.  A server without
        BLMOVE (Redis < 6.2) gets polled every ``idle_poll_ms`` instead.
        """
        if self.can_block:
            try:
                moved = self.client_for(queue_name).blmove(
                    self.key(queue_name),
                    self.landing_key(queue_name),
                    timeout_s,  # type: ignore[arg-type]  # a float
                    "LEFT",
                    "RIGHT",
                )
                return moved.decode() if isinstance(moved, bytes) else moved
            except redis.ResponseError as exc:
                if "unknown command" not in str(exc).lower():
                    raise
                self.can_block = False
                self.logger.warning(
                    "Redis has no BLMOVE (%s): idle consumers poll every %d ms instead.",
                    exc,
                    self.idle_poll_ms,
                )
        time.sleep(self.idle_poll_ms / 1000)
        return None

    def unland(self, queue_name: str, ids: Iterable[str]) -> int:
        """Put ``ids`` back at the head of ``queue_name`` from its landing list (those still there); how many."""
        ids = list(ids)
        if not ids:
            return 0
        return int(
            self.reliable_scripts["unland"](
                args=[self.namespace, queue_name, *ids], client=self.client_for(queue_name)
            )
        )

    def unland_stale(self) -> int:
        """One maintenance round: ids found on the landing list of a queue this process consumes in the previous
        round too go back to their queue (a fetch takes a landed id within milliseconds); how many.  Every queue
        has consumers somewhere, and they look after its landing list."""
        back = 0
        for queue_name in sorted({consumer.queue_name for consumer in list(self.live_consumers)}):
            client = self.client_for(queue_name)
            if client is self.client:
                back += self._unland_stale_of(queue_name)
            else:
                back += (
                    self._on_shard(client, "landing list", lambda _, q=queue_name: self._unland_stale_of(q))
                    or 0
                )
        return back

    def _unland_stale_of(self, queue_name: str) -> int:
        now = {
            i.decode() if isinstance(i, bytes) else str(i)
            for i in self.client_for(queue_name).lrange(self.landing_key(queue_name), 0, -1)
        }
        stale = now & self.landed_seen.get(queue_name, set())
        back = self.unland(queue_name, stale)
        self.landed_seen[queue_name] = now - stale
        return back

    @property
    def longest_block_s(self) -> float:
        """The longest blocking wait the client's socket timeout allows (half of it)."""
        socket_timeout = self.client.connection_pool.connection_kwargs.get("socket_timeout")
        return socket_timeout / 2 if socket_timeout else 1.0


class ReliableRedisConsumer(_RedisConsumer):
    """Consumer whose fetch is decode-safe and whose ack enqueues a successor atomically."""

    broker: ReliableRedisBroker

    def __init__(self, broker: ReliableRedisBroker, queue_name: str, prefetch: int, timeout: int) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)
        self.logger = get_logger(__name__, type(self))
        self.fetched: list[tuple[str, bytes | None]] = []
        self.is_delay_queue = queue_name.endswith(".DQ")
        # Fetch in batches of at least a quarter of the prefetch (delay queues: whatever fits, as Dramatiq).
        self.refill_at = 1 if self.is_delay_queue else max(1, prefetch // 4)
        self.room = threading.Event()
        self.block_s = min(timeout / 1000, broker.longest_block_s)
        # Delay-queue messages handed to the consumer thread and not yet settled: message id -> Redis id.
        # Dramatiq's consumer thread drops its in-memory delay queue on a connection error; close()
        # gives these back so they do not stay held by this live worker.
        self.held_delayed: dict[str, str] = {}
        # Every message handed to a worker thread and not yet settled: message id -> Redis id (what the broker's
        # acks set should say this consumer holds, checked after a master change).
        self.handed: dict[str, str] = {}
        self.landed = ""  # the id a wait moved onto the landing list, for the next fetch to take
        self.trickle = (
            False  # that wait blocked first: its message likely came alone, so the fetch takes only it
        )
        self.idle = False  # the last look found nothing: wait before fetching again
        broker.live_consumers.add(self)

    def held_ids(self) -> set[str]:
        """The Redis ids this consumer holds: fetched and not handed out, or handed out and not settled."""
        return {redis_id for redis_id, _ in list(self.fetched)} | set(list(self.handed.values()))

    @property
    def outstanding_message_count(self) -> int:
        return len(self.queued_message_ids) + len(self.fetched)

    def _settle(self, message: MessageProxy, successor: Successor | None) -> None:
        self.broker.settle_later(self.queue_name, message.options["redis_message_id"], successor)
        self._forget(message)

    def _forget(self, message: MessageProxy) -> None:
        """The message left this consumer: free its prefetch slot, and wake a full consumer once there is room."""
        self.queued_message_ids.discard(message.message_id)
        self.handed.pop(message.message_id, None)
        if self.is_delay_queue:
            self.held_delayed.pop(message.message_id, None)
        if self.prefetch - self.outstanding_message_count >= self.refill_at:
            self.room.set()

    def ack(self, message: MessageProxy) -> None:
        self._settle(message, get_successor(message))

    def nack(self, message: MessageProxy) -> None:
        sink = self.broker.dead_letter_sink
        if sink is None:
            return self._dramatiq_nack(message)
        dead = dead_letter_of(message)
        successor = None
        try:
            sink.record(message, dead)
        except Exception:
            self.logger.warning(
                "Could not store dead letter of %s; it is kept for later.", message.message_id, exc_info=True
            )
            successor = sink.pending_successor(message, dead)
        self._settle(message, successor)

    def _dramatiq_nack(self, message: MessageProxy) -> None:
        try:
            self.broker.do_nack(self.queue_name, message.options["redis_message_id"])
        except _REDIS_ERRORS as exc:
            raise ConnectionClosed(exc) from None
        finally:
            self._forget(message)

    def requeue(self, messages: Iterable[MessageProxy]) -> None:
        """Give back messages that never ran (shutdown); a Redis error defers them, as in ``give_back``."""
        ids = []
        for message in messages:
            ids.append(message.options["redis_message_id"])
            self._forget(message)
        self.broker.give_back(self.queue_name, ids)

    def close(self) -> None:
        """Give back what was fetched but never handed to a thread, and delayed messages still held.

        Settles still waiting for the group committer are flushed once per process, by the broker's
        ``close``: a consumer restarting during an outage must not wait for them.
        """
        leftovers = [redis_id for redis_id, _ in self.fetched] + list(self.held_delayed.values())
        self.fetched, self.held_delayed = [], {}
        self.broker.live_consumers.discard(self)
        self.broker.give_back(self.queue_name, leftovers)
        if self.landed:
            try:
                self.broker.unland(self.queue_name, [self.landed])
            except _REDIS_ERRORS as exc:  # a maintenance round puts it back instead
                self.logger.warning(
                    "Could not put back landed message %s of %s: %s", self.landed, self.queue_name, exc
                )
            self.landed = ""

    def _reject_raw(self, redis_id: str, body: bytes | None, error: str) -> None:
        sink = self.broker.dead_letter_sink
        if sink is not None and body is not None:
            try:
                sink.record_raw(self.queue_name, body, "undecodable", error)
            except Exception:
                self.logger.warning(
                    "Could not store undecodable message %s; it goes back on the queue.",
                    redis_id,
                    exc_info=True,
                )
                self.broker.do_requeue(self.queue_name, redis_id)
                return
        self.broker.settle(self.queue_name, redis_id, None)

    def __next__(self) -> MessageProxy | None:
        try:
            while True:
                if not self.is_delay_queue and self.queue_name in self.broker.paused_queues():
                    # Paused by an operator: fetch nothing; what was fetched and not handed out goes back.
                    if self.fetched:
                        self.broker.give_back(self.queue_name, [redis_id for redis_id, _ in self.fetched])
                        self.fetched = []
                    time.sleep(PAUSE_READ_S / 2)
                    return None
                if self.fetched:
                    redis_id, body = self.fetched.pop(0)
                    proxy = self._decode(redis_id, body)
                    if proxy is None:
                        continue
                    self.misses = 0
                    self.queued_message_ids.add(proxy.message_id)
                    self.handed[proxy.message_id] = redis_id
                    if self.is_delay_queue:
                        self.held_delayed[proxy.message_id] = redis_id
                    return proxy
                room = self.prefetch - self.outstanding_message_count
                if room < self.refill_at:
                    # Enough work in hand: wake when settles make room, not after a growing backoff.
                    self.room.wait(self.timeout / 1000)
                    self.room.clear()
                    return None
                if self.broker.orphans:
                    self.broker.give_back(self.queue_name, [])
                if self.landed or not self.idle:
                    # After a wait that blocked, only the landed id: an LPOP would most likely find nothing.
                    want = 1 if self.trickle else room
                    fetched = self.broker.fetch(self.queue_name, want, self.landed)
                    # Fewer than asked, or a trickle: the next look is a wait, not another fetch (a wait
                    # returns at once when more came meanwhile, and the fetch after it takes a batch).
                    self.idle = self.trickle or len(fetched) < 2 * want
                    self.landed, self.trickle = "", False
                    if fetched:
                        self.fetched = [
                            (fetched[i].decode(), fetched[i + 1] or None) for i in range(0, len(fetched), 2)
                        ]
                        continue
                # Nothing in hand: wait in Redis (delay queues too), woken only by a message for this consumer.
                # Returning now and then lets the consumer thread notice a shutdown.
                waited = time.monotonic()
                landed = self.broker.wait_for_message(self.queue_name, self.block_s)
                if landed:
                    self.landed, self.idle = landed, False
                    self.trickle = time.monotonic() - waited >= TRICKLE_WAIT_S
                    continue
                self.idle = self.broker.can_block  # polled (no BLMOVE): the next call looks again
                return None
        except _REDIS_ERRORS as exc:
            raise ConnectionClosed(exc) from None

    def _decode(self, redis_id: str, body: bytes | None) -> MessageProxy | None:
        if body is None:
            # The payload was deleted under us (purge); nothing to process.
            self.broker.settle(self.queue_name, redis_id, None)
            return None
        try:
            message = Message.decode(body)
        except DecodeError as exc:
            self.logger.error("Undecodable message %s on %s: %s", redis_id, self.queue_name, exc.__cause__)
            self._reject_raw(redis_id, body, f"{type(exc.__cause__).__name__}: {exc.__cause__}")
            return None
        if message.options.get("redis_message_id") != redis_id:
            message = message.copy(options={"redis_message_id": redis_id})
        proxy = MessageProxy(message)
        crashes = crash_count(redis_id)
        if crashes >= self.broker.crash_loop_limit:
            self.logger.error(
                "Message %s killed its worker %d times; dead-lettering it as crash_loop.",
                message.message_id,
                crashes,
            )
            self._reject(
                proxy,
                Dead.of(
                    "crash_loop",
                    RuntimeError(f"worker process died {crashes} times while running this message"),
                ),
            )
            return None
        pending = message.options.get(PENDING_DEAD_LETTER)
        if pending and self.broker.dead_letter_sink is not None and not self.is_delay_queue:
            # Dead already; only its row was missing (database outage): store it, never run the actor again.
            self.logger.info("Storing the pending dead letter of message %s.", message.message_id)
            self._reject(proxy, Dead.from_option(pending))
            return None
        return proxy

    def _reject(self, proxy: MessageProxy, dead: Dead) -> None:
        """Dead-letter a message before any thread runs it (the settle goes through the usual path)."""
        kill(proxy, dead)
        self.queued_message_ids.add(proxy.message_id)
        self.nack(proxy)


def encode_raw_body(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(body).decode("ascii")
