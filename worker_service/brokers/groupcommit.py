"""Group commit: operations submitted by many threads share one broker round trip.

Worker threads mark a message started before its actor runs and settle it
afterwards; each was one Redis round trip per message, the largest cost of
a short message.  Here threads hand their operation to one committer thread
per process; while it runs a batch, the operations that arrive meanwhile
queue up and go together in the next one.

Two ways to submit:

* ``submit`` waits until the operation is in Redis (or raises that batch's
  error).  The crash-loop mark uses it: the actor must not run before a
  death would count against its message.
* ``submit_detached`` returns at once; the committer retries the operation
  through transient errors until it is written.  Settles use it: a worker
  that dies first leaves the message in its acks set, so it is redelivered,
  exactly as after a death just before a synchronous ack (at-least-once,
  nothing lost), and the thread's next mark carries the settle in the same
  round trip.  ``flush`` waits for them at shutdown.

The committer is a thread of its own, not one of the callers taking turns:
Dramatiq's time limit raises an exception *inside* a worker thread at any
point, and a caller that dies that way while it holds the turn would stall
every other thread of the process.  A caller that dies while waiting just
leaves a result nobody reads.
"""

from __future__ import annotations

import copy
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Op = TypeVar("Op")
Result = TypeVar("Result")


class _Ticket(Generic[Op, Result]):
    __slots__ = ("done", "error", "op", "result")

    def __init__(self, op: Op, detached: bool = False) -> None:
        self.op = op
        self.result: Result | None = None
        self.error: BaseException | None = None
        # Held from birth; the committer releases it once the operation's batch has run.  Nobody waits
        # on a detached operation, so it gets none (one lock less per settle).
        self.done: threading.Lock | None = None
        if not detached:
            self.done = threading.Lock()
            self.done.acquire()

    def outcome(self) -> Result:
        if self.error is not None:
            # A copy per caller: one exception object raised in several threads would share a traceback.
            raise copy.copy(self.error)
        return self.result  # type: ignore[return-value]


class GroupCommit(Generic[Op, Result]):
    """Runs ``execute`` on batches of the operations that threads ``submit``.

    Parameters:
      execute(Callable[[list[Op]], Sequence[Result]]): runs one batch and returns one result per
        operation, in order; when it raises, every caller of that batch gets the exception.
      max_batch(int): the most operations one call carries.
      name(str): the committer thread's name.
      transient(tuple[type[BaseException], ...]): errors after which detached operations are
        retried (with backoff) instead of dropped.
    """

    def __init__(
        self,
        execute: Callable[[list[Op]], Sequence[Result]],
        *,
        max_batch: int = 256,
        name: str = "group-commit",
        transient: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.execute = execute
        self.max_batch = max_batch
        self.name = name
        self.transient = transient
        self.logger = logging.getLogger(__name__)
        self._reset()
        # The broker is built before Dramatiq forks its worker processes: each child starts afresh.
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        lock = threading.Lock()
        self.wakeup = threading.Condition(lock)
        self.drained = threading.Condition(lock)
        self.pending: list[_Ticket[Op, Result]] = []
        self.running = 0
        self.committer: threading.Thread | None = None

    def _enqueue(self, ticket: _Ticket[Op, Result]) -> None:
        with self.wakeup:
            if self.committer is None:
                self.committer = threading.Thread(target=self._commit_forever, name=self.name, daemon=True)
                self.committer.start()
            self.pending.append(ticket)
            if len(self.pending) == 1:
                self.wakeup.notify()

    def submit(self, op: Op) -> Result:
        """Run ``op`` in the next batch and return its result (or raise that batch's error)."""
        ticket: _Ticket[Op, Result] = _Ticket(op)
        self._enqueue(ticket)
        assert ticket.done is not None  # a waited ticket always has one
        ticket.done.acquire()
        return ticket.outcome()

    def submit_detached(self, op: Op) -> None:
        """Run ``op`` in the next batch without waiting; retried after ``transient`` errors until it runs."""
        self._enqueue(_Ticket(op, detached=True))

    def flush(self, timeout: float) -> bool:
        """Wait until every submitted operation has run; False if some had not after ``timeout`` seconds."""
        with self.drained:
            return self.drained.wait_for(lambda: not self.pending and not self.running, timeout)

    def _commit_forever(self) -> None:
        backoff = 0.0
        while True:
            with self.wakeup:
                while not self.pending:
                    self.wakeup.wait()
                batch = self.pending[: self.max_batch]
                del self.pending[: self.max_batch]
                self.running = len(batch)
            failure: BaseException | None = None
            try:
                results = self.execute([ticket.op for ticket in batch])
                for ticket, result in zip(batch, results, strict=True):
                    ticket.result = result
            except BaseException as exc:  # noqa: BLE001 - handed to every caller of the batch
                failure = exc
            detached = [t for t in batch if t.done is None] if failure is not None else []
            retry = detached if isinstance(failure, self.transient) else []
            for ticket in batch:
                if ticket.done is not None:  # a detached one has no waiter; it may come round again
                    if failure is not None:
                        ticket.error = failure
                    ticket.done.release()
            if detached:
                if retry:
                    self.logger.warning("%d detached operations failed (%s); retrying.", len(retry), failure)
                else:
                    self.logger.error("%d detached operations failed for good: %r", len(detached), failure)
            with self.wakeup:
                self.running = 0
                self.pending[:0] = retry
                if not self.pending:
                    self.drained.notify_all()
            if retry:
                # Back off so an outage is not hammered; the first retry is quick (a blip).
                backoff = min(max(backoff * 2, 0.1), 5.0)
                time.sleep(backoff)
            else:
                backoff = 0.0
