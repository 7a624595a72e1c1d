from worker_service.observability.runtimes import BOUNDS, bucket_of, quantile


def test_run_times_fall_in_the_bucket_whose_bound_holds_them():
    assert [bucket_of(s) for s in (0.0, 0.005, 0.006, 1.0, 899.0, 10_000.0)] == [0, 0, 1, 4, 12, len(BOUNDS)]


def test_quantiles_interpolate_within_a_bucket_like_histogram_quantile():
    assert quantile(0.5, {}) is None
    # 10 runs between 0.1 and 0.5 s: the median half way, p95 near the top
    assert round(quantile(0.5, {bucket_of(0.3): 10}), 6) == 0.3
    assert round(quantile(0.95, {bucket_of(0.3): 10}), 2) == 0.48
    # 90 fast and 10 slow: p50 among the fast, p95 among the slow
    counts = {bucket_of(0.01): 90, bucket_of(20): 10}
    assert quantile(0.5, counts) < 0.025 and 10 < quantile(0.95, counts) <= 30
    assert quantile(0.99, {len(BOUNDS): 5}) == BOUNDS[-1]  # past the last bound: that bound
