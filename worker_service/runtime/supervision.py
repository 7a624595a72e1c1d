"""Processes that die with their parent, however the parent dies; and the supervisor of the worker groups.

Linux keeps no link between a process and its children's lifetimes: a
worker process whose parent was SIGKILLed is reparented to PID 1 and keeps
consuming.  :func:`die_with_parent` asks the kernel (``PR_SET_PDEATHSIG``)
to signal this process when the parent that forked it dies, and closes the
race where the parent died before the request.  Dramatiq's worker processes
ask for SIGTERM (a graceful stop: no new messages at once, in-flight ones
finish within the shutdown grace); the hard-limit children ask for SIGKILL.

:func:`supervise` runs several commands (``worker run`` of every worker group) as one service: signals
are passed on, and when one child ends by itself the others are stopped, as Dramatiq's own main process
does with its worker processes.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from types import FrameType

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


def supervise(commands: Mapping[str, tuple[list[str], dict[str, str]]], *, poll_s: float = 0.2) -> int:
    """Run ``name -> (argv, env)`` as children until they all end; return the exit code of the service.

    Each child has a process group of its own, so that a terminal's Ctrl-C (sent to the whole foreground
    group) reaches only this process, which passes it on once as SIGTERM: a Dramatiq main process takes
    a second SIGTERM as "kill now".  SIGTERM/SIGINT stop every child (again: kill now), SIGHUP reloads
    them.  A child that ends while nobody asked it to stops the others, and its exit code becomes this
    process's (the service is down: its supervisor, systemd or Kubernetes, decides about a restart).
    Every child asks the kernel for SIGTERM when this process dies, even by SIGKILL.
    """
    parent = os.getpid()
    children: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False
    retcode = 0

    def forward(signum: int) -> None:
        for child in children.values():
            if child.poll() is None:
                try:
                    os.kill(child.pid, signum)
                except ProcessLookupError:
                    pass

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if signum == signal.SIGHUP:
            logger.info("Reloading %s.", ", ".join(children))
            forward(signal.SIGHUP)
            return
        stopping = True
        logger.info("Stopping %s.", ", ".join(children))
        forward(signal.SIGTERM)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        for name, (argv, env) in commands.items():
            if stopping:
                break
            children[name] = subprocess.Popen(
                argv, env=env, process_group=0, preexec_fn=lambda: die_with_parent(signal.SIGTERM, parent)
            )
            logger.info(
                "Started %s (pid %d).",
                name,
                children[name].pid,
                extra={"group": name, "pid": children[name].pid},
            )
        running = dict(children)
        while running:
            for name, child in list(running.items()):
                code = child.poll()
                if code is None:
                    continue
                del running[name]
                if not stopping:
                    logger.critical(
                        "%s exited by itself (code %s); stopping the others.",
                        name,
                        code,
                        extra={"group": name, "exit_code": code},
                    )
                    stopping = True
                    retcode = code or 1
                    forward(signal.SIGTERM)
                elif code:
                    retcode = retcode or (code if code > 0 else 1)
            time.sleep(poll_s)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        forward(signal.SIGTERM)  # only if this process itself is being torn down by an exception
    return retcode
