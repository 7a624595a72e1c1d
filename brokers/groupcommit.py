"""Group commit: operations submitted by many threads share one broker round trip.

Worker threads mark a message started before its actor runs and settle it
afterwards; each was one Redis round trip per message, the largest cost of
a short message.  Here threads hand their operation to one committer thread
per process and wait; while it runs a batch, the operations that arrive
meanwhile queue up and go together in the next one.  Every caller still
returns only after its own operation is in Redis (or with that batch's
error), so no delivery guarantee changes.

The committer is a thread of its own, not one of the callers taking turns:
Dramatiq's time limit raises an exception *inside* a worker thread at any
point, and a caller that dies that way while it holds the turn would stall
every other thread of the process.  A caller that dies while waiting just
leaves a result nobody reads.
"""

from __future__ import annotations

import copy
import os
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Op = TypeVar("Op")
Result = TypeVar("Result")


class _Ticket(Generic[Op, Result]):
    __slots__ = ("done", "error", "op", "result")

    def __init__(self, op: Op) -> None:
        self.op = op
        self.result: Result | None = None
        self.error: BaseException | None = None
        # Held from birth; the committer releases it once the operation's batch has run.
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
    """

    def __init__(self, execute: Callable[[list[Op]], Sequence[Result]], *, max_batch: int = 256,
                 name: str = "group-commit") -> None:
        self.execute = execute
        self.max_batch = max_batch
        self.name = name
        self._reset()
        # The broker is built before Dramatiq forks its worker processes: each child starts afresh.
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self.wakeup = threading.Condition(threading.Lock())
        self.pending: list[_Ticket[Op, Result]] = []
        self.committer: threading.Thread | None = None

    def submit(self, op: Op) -> Result:
        """Run ``op`` in the next batch and return its result (or raise that batch's error)."""
        ticket: _Ticket[Op, Result] = _Ticket(op)
        with self.wakeup:
            if self.committer is None:
                self.committer = threading.Thread(target=self._commit_forever, name=self.name, daemon=True)
                self.committer.start()
            self.pending.append(ticket)
            if len(self.pending) == 1:
                self.wakeup.notify()
        ticket.done.acquire()
        return ticket.outcome()

    def _commit_forever(self) -> None:
        while True:
            with self.wakeup:
                while not self.pending:
                    self.wakeup.wait()
                batch = self.pending[:self.max_batch]
                del self.pending[:self.max_batch]
            try:
                results = self.execute([ticket.op for ticket in batch])
                for ticket, result in zip(batch, results, strict=True):
                    ticket.result = result
            except BaseException as exc:  # noqa: BLE001 - handed to every caller of the batch
                for ticket in batch:
                    ticket.error = exc
            for ticket in batch:
                ticket.done.release()
