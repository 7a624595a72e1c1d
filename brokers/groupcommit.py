"""Group commit: operations submitted by many threads share one broker round trip.

Worker threads mark a message started before its actor runs and settle it
afterwards; each was one Redis round trip per message, the largest cost of
a short message.  With group commit a thread that finds no batch in flight
runs one itself (the leader), taking everything pending; threads arriving
meanwhile wait and are served together by the next batch, which the first
of them runs.  Every caller still returns only after its own operation is
in Redis, so no delivery guarantee changes; a lone caller pays no hand-off
to another thread.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Op = TypeVar("Op")
Result = TypeVar("Result")


class _Ticket(Generic[Op, Result]):
    __slots__ = ("done", "error", "lead", "op", "result")

    def __init__(self, op: Op) -> None:
        self.op = op
        self.result: Result | None = None
        self.error: BaseException | None = None
        self.lead = False
        # Held from birth; released once: when served, or when handed the lead.
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
    """

    def __init__(self, execute: Callable[[list[Op]], Sequence[Result]], *, max_batch: int = 256) -> None:
        self.execute = execute
        self.max_batch = max_batch
        self.mutex = threading.Lock()
        self.pending: list[_Ticket[Op, Result]] = []
        # Invariant: no batch in flight implies nothing pending.
        self.in_flight = False

    def submit(self, op: Op) -> Result:
        """Run ``op`` in the next batch and return its result (or raise that batch's error)."""
        ticket: _Ticket[Op, Result] = _Ticket(op)
        with self.mutex:
            self.pending.append(ticket)
            lead = not self.in_flight
            self.in_flight = True
        if not lead:
            ticket.done.acquire()
            if not ticket.lead:
                return ticket.outcome()
        self._run_batch()
        return ticket.outcome()

    def _run_batch(self) -> None:
        """Run the pending batch (the caller's ticket is first in it), then pass the lead on."""
        with self.mutex:
            batch = self.pending[:self.max_batch]
            del self.pending[:self.max_batch]
        try:
            results = self.execute([ticket.op for ticket in batch])
            for ticket, result in zip(batch, results, strict=True):
                ticket.result = result
        except BaseException as exc:  # noqa: BLE001 - handed to every caller of the batch
            for ticket in batch:
                ticket.error = exc
        finally:
            with self.mutex:
                successor = self.pending[0] if self.pending else None
                if successor is None:
                    self.in_flight = False
                else:
                    successor.lead = True
            for ticket in batch[1:]:
                ticket.done.release()
            if successor is not None:
                successor.done.release()
