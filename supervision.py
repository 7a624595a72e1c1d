"""Processes that die with their parent, however the parent dies.

Linux keeps no link between a process and its children's lifetimes: a
worker process whose parent was SIGKILLed is reparented to PID 1 and keeps
consuming.  :func:`die_with_parent` asks the kernel (``PR_SET_PDEATHSIG``)
to signal this process when the parent that forked it dies, and closes the
race where the parent died before the request.  Dramatiq's worker processes
ask for SIGTERM (a graceful stop: no new messages at once, in-flight ones
finish within the shutdown grace); the hard-limit children ask for SIGKILL.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal

logger = logging.getLogger(__name__)
_PR_SET_PDEATHSIG = 1


def die_with_parent(signum: int = signal.SIGTERM, parent_pid: int | None = None) -> bool:
    """Have ``signum`` sent to this process when its parent dies; True if the kernel took the request.

    ``parent_pid``: the parent expected (default: the multiprocessing parent, else the current one).
    """
    if parent_pid is None:
        parent = multiprocessing.parent_process()
        parent_pid = parent.pid if parent is not None and parent.pid else os.getppid()
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0) != 0:
            return False
    except OSError:  # not Linux (no libc.so.6): nothing to ask for
        return False
    if os.getppid() != parent_pid:  # it died before the request: nobody will send the signal now
        logger.warning("Parent %d is gone; stopping.", parent_pid)
        os.kill(os.getpid(), signum)
    return True
