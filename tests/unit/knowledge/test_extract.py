"""worker_service.knowledge.extract: the missing-key line is said once per process, even by threads skipping at
once."""

from __future__ import annotations


def test_the_missing_key_is_said_once_even_when_threads_skip_at_the_same_time(monkeypatch):
    """Regression (seen once in CI): two worker threads skipping at once both logged it."""
    import threading
    import time

    import worker_service.knowledge.extract as knowledge

    said: list[str] = []

    def slow_info(message: str, *args: object) -> None:
        time.sleep(0.05)  # widen the window the race needs
        said.append(message)

    knowledge._log_no_key.cache_clear()
    monkeypatch.setattr(knowledge.logger, "info", slow_info)
    threads = [threading.Thread(target=knowledge._note_no_key) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(said) == 1
