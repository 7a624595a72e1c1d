"""`make profile`: where the worker's threads spend their time while draining no-op messages (py-spy).

Usage: python -m benchmarks.profile [--messages N] [--seconds S] [--module M] [--top K]

Enqueues N no-op messages on db 12, starts ``dramatiq M --processes 2 --threads 8`` (the drain
benchmark's shape), samples every Dramatiq worker and consumer thread of every worker process with
py-spy for S seconds once draining has begun, prints the K frames holding the largest share of those
samples (inclusive: a frame counts when it is anywhere on the stack) with the drain rate meanwhile,
and saves the collapsed stacks as benchmarks/results/profile-<stamp>.txt (speedscope and
flamegraph.pl read them).  py-spy needs ptrace rights over the workers (root, or CAP_SYS_PTRACE).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import redis

from benchmarks.common import BIN, REDIS_URL, RESULTS, ROOT, enqueue_raw, worker_env

# Frames every sample has, or that only say "a thread exists": no information about the hot path.
_BORING = re.compile(r"^(Thread\._bootstrap|Thread\._bootstrap_inner|WorkerThread\.run|ConsumerThread\.run) ")
_LINE = re.compile(r":\d+\)$")


def summarize(collapsed: Path, top: int) -> tuple[int, list[tuple[float, str]]]:
    """(samples of Dramatiq threads, [(inclusive share, frame)]) from py-spy's collapsed stacks."""
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [_LINE.sub(")", f) for f in stack.split(";") if not f.startswith("process ")]
        if not any(f.startswith(("WorkerThread.run", "ConsumerThread.run")) for f in frames):
            continue
        total += int(count)
        for frame in set(frames):
            if not _BORING.match(frame):
                inclusive[frame] += int(count)
    return total, [(count / total, frame) for frame, count in inclusive.most_common(top)] if total else []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--module", default="tests.support.worker_actors")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    py_spy = shutil.which("py-spy", path=str(BIN)) or shutil.which("py-spy")
    if py_spy is None:
        parser.error("py-spy is not installed (it is in the dev extras: make venv)")

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    enqueue_raw(client, "bench_noop", "bench", [{"n": i} for i in range(args.messages)])
    RESULTS.mkdir(parents=True, exist_ok=True)
    output = RESULTS / f"profile-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.txt"
    with tempfile.TemporaryDirectory() as tmp:
        worker = subprocess.Popen(
            [str(BIN / "dramatiq"), args.module, "--processes", "2", "--threads", "8"],
            cwd=ROOT,
            env=worker_env(tmp),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 120
            while client.llen("dramatiq:bench") >= args.messages and time.monotonic() < deadline:
                time.sleep(0.005)
            left_before, started = client.hlen("dramatiq:bench.msgs"), time.monotonic()
            subprocess.run(
                [
                    py_spy,
                    "record",
                    "--pid",
                    str(worker.pid),
                    "--subprocesses",
                    "--rate",
                    "200",
                    "--nonblocking",
                    "--format",
                    "raw",
                    "--duration",
                    str(args.seconds),
                    "--output",
                    str(output),
                ],
                check=True,
                capture_output=True,
            )
            drained = left_before - client.hlen("dramatiq:bench.msgs")
            rate = drained / (time.monotonic() - started)
        finally:
            worker.terminate()
            worker.wait(60)
    client.flushdb()
    if drained >= left_before:
        sys.stderr.write("warning: the queue ran dry while sampling; raise --messages\n")
    samples, frames = summarize(output, args.top)
    lines = [
        f"{args.module}: {rate:,.0f} msg/s while sampled; {samples} samples of Dramatiq worker and "
        "consumer threads (2 processes x 8 threads)",
        "share  frame (inclusive)",
    ]
    lines += [f"{share * 100:5.1f}% {frame}" for share, frame in frames]
    sys.stdout.write("\n".join(lines) + f"\n\nsaved {output}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
