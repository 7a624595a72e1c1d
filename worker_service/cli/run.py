"""``worker run``: every worker group under one supervisor, or one group as its Dramatiq main process."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import shutil
import sys
from pathlib import Path

from settings import Settings, get_settings
from worker_service.cli import common
from worker_service.runtime.worker_groups import (
    GROUP_QUEUES,
    WorkerGroup,
    group_named,
    metrics_dir,
    worker_groups,
)

logger = logging.getLogger("worker.cli")


def dramatiq_command(group: WorkerGroup, settings: Settings) -> list[str]:
    """The exact Dramatiq command `worker run` executes for ``group`` (in its own process, see cmd_run).

    ``--skip-logging``: Dramatiq's processes keep the JSON (or text) logging this service configured
    instead of adding Dramatiq's own plain-text handler beside it.
    """
    return [
        "dramatiq",
        "actors",
        "--queues",
        *group.queues,
        "--processes",
        str(group.processes),
        "--threads",
        str(group.threads),
        "--worker-shutdown-timeout",
        str(settings.shutdown_grace_seconds * 1000),
        "--skip-logging",
    ]


def _worker_script() -> list[str]:
    script = Path(sys.argv[0])
    if script.name == "worker":
        return [str(script.absolute())]
    installed = Path(sys.executable).parent / "worker"
    return [str(installed)] if installed.exists() else [sys.executable, "-m", "worker_service.cli"]


def cmd_run(args: argparse.Namespace) -> int:
    """One worker group (``--group`` or WORKER_GROUP), or every group under one supervisor."""
    from worker_service.runtime.supervision import supervise

    settings = common.settings()
    name = args.group or settings.worker_group
    if name:
        return _run_group(name)
    common.init(settings, migrate=True)  # once, before the groups start (each checks again: a no-op)
    groups = worker_groups(settings)
    commands = {}
    for group in groups:
        env = {
            **os.environ,
            "WORKER_GROUP": group.name,
            "METRICS_PORT": str(settings.metrics_port + group.index if settings.metrics_port else 0),
        }
        commands[group.name] = ([*_worker_script(), "run", "--group", group.name], env)
    logger.info(
        "starting the worker groups: %s",
        ", ".join(f"{g.name} ({g.processes}x{g.threads})" for g in groups),
        extra={
            "groups": {
                g.name: {"queues": g.queues, "processes": g.processes, "threads": g.threads} for g in groups
            }
        },
    )
    return supervise(commands)


def _run_group(name: str) -> int:
    """Become the group's Dramatiq main process (no intermediate parent).

    A supervisor's signal, a process-group kill or a SIGKILL therefore reach the process that owns the
    worker processes; those ask the kernel for SIGTERM when it dies (middleware.recovery,
    supervision.py), so no worker outlives it.  Dramatiq's own handlers do the rest: SIGTERM/SIGINT stop
    gracefully (once, even when a terminal signals the whole group: the worker processes ignore SIGINT),
    SIGHUP reloads by re-executing ``worker run``.
    """
    from dramatiq.cli import main as dramatiq_main
    from dramatiq.cli import make_argument_parser

    from worker_service.database import database_proxy

    os.environ["WORKER_GROUP"] = name  # the worker processes forked below read it (their metrics directory)
    get_settings.cache_clear()
    settings = common.settings()
    group = group_named(settings, name)
    common.init(settings, migrate=True)
    if database_proxy.obj is not None:
        database_proxy.obj.close()  # worker processes are forked from here: they must not share its connection
    directory = metrics_dir(settings)
    if directory.exists():  # stale per-process files of an earlier run would be summed in forever
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    command = dramatiq_command(group, settings)
    logger.info("starting: %s", shlex.join(command), extra={"command": command, "group": name})
    return int(dramatiq_main(make_argument_parser().parse_args(command[1:])) or 0)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="run every worker group (or one: --group), sized by the *_PROCESSES/*_THREADS settings"
    )
    p.add_argument(
        "--group", choices=list(GROUP_QUEUES), help="run only this group (default: WORKER_GROUP, else all)"
    )
    p.set_defaults(func=cmd_run)
