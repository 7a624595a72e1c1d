"""Run-time buckets shared by the per-actor counts the workers keep (middleware.throughput) and the dashboard's
per-actor table that reads them: p50 and p95 from bucket counts, as Prometheus's histogram_quantile does."""

from __future__ import annotations

import bisect
from collections.abc import Mapping

#: upper bounds in seconds (the last bucket is everything longer); the same as worker_message_duration_seconds
BOUNDS = (0.005, 0.025, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)


def bucket_of(seconds: float) -> int:
    """The index of the bucket ``seconds`` falls in (len(BOUNDS) past the last bound)."""
    return bisect.bisect_left(BOUNDS, seconds)


def quantile(q: float, counts: Mapping[int, int]) -> float | None:
    """The ``q`` quantile of run times counted per bucket (linear within the bucket; past the last bound, that
    bound); None without counts."""
    total = sum(counts.values())
    if not total:
        return None
    rank, seen = q * total, 0
    for index in range(len(BOUNDS) + 1):
        n = counts.get(index, 0)
        if n and seen + n >= rank:
            if index == len(BOUNDS):
                return BOUNDS[-1]
            lower = BOUNDS[index - 1] if index else 0.0
            return lower + (BOUNDS[index] - lower) * (rank - seen) / n
        seen += n
    return BOUNDS[-1]
