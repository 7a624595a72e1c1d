"""Small server-rendered SVG charts (no script, no CDN): counts per time bucket, and a graph's picture."""

from __future__ import annotations

import math
from html import escape

COLOURS = {"done": "#16a34a", "failed": "#dc2626"}


def line_chart(
    labels: list[str], series: dict[str, list[int]], *, title: str, width: int = 560, height: int = 150
) -> str:
    """One polyline per series over ``labels`` (oldest first), with the peak and the first/last labels."""
    left, right, top, bottom = 36, 8, 20, 18
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max([1, *(v for values in series.values() for v in values)])
    count = max(1, len(labels) - 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>',
        f'<text x="{left}" y="12" font-size="11" fill="#374151">{escape(title)}</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#d1d5db"/>',
        f'<text x="2" y="{top + 9}" font-size="10" fill="#6b7280">{peak}</text>',
        f'<text x="2" y="{top + plot_h}" font-size="10" fill="#6b7280">0</text>',
    ]
    if labels:
        parts.append(
            f'<text x="{left}" y="{height - 4}" font-size="10" fill="#6b7280">{escape(labels[0])}</text>'
        )
        parts.append(
            f'<text x="{left + plot_w}" y="{height - 4}" font-size="10" fill="#6b7280" '
            f'text-anchor="end">{escape(labels[-1])}</text>'
        )
    for offset, (name, values) in enumerate(series.items()):
        points = " ".join(
            f"{left + plot_w * i / count:.1f},{top + plot_h - plot_h * v / peak:.1f}"
            for i, v in enumerate(values)
        )
        colour = COLOURS.get(name, "#2563eb")
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{points}"/>')
        parts.append(
            f'<text x="{width - right - 80 * (len(series) - offset)}" y="12" font-size="11" '
            f'fill="{colour}">{escape(name)} {sum(values)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def graph_picture(entities: list[str], relations: list[tuple[str, str]], *, size: int = 320) -> str:
    """The most mentioned entities on a circle, with the relations between them."""
    shown = entities[:12]
    centre, radius = size / 2, size / 2 - 60
    at = {
        name: (
            centre + radius * math.cos(2 * math.pi * i / max(1, len(shown))),
            centre + radius * math.sin(2 * math.pi * i / max(1, len(shown))),
        )
        for i, name in enumerate(shown)
    }
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" role="img" '
        f'aria-label="knowledge graph"><title>knowledge graph</title>'
    ]
    for source, target in relations:
        if source in at and target in at:
            (x1, y1), (x2, y2) = at[source], at[target]
            parts.append(f'<line x1="{x1:.0f}" y1="{y1:.0f}" x2="{x2:.0f}" y2="{y2:.0f}" stroke="#9ca3af"/>')
    for name, (x, y) in at.items():
        parts.append(
            f'<circle cx="{x:.0f}" cy="{y:.0f}" r="5" fill="#2563eb"/><text x="{x:.0f}" y="{y - 8:.0f}" '
            f'font-size="10" text-anchor="middle">{escape(name[:24])}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
