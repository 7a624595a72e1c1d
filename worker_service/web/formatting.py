"""How the pages write numbers for people: sizes and durations in human units (Jinja filters)."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Flask


def human_bytes(n: int | float | None) -> str:
    """``1536`` -> ``1.5 KiB``; None -> ``—``."""
    if n is None:
        return "—"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"  # pragma: no cover - the loop returns


def human_seconds(seconds: float | None) -> str:
    """``0.42`` -> ``420 ms``; ``95`` -> ``1 min 35 s``; ``200000`` -> ``2 d 7 h``; None -> ``—``."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours = minutes // 60
    return f"{hours} h {minutes % 60} min" if hours < 48 else f"{hours // 24} d {hours % 24} h"


def until(iso_time: str | None, now: datetime | None = None) -> str:
    """How far an ISO time (``...Z``) is from now: ``in 12 s`` or ``3 min ago``; '' for None."""
    if not iso_time:
        return ""
    at = datetime.fromisoformat(iso_time.replace("Z", "+00:00"))
    delta = (at - (now or datetime.now(UTC))).total_seconds()
    return f"in {human_seconds(delta)}" if delta >= 0 else f"{human_seconds(-delta)} ago"


def register(app: Flask) -> None:
    app.jinja_env.filters.update(bytes=human_bytes, seconds=human_seconds, until=until)
