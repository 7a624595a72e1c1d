"""The Markdown every extractor writes: what the knowledge step reads, and ``/api/assets/ID/text`` serves.

Headings are ``#`` lines, list items ``- `` lines, tables are pipe tables with one table row per line and
the cells in order (a ``|`` or a line break inside a cell is escaped or flattened, so a row never spans two
lines), and the boundaries of pages, sheets and slides are marked on a line of their own::

    <!-- page 3 -->          <!-- sheet 2: Prices -->          <!-- slide 4 -->

The markers are HTML comments: invisible when the Markdown is rendered, easy to split on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

_SPACES = re.compile(r"[ \t\r\f\v]+")


def cell(value: object) -> str:
    """One table cell: on one line, pipes escaped, spaces collapsed."""
    text = "" if value is None else str(value)
    return _SPACES.sub(" ", text.replace("\r\n", "\n").replace("\n", " ").replace("|", "\\|")).strip()


def table(rows: Iterable[Sequence[object]]) -> str:
    """A pipe table; the first row is the header (Markdown has no table without one)."""
    cells = [[cell(value) for value in row] for row in rows]
    cells = [row for row in cells if any(row)]
    if not cells:
        return ""
    width = max(len(row) for row in cells)
    cells = [row + [""] * (width - len(row)) for row in cells]
    lines = ["| " + " | ".join(cells[0]) + " |", "|" + "---|" * width]
    lines += ["| " + " | ".join(row) + " |" for row in cells[1:]]
    return "\n".join(lines)


def heading(text: str, level: int) -> str:
    clean = _SPACES.sub(" ", text.replace("\n", " ")).strip()
    return f"{'#' * max(1, min(level, 6))} {clean}" if clean else ""


def list_item(text: str, level: int = 0, ordered: bool = False) -> str:
    clean = _SPACES.sub(" ", text.replace("\n", " ")).strip()
    return f"{'  ' * level}{'1.' if ordered else '-'} {clean}" if clean else ""


def marker(kind: str, number: int, name: str | None = None) -> str:
    """``<!-- page 3 -->`` / ``<!-- sheet 2: Prices -->``: a boundary, on a line of its own."""
    label = f"{kind} {number}" + (f": {cell(name).replace('--', '-')}" if name else "")
    return f"<!-- {label} -->"


def skipped(what: str, reason: str) -> str:
    """Where a part that could not be read was left out: the text says so, and the record counts it."""
    clean = _SPACES.sub(" ", reason.replace("--", "- -").replace("\n", " ")).strip()[:200]
    return f"<!-- skipped: {what} that could not be read ({clean}) -->"


def join(blocks: Iterable[str]) -> str:
    """Blocks separated by one blank line, empty ones dropped."""
    return "\n\n".join(block.strip("\n") for block in blocks if block and block.strip())
