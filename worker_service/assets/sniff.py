"""Type detection by content, never by name (Markdown is text, told apart by filename or content_type).

Types: ``pdf``, ``docx``, ``xlsx`` (and XLSM), ``pptx``, ``odt``, ``ods``, ``odp``, ``epub``, ``rtf``, ``html``,
``csv`` (and TSV), ``image`` (JPEG, PNG, TIFF, WebP, BMP: OCR), ``text``, ``markdown``.  An OOXML package
is told apart by its main part in ``[Content_Types].xml`` (XLSX and PPTX are ZIP packages with that file too:
sniffed as DOCX they gave no text at all); an ODF package by its ``mimetype`` entry.  Legacy binary Office
files (OLE2: .doc, .xls, .ppt) are refused ``unsupported_type`` with the format named; an OLE2 file holding an
``EncryptedPackage`` is a password-protected DOCX/XLSX/PPTX: ``encrypted``.
"""

from __future__ import annotations

import csv
import re
import zipfile

from worker_service.errors import PermanentError

PDF_MAGIC = b"%PDF-"
ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"II*\x00", b"MM\x00*", b"BM")
_TEXT_CONTROL = set(range(0, 32)) - {9, 10, 12, 13, 27}
_OOXML_MAIN = {
    "wordprocessingml.document.main": "docx",
    "wordprocessingml.template.main": "docx",
    "spreadsheetml.sheet.main": "xlsx",
    "sheet.macroEnabled.main": "xlsx",
    "spreadsheetml.template.main": "xlsx",
    "presentationml.presentation.main": "pptx",
    "presentationml.slideshow.main": "pptx",
    "presentation.macroEnabled.main": "pptx",
}
_ODF = {
    "application/vnd.oasis.opendocument.text": "odt",
    "application/vnd.oasis.opendocument.spreadsheet": "ods",
    "application/vnd.oasis.opendocument.presentation": "odp",
}
_HTML_START = re.compile(rb"^\s*(<!--.*?-->\s*)*<(!doctype\s+html|html|head|body)[\s>]", re.I | re.S)
#: a saved fragment (no <html>/<body>) that opens with an element only HTML has
_HTML_FRAGMENT = re.compile(
    rb"^\s*(<!--.*?-->\s*)*<(p|div|table|h[1-6]|section|article|main|ul|ol|span|a|meta|title|"
    rb"link|style|script|br|img|form|header|nav|blockquote|pre)[\s>/]",
    re.I | re.S,
)


def sniff(path: str, *, filename: str | None, content_type: str | None) -> str:
    """Return the detected type; raise PermanentError(unsupported_type|empty|corrupt)."""
    with open(path, "rb") as fh:
        head = fh.read(8192)
    if not head:
        raise PermanentError("the file is empty", error_code="empty")
    if PDF_MAGIC in head[:1024]:
        return "pdf"
    if head.startswith(ZIP_MAGIC):
        return _sniff_zip(path)
    if head.startswith(OLE_MAGIC):
        if _encrypted_ooxml(path):
            raise PermanentError(
                "the document is password-protected (an encrypted Office package)", error_code="encrypted"
            )
        raise PermanentError(
            f"a legacy binary Office file ({_ole_kind(head, filename)}); save it as DOCX, XLSX or PPTX",
            error_code="unsupported_type",
        )
    if head.startswith(IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return "image"
    if head.lstrip().startswith(b"{\\rtf"):
        return "rtf"
    if _looks_like_text(head):
        name = (filename or "").lower()
        kind = (content_type or "").lower()
        start = head.lstrip(b"\xef\xbb\xbf")
        if (
            _HTML_START.match(start)
            or _HTML_FRAGMENT.match(start)
            or (
                (
                    name.endswith((".html", ".htm", ".xhtml"))
                    or kind.startswith(("text/html", "application/xhtml"))
                )
                and start.lstrip().startswith(b"<")
            )
        ):
            return "html"
        if name.endswith((".md", ".markdown")) or kind.startswith("text/markdown"):
            return "markdown"
        if _looks_like_csv(head, name, kind):
            return "csv"
        return "text"
    raise PermanentError(
        "unsupported file type (not a document, image or text)", error_code="unsupported_type"
    )


def _sniff_zip(path: str) -> str:
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if "mimetype" in names:
                mimetype = zf.read("mimetype")[:200].decode("ascii", "replace").strip()
                if mimetype in _ODF:
                    return _ODF[mimetype]
                if mimetype == "application/epub+zip":
                    return "epub"
            content_types = (
                zf.read("[Content_Types].xml")[:200_000] if "[Content_Types].xml" in names else b""
            )
    except (zipfile.BadZipFile, OSError, ValueError, KeyError) as exc:
        raise PermanentError(f"a damaged ZIP/Office container: {exc}", error_code="corrupt") from None
    text = content_types.decode("utf-8", "replace")
    for marker, kind in _OOXML_MAIN.items():
        if marker in text:
            return kind
    if content_types and any(n.startswith("word/") for n in names):
        return "docx"
    if content_types and "_rels/.rels" in names:
        return "docx"  # renamed main part; extract follows the relationship
    raise PermanentError(
        "a ZIP archive that is not an Office or OpenDocument file", error_code="unsupported_type"
    )


def _encrypted_ooxml(path: str) -> bool:
    """A password-protected DOCX/XLSX/PPTX is an OLE2 container with an ``EncryptedPackage`` stream (MS-OFFCRYPTO)."""
    with open(path, "rb") as fh:
        directory = fh.read(4 << 20)  # the directory sectors of any real file are within the first MBs
    return "EncryptedPackage".encode("utf-16-le") in directory


def _ole_kind(head: bytes, filename: str | None) -> str:
    name = (filename or "").lower()
    for suffix, kind in (
        (".doc", "Word 97-2003 .doc"),
        (".xls", "Excel 97-2003 .xls"),
        (".ppt", "PowerPoint 97-2003 .ppt"),
    ):
        if name.endswith(suffix):
            return kind
    return "Word/Excel/PowerPoint 97-2003"


def _looks_like_text(head: bytes) -> bool:
    if head.startswith((b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf")):
        return True
    if b"\x00" in head:
        return False
    controls = sum(1 for b in head if b in _TEXT_CONTROL)
    return controls <= len(head) // 100


def _looks_like_csv(head: bytes, name: str, content_type: str) -> bool:
    """Rows of the same number of cells split by one delimiter (``,``, ``;``, tab, ``|``)."""
    if name.endswith((".csv", ".tsv")) or content_type in ("text/csv", "text/tab-separated-values"):
        return True
    sample = head.decode("utf-8", "replace")
    lines = [line for line in sample.splitlines()[:20] if line.strip()]
    if len(lines) < 3:
        return False
    try:
        dialect = csv.Sniffer().sniff("\n".join(lines), delimiters=",;\t|")
    except csv.Error:
        return False
    widths = {len(row) for row in csv.reader(lines, dialect)}
    return len(widths) == 1 and widths.pop() >= 2
