"""Type detection by content, never by name (Markdown is text, told apart by filename or content_type)."""

from __future__ import annotations

import zipfile

from worker_service.errors import PermanentError

PDF_MAGIC = b"%PDF-"
ZIP_MAGIC = b"PK\x03\x04"
_TEXT_CONTROL = set(range(0, 32)) - {9, 10, 12, 13, 27}


def sniff(path: str, *, filename: str | None, content_type: str | None) -> str:
    """Return ``pdf``, ``docx``, ``text`` or ``markdown``; raise PermanentError(unsupported_type|empty)."""
    with open(path, "rb") as fh:
        head = fh.read(8192)
    if not head:
        raise PermanentError("the file is empty", error_code="empty")
    if PDF_MAGIC in head[:1024]:
        return "pdf"
    if head.startswith(ZIP_MAGIC):
        return _sniff_zip(path)
    if _looks_like_text(head):
        name = (filename or "").lower()
        if name.endswith((".md", ".markdown")) or (content_type or "").lower().startswith("text/markdown"):
            return "markdown"
        return "text"
    raise PermanentError("unsupported file type (not PDF, DOCX or text)", error_code="unsupported_type")


def _sniff_zip(path: str) -> str:
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise PermanentError(f"a damaged ZIP/DOCX container: {exc}", error_code="corrupt") from None
    if "[Content_Types].xml" in names and any(n.startswith("word/") for n in names):
        return "docx"
    if "[Content_Types].xml" in names and "_rels/.rels" in names:
        return "docx"  # renamed main part; extract follows the relationship
    raise PermanentError("a ZIP archive that is not a DOCX document", error_code="unsupported_type")


def _looks_like_text(head: bytes) -> bool:
    if head.startswith((b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf")):
        return True
    if b"\x00" in head:
        return False
    controls = sum(1 for b in head if b in _TEXT_CONTROL)
    return controls <= len(head) // 100
