"""How costs grow with the work: backlogs of 10^4 and 10^5 messages (10^6 with BENCH_FULL=1), and 10, 100 and
1,000 idle consumers of one queue; a table, and curves in benchmarks/results/scale.svg.

Backlog: bulk send rate (worker_contracts.Sender.send_many), Redis memory per queued message, the drain of
the whole backlog by the full stack (2 processes x 8 threads) with the Redis commands it took per message, and
the recovery round that gives back what a worker killed -9 with a full prefetch held.
Consumers: Redis commands and consumer CPU per message sent one by one at 100 msg/s (tests/support/commandcount),
and the commands a second of one idle worker process.
Each figure is also given as a ratio to its smallest size.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from benchmarks.common import BIN, RESULTS, ROOT, enqueue_raw, worker_env
from tests.support.commandcount import commands


def _drain(client: redis.Redis, url: str, n: int, tmp: str) -> tuple[float, float, float, float]:
    """(send msg/s, bytes per queued message, drain msg/s, Redis commands per message while draining)."""
    from worker_contracts import Sender

    client.flushall()
    base = int(client.info("memory")["used_memory"])
    sender = Sender(client)
    started = time.monotonic()
    for start in range(0, n, 10_000):
        sender.send_many(
            "extract_knowledge", [{"asset_id": f"s{i}"} for i in range(start, min(n, start + 10_000))]
        )
    send_rate = n / (time.monotonic() - started)
    per_message = (int(client.info("memory")["used_memory"]) - base) / n
    # the knowledge actor needs its records: drain the same backlog through a no-op actor of the bench queue
    client.flushall()
    for start in range(0, n, 10_000):
        enqueue_raw(client, "bench_noop", "bench", [{"n": i} for i in range(start, min(n, start + 10_000))])
    client.config_resetstat()
    env = worker_env(tmp, BROKER_URL=url)
    worker = subprocess.Popen(
        [
            str(BIN / "dramatiq"),
            "tests.support.worker_actors",
            "--processes",
            "2",
            "--threads",
            "8",
            "--queues",
            "bench",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        started = time.monotonic()
        deadline = started + 3600
        while client.hlen("dramatiq:bench.msgs") and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.05)
        elapsed = time.monotonic() - started  # includes the workers' start (a second or two)
        spent = commands(client)
    finally:
        worker.terminate()
        _, stderr = worker.communicate(timeout=60)
    if client.hlen("dramatiq:bench.msgs"):
        raise RuntimeError(
            f"drain of {n}: {client.hlen('dramatiq:bench.msgs')} left\n{stderr.decode()[-2000:]}"
        )
    return send_rate, per_message, n / elapsed, spent / n


def _idle_process(client: redis.Redis, url: str, tmp: str) -> float:
    """Redis commands a second of one idle worker process (1 x 8 threads on the bench queue and its delay queue,
    the full middleware stack: heartbeats, recovery, leases, rate-limit and pause reads), over 10 s."""
    client.flushall()
    worker = subprocess.Popen(
        [
            str(BIN / "dramatiq"),
            "tests.support.worker_actors",
            "--processes",
            "1",
            "--threads",
            "8",
            "--queues",
            "bench",
        ],
        cwd=ROOT,
        env=worker_env(tmp, BROKER_URL=url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not client.zcard("dramatiq:__heartbeats__") and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(5)  # past its start: migrations, first rounds
        client.config_resetstat()
        started = time.monotonic()
        time.sleep(10)
        return commands(client) / (time.monotonic() - started)
    finally:
        worker.terminate()
        worker.wait(60)


def _recovery(client: redis.Redis, url: str, n: int, tmp: str) -> tuple[int, float]:
    """A worker (1 x 8) holding a full prefetch of ``n`` queued messages is killed -9; after its heartbeat
    expired, one recovery round: (messages it gave back, milliseconds the round took)."""
    import signal

    from worker_service.brokers.redis import ReliableRedisBroker

    client.flushall()
    client.set("bench:hold", 1)
    for start in range(0, n, 10_000):
        enqueue_raw(client, "hold", "tests", [{"tag": f"h{i}"} for i in range(start, min(n, start + 10_000))])
    env = worker_env(tmp, BROKER_URL=url, HEARTBEAT_TIMEOUT_MS="2000", MAINTENANCE_INTERVAL_MS="500")
    worker = subprocess.Popen(
        [
            str(BIN / "dramatiq"),
            "tests.support.worker_actors",
            "--processes",
            "1",
            "--threads",
            "8",
            "--queues",
            "tests",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while client.llen("bench:started") < 8 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # the prefetch fills
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(30)
    time.sleep(2.5)  # past the heartbeat time-out
    broker = ReliableRedisBroker(client=client, heartbeat_timeout=2000)
    started = time.perf_counter()
    _dead, requeued = broker.recover_dead_workers()
    elapsed = time.perf_counter() - started
    client.delete("bench:hold")
    return requeued, elapsed * 1000


def _svg(series: dict[str, list[tuple[float, float]]], path: Path) -> None:
    """One small chart per series (x on a log scale, y as a ratio to the first point), side by side."""
    import math

    width, height, pad = 260, 170, 34
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width * len(series)}" height="{height}" '
        'font-family="sans-serif" font-size="10">'
    ]
    for index, (name, points) in enumerate(series.items()):
        left = index * width
        base = points[0][1] or 1.0
        ratios = [(x, y / base) for x, y in points]
        top = max(2.0, max(r for _, r in ratios))
        xs = [math.log10(x) for x, _ in ratios]
        span = (max(xs) - min(xs)) or 1.0

        def at(
            x: float,
            r: float,
            *,
            xs_min: float = min(xs),
            span: float = span,
            top: float = top,
            left: int = left,
        ) -> tuple[float, float]:
            return (
                left + pad + (math.log10(x) - xs_min) / span * (width - 2 * pad),
                height - pad - r / top * (height - 2 * pad),
            )

        line = " ".join(f"{px:.1f},{py:.1f}" for px, py in (at(x, r) for x, r in ratios))
        parts.append(f'<text x="{left + pad}" y="14">{name}</text>')
        parts.append(
            f'<line x1="{left + pad}" y1="{height - pad}" x2="{left + width - pad}" y2="{height - pad}" '
            'stroke="#999"/>'
        )
        one = at(ratios[0][0], 1.0)[1]
        parts.append(
            f'<line x1="{left + pad}" y1="{one:.1f}" x2="{left + width - pad}" y2="{one:.1f}" '
            'stroke="#ccc" stroke-dasharray="3"/>'
        )
        parts.append(f'<polyline fill="none" stroke="#36c" stroke-width="2" points="{line}"/>')
        for (x, r), (px, py) in zip(ratios, (at(x, r) for x, r in ratios), strict=True):
            parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="#36c"/>')
            parts.append(f'<text x="{px - 10:.1f}" y="{height - pad + 14}">{x:,.0f}</text>')
            parts.append(f'<text x="{px + 4:.1f}" y="{py - 5:.1f}">{r:.2f}x</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n")


def curves() -> list[dict[str, Any]]:
    """Scale: send, memory and drain at 10^4/10^5 queued (10^6 with BENCH_FULL=1); 10/100/1,000 idle consumers."""
    from tests.support.commandcount import measure, private_redis

    sizes = (10_000, 100_000, 1_000_000) if os.environ.get("BENCH_FULL") else (10_000, 100_000)
    rows: list[dict[str, Any]] = []
    series: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp, private_redis(Path(tmp)) as client:
        url = f"redis://127.0.0.1:{client.connection_pool.connection_kwargs['port']}/0"
        for n in sizes:
            send, memory, drain, drained_cmds = _drain(client, url, n, tmp)
            recovered, recovery_ms = _recovery(client, url, n, tmp)
            for name, value, unit in (
                ("bulk send", send, "msg/s"),
                ("Redis memory per queued message", memory, "B"),
                ("drain, full stack 2x8", drain, "msg/s"),
                ("Redis commands per drained message", drained_cmds, "cmds"),
                (f"recovery round after kill -9 ({recovered} held)", recovery_ms, "ms"),
            ):
                key = name.split(" (")[0]
                series.setdefault(key, []).append((n, value))
                rows.append(
                    {
                        "benchmark": "scale",
                        "variant": f"{n:,} queued: {name}",
                        "value": round(value, 1),
                        "unit": unit,
                        "ratio": round(value / series[key][0][1], 2),
                    }
                )
        for consumers in (10, 100, 1000):
            counts = measure(client, consumers)
            for name, value, unit in (
                ("Redis commands per message", counts.per_message, "cmds"),
                ("idle Redis commands per consumer per s", counts.idle_per_consumer_s, "cmds"),
                ("consumer CPU per message", counts.cpu_ms_per_message, "ms"),
            ):
                key = f"{name} (by consumers)"
                series.setdefault(key, []).append((consumers, value))
                rows.append(
                    {
                        "benchmark": "scale",
                        "variant": f"{consumers:,} consumers: {name}",
                        "value": round(value, 2),
                        "unit": unit,
                        "ratio": round(value / series[key][0][1], 2),
                    }
                )
        idle = _idle_process(client, url, tmp)
        rows.append(
            {
                "benchmark": "scale",
                "variant": "an idle worker process (1 x 8): Redis commands per second",
                "value": round(idle, 2),
                "unit": "cmds/s",
                "notes": "goal <= 5",
            }
        )
        ours = series["Redis commands per message (by consumers)"][0][1]
        for variant, options in (
            ("marked started before the ack, as a worker does", {"mark": True}),
            ("bare Dramatiq RedisBroker", {"bare": True}),
        ):
            value = measure(client, 10, **options).per_message
            rows.append(
                {
                    "benchmark": "scale",
                    "variant": f"10 consumers, {variant}: Redis commands per message",
                    "value": round(value, 2),
                    "unit": "cmds",
                    "ratio": round(value / ours, 2),
                    "notes": "ratio to this service's broker without the mark; goal <= 12",
                }
            )
    RESULTS.mkdir(parents=True, exist_ok=True)
    _svg(series, RESULTS / "scale.svg")
    return rows
