"""middleware.recycling: past its message count (or RSS cap) a process asks its master for a graceful reload."""

from __future__ import annotations

import signal

from middleware import recycling
from middleware.recycling import Recycling
from tests.support.units import proxy, stub_broker


def test_past_its_message_count_the_process_asks_once_for_a_reload(monkeypatch):
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(recycling.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    monkeypatch.setattr(recycling.os, "getppid", lambda: 4242)
    middleware, broker = Recycling(max_rss_mb=0, max_messages=3), stub_broker()
    for _ in range(5):
        middleware.after_process_message(broker, proxy())
    assert sent == [(4242, signal.SIGHUP)]


def test_over_its_memory_cap_the_process_asks_for_a_reload(monkeypatch):
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(recycling.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    monkeypatch.setattr(recycling.os, "getppid", lambda: 4242)
    monkeypatch.setattr(recycling, "rss_bytes", lambda: 600 * 2**20)
    Recycling(max_rss_mb=512, max_messages=0).after_skip_message(stub_broker(), proxy())
    assert sent == [(4242, signal.SIGHUP)]


def test_an_orphaned_process_does_not_signal_init(monkeypatch):
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(recycling.os, "getppid", lambda: 1)
    monkeypatch.setattr(recycling.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    Recycling(max_rss_mb=0, max_messages=1).after_process_message(stub_broker(), proxy())
    assert sent == []
