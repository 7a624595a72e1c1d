"""Worker groups: each queue is consumed by its own Dramatiq main process, sized for its kind of work.

One pool of threads for every queue let sixteen threads waiting seconds on the LLM hold up every asset
extraction behind them, and capped LLM calls in flight at the pool size whatever OPENROUTER_RPS allowed.
A group is the unit that runs, scales and is probed on its own:

* ``assets``: CPU-bound; one thread per usable core, each with one hard-limited extraction child.
* ``knowledge``: waits seconds per OpenRouter call; many threads (calls in flight = rate x latency).
* ``crm``: waits 0.1-1 s per Kommo call; a few more threads than Kommo's 7 req/s x latency.

``worker run`` runs every group, ``worker run --group NAME`` (or ``WORKER_GROUP``) one of them, as a
Kubernetes deployment or compose service does.  Sizes come from the ``*_PROCESSES`` / ``*_THREADS``
settings; nothing else sets them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from settings import Settings

#: group name -> the queues its workers consume (every actor's queue is in exactly one group)
GROUP_QUEUES: dict[str, tuple[str, ...]] = {
    "assets": ("assets",),
    "knowledge": ("knowledge",),
    "crm": ("crm",),
}


@dataclass(frozen=True)
class WorkerGroup:
    """One Dramatiq main process: ``processes`` worker processes of ``threads`` threads on ``queues``.

    ``index`` orders the groups; ``worker run`` of every group on one host serves group i's probes on
    METRICS_PORT + i, so that no two groups bind the same port.
    """

    name: str
    index: int
    queues: tuple[str, ...]
    processes: int
    threads: int


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def worker_groups(settings: Settings) -> list[WorkerGroup]:
    sizes = {
        "assets": (settings.assets_processes, settings.assets_threads or usable_cpus()),
        "knowledge": (settings.knowledge_processes, settings.knowledge_threads),
        "crm": (settings.crm_processes, settings.crm_threads),
    }
    return [
        WorkerGroup(name, index, queues, *sizes[name])
        for index, (name, queues) in enumerate(GROUP_QUEUES.items())
    ]


def group_named(settings: Settings, name: str) -> WorkerGroup:
    for group in worker_groups(settings):
        if group.name == name:
            return group
    raise KeyError(f"no worker group {name!r} (groups: {', '.join(GROUP_QUEUES)})")


def metrics_dir(settings: Settings) -> Path:
    """This process's prometheus-client directory: METRICS_DIR/<group>, or METRICS_DIR itself outside a group
    (a bare ``dramatiq actors``).  Each group empties only its own at start, so groups never clobber each other."""
    base = Path(settings.metrics_dir).absolute()
    return base / settings.worker_group if settings.worker_group else base
