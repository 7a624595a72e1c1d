from datetime import UTC, datetime

from worker_service.web.formatting import human_bytes, human_seconds, until


def test_sizes_read_in_binary_units():
    assert [human_bytes(n) for n in (None, 0, 1023, 1536, 123_456, 5 * 2**30, 3 * 2**40)] == [
        "—",
        "0 B",
        "1023 B",
        "1.5 KiB",
        "120.6 KiB",
        "5.0 GiB",
        "3072.0 GiB",
    ]


def test_durations_read_in_the_largest_sensible_units():
    assert [human_seconds(s) for s in (None, 0.42, 3.25, 95, 7200 + 300, 200_000)] == [
        "—",
        "420 ms",
        "3.2 s",
        "1 min 35 s",
        "2 h 5 min",
        "2 d 7 h",
    ]


def test_until_says_how_far_ahead_or_behind():
    now = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)
    assert until("2026-12-07T12:00:30Z", now) == "in 30.0 s"
    assert until("2026-12-07T11:57:00Z", now) == "3 min 0 s ago"
    assert until(None, now) == ""
