"""Supervision and probes with real processes: no orphans, liveness through broker outages, JSON logs, clean stops."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.support.helpers import BIN, WorkerProcess, alive, descendants, free_port, unavailable, wait_for

#: `worker run` of every group, each with few threads (this machine has two cores and runs tests in parallel)
SMALL_GROUPS = {"ASSETS_THREADS": "2", "KNOWLEDGE_THREADS": "2", "CRM_THREADS": "2"}


def _worker_run(env: dict[str, str], log: Path) -> WorkerProcess:
    return WorkerProcess(env, log, command=[str(BIN / "worker"), "run"])


def _ready(worker: WorkerProcess, processes: int) -> bool:
    return sum(r.get("message", "").startswith("Worker process ready") for r in worker.logs()) >= processes


def test_sigkill_of_worker_run_alone_leaves_no_process_of_its_tree(worker_env, tmp_path):
    env = {**worker_env, **SMALL_GROUPS, "ASSETS_PROCESSES": "2", "METRICS_PORT": str(free_port())}
    worker = _worker_run(env, tmp_path / "run.log")
    try:
        wait_for(lambda: _ready(worker, 4), 90, 0.2, "four worker processes ready")
        tree = descendants(worker.process.pid)
        assert len(tree) >= 10  # 3 group mains, 4 worker processes, 3 metrics forks (and extraction children)
        os.kill(worker.process.pid, signal.SIGKILL)  # the supervisor only, as a VM's or an OOM kill would
        killed = time.monotonic()
        wait_for(lambda: not any(alive(pid) for pid in tree), 5, 0.1, "every process of the tree gone")
        print(
            f"\nworker run SIGKILLed: its {len(tree)} processes gone {time.monotonic() - killed:.1f} s later"
        )
    finally:
        worker.stop()


def test_bare_dramatiq_workers_stop_when_their_main_process_is_killed(worker_env, start_worker):
    worker = start_worker(processes=2, threads=2)
    wait_for(lambda: _ready(worker, 2), 60, 0.2, "two worker processes ready")
    tree = descendants(worker.process.pid)
    os.kill(worker.process.pid, signal.SIGKILL)
    wait_for(lambda: not any(alive(pid) for pid in tree), 5, 0.1, "the worker processes gone")


def test_every_line_worker_run_writes_is_json_from_start_through_work_to_sigterm(
    worker_env, redis_client, tmp_path
):
    from worker_contracts import Sender

    from tests.support.helpers import run_cli

    env = {**worker_env, **SMALL_GROUPS, "METRICS_PORT": str(free_port()), "LOG_FORMAT": "json"}
    (Path(env["STORAGE_ROOT"]) / "j1.txt").write_text("some text\n")
    log = tmp_path / "run.log"
    worker = _worker_run(env, log)
    try:
        wait_for(lambda: _ready(worker, 3), 90, 0.2, "worker ready")
        sender = Sender(redis_client)
        sender.process_asset("j1", "file:j1.txt")
        sender.process_asset("j2", "file:missing.txt")  # fails: a warning and a dead letter
        redis_client.hset("dramatiq:assets.msgs", "raw", b"\xff not a message")  # Dramatiq's own error path
        redis_client.rpush("dramatiq:assets", "raw")

        def finished() -> bool:
            shown = [
                json.loads(run_cli(env, "asset", a, "--json").stdout or "{}").get("status")
                for a in ("j1", "j2")
            ]
            return shown == ["extracted", "failed"]

        wait_for(finished, 30, 0.3, "work done")
        time.sleep(1)
        worker.terminate()
        assert worker.wait(30) == 0
    finally:
        worker.stop()
    lines = log.read_text().splitlines()
    assert len(lines) > 10
    not_json = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            not_json.append(line)
            continue
        assert {"time", "level", "logger", "message"} <= record.keys(), line
    assert not_json == []
    messages = [json.loads(line)["message"] for line in lines]
    assert any("is booting up" in m for m in messages)  # Dramatiq's main process, in JSON too
    assert any("Sending signal" in m for m in messages)


def test_healthz_stays_up_through_a_broker_outage_and_readyz_follows_the_broker(
    worker_env, start_worker, sender, redis_client
):
    from tests.support.tcpproxy import TcpProxy

    long_cut = bool(os.environ.get("CHAOS_FULL"))  # make chaos: the 120 s cut; make test: a 30 s one
    cut_seconds = 120 if long_cut else 30
    redis_at = urlsplit(worker_env["BROKER_URL"])
    proxy = TcpProxy(redis_at.hostname or "127.0.0.1", redis_at.port or 6379).start()
    port = free_port()
    env = {
        **worker_env,
        "BROKER_URL": f"redis://127.0.0.1:{proxy.port}{redis_at.path}",
        "TEST_RECORD_URL": worker_env["BROKER_URL"],
        "METRICS_PORT": str(port),
    }
    start_worker(env=env, threads=2)
    base = f"http://127.0.0.1:{port}"

    def probe(path: str) -> int:
        try:
            return requests.get(f"{base}{path}", timeout=3).status_code
        except requests.RequestException:
            return 0

    try:
        wait_for(lambda: probe("/healthz") == 200 and probe("/readyz") == 200, 60, 0.3, "healthy and ready")
        for i in range(8):
            sender("sleepy", tag=f"o{i}", seconds=1)
        wait_for(lambda: redis_client.llen("wtest:started") >= 1, 30, 0.05, "work in flight")
        proxy.cut()
        health, ready = [], []
        deadline = time.monotonic() + cut_seconds
        while time.monotonic() < deadline:
            health.append(probe("/healthz"))
            ready.append(probe("/readyz"))
            time.sleep(2)
        proxy.start()
        print(
            f"\nbroker cut {cut_seconds} s: /healthz {health.count(200)}/{len(health)} x 200, "
            f"/readyz {ready.count(503)}/{len(ready)} x 503"
        )
        assert set(health) == {200}
        assert ready[-10 if long_cut else -5 :] == [503] * (10 if long_cut else 5)
        wait_for(
            lambda: len(set(redis_client.lrange("wtest:done", 0, -1))) == 8,
            90,
            0.3,
            "every message sent before the cut",
        )
        wait_for(lambda: probe("/readyz") == 200, 30, 0.5, "ready again")
    finally:
        proxy.cut()


def test_a_wedged_worker_thread_turns_healthz_unhealthy(worker_env, start_worker, sender, tmp_path):
    port = free_port()
    env = {**worker_env, "METRICS_PORT": str(port), "LIVENESS_WEDGE_GRACE_SECONDS": "1"}
    worker = start_worker(env=env, threads=2)
    url = f"http://127.0.0.1:{port}/healthz"

    def status() -> int:
        try:
            return requests.get(url, timeout=3).status_code
        except requests.RequestException:
            return 0

    wait_for(lambda: status() == 200, 60, 0.3, "healthy")
    sender("wedge", tag="w", seconds=25)  # 1 s time limit; stuck in C for 25 s
    wait_for(lambda: status() == 503, 20, 0.3, "unhealthy while wedged")
    errors = [r for r in worker.logs() if r["level"] == "ERROR" and "cannot make progress" in r["message"]]
    assert len(errors) == 1 and "past its time limit" in errors[0]["message"]
    wait_for(lambda: status() == 200, 40, 0.5, "healthy again once the thread is free")


@pytest.mark.processes
def test_make_run_in_a_fresh_network_namespace_processes_an_asset_and_stops_in_order(tmp_path):
    import shutil
    import subprocess

    from tests.support.helpers import ROOT

    if os.geteuid() != 0:
        unavailable("needs root for a network namespace (unshare -n, nsenter)")
    if not shutil.which("unshare") or not shutil.which("nsenter") or not shutil.which("redis-server"):
        unavailable("needs unshare, nsenter and redis-server")
    var = tmp_path / "var"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BROKER_", "DATABASE_", "WORKER_", "WEB_", "METRICS_", "STORAGE_", "TEST_"))
    }
    env.update(
        {
            "VAR_DIR": str(var),
            "DATABASE_URL": f"sqlite:///{var}/worker.db",
            "STORAGE_ROOT": str(var / "storage"),
            "METRICS_DIR": str(var / "metrics"),
            **SMALL_GROUPS,
        }
    )
    log = tmp_path / "make-run.log"
    with open(log, "wb") as out:
        run = subprocess.Popen(
            ["unshare", "-n", "bash", "-c", "ip link set lo up && exec make run"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def in_netns(*argv: str) -> subprocess.CompletedProcess:
            return subprocess.run(
                ["nsenter", "-t", str(run.pid), "-n", *argv],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )

        wait_for(lambda: "Worker process ready" in log.read_text(), 120, 0.5, "make run up")
        (var / "storage").mkdir(parents=True, exist_ok=True)
        (var / "storage" / "hello.txt").write_text("hello from a fresh namespace\n")
        sent = in_netns(
            str(BIN / "worker"),
            "send",
            "process_asset",
            json.dumps({"asset_id": "ns1", "source": "file:hello.txt"}),
        )
        assert sent.returncode == 0, sent.stderr

        def extracted() -> bool:
            shown = in_netns(str(BIN / "worker"), "asset", "ns1", "--json")
            return shown.returncode == 0 and json.loads(shown.stdout)["status"] == "extracted"

        wait_for(extracted, 60, 0.5, "the asset extracted")
        os.killpg(run.pid, signal.SIGINT)  # Ctrl-C in the terminal: the whole foreground group
        run.wait(90)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait(10)
    output = log.read_text()
    assert "CRITICAL" not in output, output[-3000:]
    order = [line for line in output.splitlines() if line.startswith("make run: stopped")]
    assert order == [
        "make run: stopped the worker",
        "make run: stopped the dashboard",
        "make run: stopped Redis",
    ]
    # issue 41: readable lines, the address and password again once up, and a Ctrl-C that is not an error
    assert not [line for line in output.splitlines() if line.startswith('{"message"')], output[-2000:]
    ready = [line for line in output.splitlines() if line.startswith("make run: ready.")]
    assert len(ready) == 1 and "password" in ready[0] and "http://127.0.0.1:" in ready[0]
    assert "Error 130" not in output and "*** [" not in output, output[-500:]  # make reports no failed recipe
    assert run.returncode in (
        0,
        -signal.SIGINT,
    )  # make, on Ctrl-C, ends by the signal it got, as shells expect
    leftovers = [p for p in descendants(1) if str(var) in _cmdline(p)]
    assert leftovers == []


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
