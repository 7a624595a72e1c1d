"""The hard limit: run work that may not yield (C extensions, blocking calls) in a killable child.

``run_hard_limited(func, *args, timeout_s=..., memory_mb=...)`` runs
``func(*args)`` in a warm child process and returns its result, or raises

* :class:`~errors.HardTimeout` when the deadline passes (the child
  is SIGKILLed; a fresh one replaces it),
* :class:`~errors.MemoryLimitExceeded` when the child hits its
  address-space cap (``RLIMIT_AS``): a ``MemoryError`` inside it, or its death
  by signal while allocating,
* the child's own exception (re-created by type name and message) otherwise.

Children come from a ``forkserver`` (never ``fork`` from a threaded worker),
are reused across calls to keep process start-up off the per-call cost,
and are recycled after ``MAX_TASKS_PER_CHILD`` calls.  No orphans: each child
asks the kernel for SIGKILL when its parent (the fork server, which itself
exits with the worker) dies, and exits when its pipe to the worker closes.
The worker thread and process carry on with the next message.

The children parse hostile PDFs, images and OOXML, so they get no secret: the fork server is started with an
environment scrubbed down to ``CHILD_ENVIRONMENT`` (no Kommo token, API token, broker or database password,
OpenRouter key), and every child inherits that one.  They read no settings: what they need comes as arguments.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import multiprocessing
import os
import queue
import re
import resource
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from typing import Any

from worker_service.errors import HardTimeout, MemoryLimitExceeded, PermanentError, TransientError
from worker_service.runtime.supervision import die_with_parent

logger = logging.getLogger(__name__)
MAX_TASKS_PER_CHILD = 200
# Imported once by the fork server, so a new child starts with them (and with the extraction code) loaded.
PRELOAD = ["pypdfium2", "docx2txt", "charset_normalizer", "worker_service.assets.extraction"]
POLL_SLICE_S = 0.25
#: the environment variables an extraction child keeps (locale, paths, Python, Tesseract and thread-count knobs,
#: CA bundles); everything else, every secret among it, stays in the worker
CHILD_ENVIRONMENT = re.compile(
    r"(PATH|HOME|USER|LOGNAME|SHELL|LANG|LANGUAGE|LC_\w+|TZ|TMPDIR|TEMP|TMP|PYTHON\w*|VIRTUAL_ENV|LD_LIBRARY_PATH"
    r"|TESSDATA_PREFIX|OMP_\w+|OPENBLAS_\w+|MKL_\w+|MALLOC_\w+|PROMETHEUS_MULTIPROC_DIR|SSL_CERT_FILE|SSL_CERT_DIR"
    r"|REQUESTS_CA_BUNDLE|COVERAGE_\w+)"
)
_environment_lock = threading.Lock()


@contextmanager
def scrubbed_environment() -> Iterator[None]:
    """The process environment cut down to CHILD_ENVIRONMENT while the block runs (a process started inside
    it, the fork server, inherits only that), then restored.  Other threads may see the cut-down environment
    meanwhile: it lacks nothing but secrets and what no running code re-reads."""
    with _environment_lock:
        saved = dict(os.environ)
        for name in saved:
            if not CHILD_ENVIRONMENT.fullmatch(name):
                del os.environ[name]
        try:
            yield
        finally:
            os.environ.update(saved)


class RemoteError(Exception):
    """An exception from the child whose type could not be re-created here."""


def _child_main(conn: Connection, memory_mb: int, parent_pid: int) -> None:
    die_with_parent(signal.SIGKILL, os.getppid())  # elsewhere than Linux, the pipe's EOF ends an idle child
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            os._exit(0)
        if task is None:
            os._exit(0)
        target, args, kwargs = task
        try:
            module_name, func_name = target.split(":")
            func = getattr(importlib.import_module(module_name), func_name)
            reply = ("ok", func(*args, **kwargs), _peak_rss_mb())
        except MemoryError:
            reply = ("memory", "MemoryError", _peak_rss_mb())
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
            attrs = {k: v for k, v in vars(exc).items() if isinstance(v, str | int | float | type(None))}
            reply = (
                "error",
                (
                    type(exc).__module__,
                    type(exc).__qualname__,
                    str(exc),
                    attrs,
                    traceback.format_exc()[-8000:],
                ),
                _peak_rss_mb(),
            )
        try:
            conn.send(reply)
        except MemoryError:
            conn.send(("memory", "MemoryError while sending the result", _peak_rss_mb()))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Child:
    def __init__(self, ctx: Any, memory_mb: int) -> None:
        self.conn, child_conn = ctx.Pipe()
        self.process = ctx.Process(target=_child_main, args=(child_conn, memory_mb, os.getpid()), daemon=True)
        with scrubbed_environment():  # a fork server (re)started here gets no secret, nor any child after it
            self.process.start()
        child_conn.close()
        self.memory_mb = memory_mb
        self.tasks = 0

    def kill(self) -> None:
        try:
            self.process.kill()
        except Exception:  # noqa: BLE001
            pass
        self.process.join(5)
        self.conn.close()

    def close(self) -> None:
        try:
            self.conn.send(None)
        except Exception:  # noqa: BLE001
            pass
        self.process.join(1)
        if self.process.is_alive():
            self.kill()


class HardLimitPool:
    """Warm, killable children.  One per concurrent caller, created on demand."""

    def __init__(self) -> None:
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload([m for m in PRELOAD if importlib.util.find_spec(m)] + [__name__])
        self._idle: queue.LifoQueue[_Child] = queue.LifoQueue()
        self.peak_child_rss_mb = 0.0

    def _take(self, memory_mb: int) -> _Child:
        while True:
            try:
                child = self._idle.get_nowait()
            except queue.Empty:
                return _Child(self._ctx, memory_mb)
            if child.process.is_alive() and child.memory_mb == memory_mb:
                return child
            child.kill()

    def warm(self, children: int, memory_mb: int) -> None:
        """Start the fork server and ``children`` idle children now, off the first messages' path."""
        for _ in range(max(0, children - self._idle.qsize())):
            self._idle.put(_Child(self._ctx, memory_mb))

    def _give_back(self, child: _Child) -> None:
        if child.tasks >= MAX_TASKS_PER_CHILD:
            child.close()
        else:
            self._idle.put(child)

    def run(
        self, func: Callable[..., Any] | str, *args: Any, timeout_s: float, memory_mb: int, **kwargs: Any
    ) -> Any:
        target = func if isinstance(func, str) else f"{func.__module__}:{func.__qualname__}"
        child = self._take(memory_mb)
        started = time.monotonic()
        try:
            child.conn.send((target, args, kwargs))
            if not _wait_for_answer(child.conn, started + timeout_s):
                child.kill()
                _count_kill("timeout")
                raise HardTimeout(f"{target} did not finish within the hard limit of {timeout_s:g} s; killed")
            try:
                status, payload, peak = child.conn.recv()
            except (EOFError, OSError):
                code = child.process.exitcode if child.process.join(2) is None else child.process.exitcode
                child.kill()
                _count_kill("memory")
                raise MemoryLimitExceeded(
                    f"{target} died (exit {code}) under its {memory_mb} MB memory cap"
                ) from None
        except (BrokenPipeError, ConnectionResetError):
            child.kill()
            raise MemoryLimitExceeded(f"{target}: child process died") from None
        except BaseException:
            # Interrupted while the child works (the soft time limit, a shutdown): nobody will read its
            # answer, so it must not live on with the work, nor go back to the pool busy.
            child.kill()
            raise
        child.tasks += 1
        self.peak_child_rss_mb = max(self.peak_child_rss_mb, peak)
        logger.debug("%s ran %.3f s in a child (peak %.0f MB)", target, time.monotonic() - started, peak)
        if status == "memory":
            child.kill()
            _count_kill("memory")
            raise MemoryLimitExceeded(f"{target} exceeded its {memory_mb} MB memory cap")
        self._give_back(child)
        if status == "ok":
            return payload
        raise _rebuild(*payload)

    def shutdown(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


def _wait_for_answer(conn: Connection, deadline: float) -> bool:
    """Wait for the child's answer until ``deadline`` (monotonic), in short slices: an exception raised
    into this thread (Dramatiq's soft time limit) lands within a slice, not at the hard deadline."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return conn.poll(0)
        if conn.poll(min(left, POLL_SLICE_S)):
            return True


def _count_kill(reason: str) -> None:
    from worker_service.observability.metrics import KILLS

    KILLS.labels(reason).inc()


def _rebuild(
    module: str, qualname: str, message: str, attrs: dict[str, Any], remote_tb: str
) -> BaseException:
    exc: BaseException
    try:
        cls = getattr(importlib.import_module(module), qualname)
        if issubclass(cls, PermanentError | TransientError):
            exc = cls.__new__(cls)
            Exception.__init__(exc, message)
            exc.__dict__.update(attrs)
        else:
            exc = cls(message)
            exc.__dict__.update(attrs)
    except Exception:  # noqa: BLE001
        exc = RemoteError(f"{qualname}: {message}")
    exc.remote_traceback = remote_tb  # type: ignore[attr-defined]
    return exc


# One pool per process (re-created after a fork); the children belong to the process that made them.
_pool: HardLimitPool | None = None
_pool_pid = -1
_pool_lock = threading.Lock()


def get_pool() -> HardLimitPool:
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():
            _pool, _pool_pid = HardLimitPool(), os.getpid()
        return _pool


def run_hard_limited(
    func: Callable[..., Any] | str, *args: Any, timeout_s: float, memory_mb: int, **kwargs: Any
) -> Any:
    """Run ``func(*args, **kwargs)`` in a warm child under a hard deadline and a memory cap."""
    return get_pool().run(func, *args, timeout_s=timeout_s, memory_mb=memory_mb, **kwargs)
