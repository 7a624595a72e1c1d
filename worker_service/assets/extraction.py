"""Text extraction.  Runs inside the hard-limited child (sandbox), never in the worker.

``extract(path, detected_type, limits)`` returns a dict with ``text``,
``pages``, ``no_text``; failures raise PermanentError with the pinned
error codes (``encrypted``, ``corrupt``, ``too_many_pages``, ``too_large``,
``unsupported_type``).
"""

from __future__ import annotations

import codecs
import io
import re
import zipfile
from pathlib import PurePosixPath
from typing import Any
from xml.etree import ElementTree

from worker_service.errors import PermanentError

#: below this many non-whitespace characters per page a PDF has no usable text layer
NO_TEXT_CHARS_PER_PAGE = 10
_W_NS_LOCAL_TEXT = {"t", "delText"}


def extract(path: str, detected_type: str, limits: dict[str, Any]) -> dict[str, Any]:
    if detected_type == "pdf":
        return extract_pdf(path, max_pages=limits["max_pdf_pages"], tables=limits.get("pdf_tables", False))
    if detected_type == "docx":
        return extract_docx(path, max_entries=limits["docx_max_entries"],
                            max_uncompressed=limits["docx_max_uncompressed_mb"] * 1024 * 1024,
                            max_ratio=limits["docx_max_ratio"])
    if detected_type in ("text", "markdown"):
        with open(path, "rb") as fh:
            text = decode_text(fh.read())
        return {"text": text, "pages": None, "no_text": not text.strip()}
    raise PermanentError(f"no extractor for {detected_type}", error_code="unsupported_type")


# --- PDF -----------------------------------------------------------------------------------
def extract_pdf(path: str, *, max_pages: int, tables: bool = False) -> dict[str, Any]:
    import pypdfium2 as pdfium

    declared = declared_page_count(path)
    if declared > max_pages:
        raise PermanentError(f"the PDF declares {declared} pages; the limit is {max_pages}", error_code="too_many_pages")
    try:
        pdf = pdfium.PdfDocument(path)
    except pdfium.PdfiumError as exc:
        if "password" in str(exc).lower():
            raise PermanentError("the PDF is password-protected", error_code="encrypted") from None
        # PDFium refuses some damaged files that pdfminer can still read (e.g. broken metadata).
        return _pdfminer_fallback(path, max_pages=max_pages, reason=str(exc))
    try:
        pages = len(pdf)
        if pages > max_pages:
            raise PermanentError(f"the PDF has {pages} pages; the limit is {max_pages}", error_code="too_many_pages")
        parts: list[str] = []
        unreadable = 0
        for index in range(pages):
            try:
                parts.append(_page_text(pdf, index))
            except pdfium.PdfiumError:
                parts.append("")
                unreadable += 1
        if pages and unreadable == pages:
            raise PermanentError("no page of the PDF could be read", error_code="corrupt")
    finally:
        pdf.close()
    text = "\n\f".join(p.replace("\r\n", "\n").replace("\r", "\n") for p in parts)
    if tables:
        text += _pdf_tables(path)
    visible = len(re.sub(r"\s", "", text))
    return {"text": text, "pages": pages, "no_text": visible < max(1, pages) * NO_TEXT_CHARS_PER_PAGE}


def declared_page_count(path: str) -> int:
    """The largest /Count of a page tree written in clear in the file (0 if none).

    PDFium walks a flat 50,000-page tree for ~15 s before it can say how many
    pages there are; the declared count refuses such a file at once.  Counts
    hidden in compressed object streams fall through to PDFium's own count.
    """
    with open(path, "rb") as fh:
        data = fh.read()
    counts = [0]
    for match in re.finditer(rb"/Type\s*/Pages\b", data):
        start = data.rfind(b"obj", 0, match.start())
        end = data.find(b"endobj", match.end())
        body = data[start if start >= 0 else 0:end if end >= 0 else len(data)]
        counts += [int(c) for c in re.findall(rb"/Count\s+(\d{1,9})", body)]
    return max(counts)


def _page_text(pdf: Any, index: int) -> str:
    page = pdf[index]
    try:
        textpage = page.get_textpage()
        try:
            return textpage.get_text_range()
        finally:
            textpage.close()
    finally:
        page.close()


def _pdfminer_fallback(path: str, *, max_pages: int, reason: str) -> dict[str, Any]:
    import pdfplumber

    parts: list[str] = []
    try:
        with pdfplumber.open(path) as pdf:
            pages = len(pdf.pages)
            if pages > max_pages:
                raise PermanentError(f"the PDF has {pages} pages; the limit is {max_pages}",
                                     error_code="too_many_pages")
            for page in pdf.pages:
                try:
                    parts.append(page.extract_text() or "")
                finally:
                    page.close()
    except PermanentError:
        raise
    except Exception as exc:  # pdfminer raises many types (TypeError included) on damaged files
        raise PermanentError(f"not a readable PDF: {reason}; pdfminer: {type(exc).__name__}: {exc}",
                             error_code="corrupt") from None
    if not pages:
        raise PermanentError(f"not a readable PDF: {reason}", error_code="corrupt")
    text = "\n\f".join(parts)
    visible = len(re.sub(r"\s", "", text))
    return {"text": text, "pages": pages, "no_text": visible < pages * NO_TEXT_CHARS_PER_PAGE}


def _pdf_tables(path: str) -> str:
    import pdfplumber

    out: list[str] = []
    with pdfplumber.open(path) as pdf:
        for number, page in enumerate(pdf.pages, start=1):
            try:
                for table in page.extract_tables():
                    rows = ["\t".join("" if c is None else str(c) for c in row) for row in table]
                    out.append(f"\n\n[table, page {number}]\n" + "\n".join(rows))
            finally:
                page.close()  # without it pdfplumber keeps every page's objects (1.6 GB on the corpus)
    return "".join(out)


# --- DOCX ------------------------------------------------------------------------------------
def check_docx_zip(zf: zipfile.ZipFile, *, max_entries: int, max_uncompressed: int, max_ratio: int) -> str:
    """Zip-bomb guard from declared sizes (zipfile stops at the declared size); returns the main part name."""
    infos = zf.infolist()
    if len(infos) > max_entries:
        raise PermanentError(f"the DOCX has {len(infos)} zip entries; the limit is {max_entries}",
                             error_code="too_large")
    total = sum(i.file_size for i in infos)
    if total > max_uncompressed:
        raise PermanentError(f"the DOCX expands to {total // 2**20} MB; the limit is {max_uncompressed // 2**20} MB",
                             error_code="too_large")
    for info in infos:
        if info.file_size > 1_000_000 and info.file_size > max_ratio * max(info.compress_size, 1):
            raise PermanentError(f"{info.filename} has a compression ratio above {max_ratio}:1",
                                 error_code="too_large")
    names = {i.filename for i in infos}
    main = _main_part(zf, names)
    if main is None:
        raise PermanentError("the DOCX has no main document part", error_code="corrupt")
    return main


def _main_part(zf: zipfile.ZipFile, names: set[str]) -> str | None:
    if "word/document.xml" in names:
        return "word/document.xml"
    if "_rels/.rels" not in names:
        return None
    try:
        rels = ElementTree.fromstring(zf.read("_rels/.rels"))
    except (ElementTree.ParseError, zipfile.BadZipFile, KeyError):
        return None
    for rel in rels:
        if rel.get("Type", "").endswith("/officeDocument"):
            target = rel.get("Target", "").lstrip("/")
            return target if target in names else None
    return None


def _xml_text(data: bytes) -> str:
    """Text of a WordprocessingML part, any namespace (strict OOXML included): runs joined, paragraphs split."""
    out: list[str] = []
    for _event, elem in ElementTree.iterparse(io.BytesIO(data), events=("end",)):
        local = elem.tag.rsplit("}", 1)[-1]
        if local in _W_NS_LOCAL_TEXT and elem.text:
            out.append(elem.text)
        elif local == "tab":
            out.append("\t")
        elif local in ("br", "cr"):
            out.append("\n")
        elif local == "p":
            out.append("\n")
            elem.clear()
    return "".join(out)


def extract_docx(path: str, *, max_entries: int, max_uncompressed: int, max_ratio: int) -> dict[str, Any]:
    import docx2txt

    try:
        with zipfile.ZipFile(path) as zf:
            main = check_docx_zip(zf, max_entries=max_entries, max_uncompressed=max_uncompressed,
                                  max_ratio=max_ratio)
            names = set(zf.namelist())
            notes = []
            folder = str(PurePosixPath(main).parent)
            for part in ("footnotes.xml", "endnotes.xml"):
                name = f"{folder}/{part}"
                if name in names:
                    notes.append(_xml_text(zf.read(name)).strip())
            main_xml = zf.read(main) if main != "word/document.xml" else None
        text = docx2txt.process(path) if main == "word/document.xml" else ""
        if not text.strip():
            # docx2txt reads only word/document.xml in the transitional namespace: strict OOXML and
            # renamed main parts come back empty, so read the main part ourselves.
            with zipfile.ZipFile(path) as zf:
                text = _xml_text(main_xml if main_xml is not None else zf.read(main))
    except PermanentError:
        raise
    except (zipfile.BadZipFile, KeyError, ElementTree.ParseError, EOFError, ValueError) as exc:
        raise PermanentError(f"not a readable DOCX: {type(exc).__name__}: {exc}", error_code="corrupt") from None
    notes_text = "\n\n".join(n for n in notes if n)
    if notes_text:
        text = f"{text.rstrip()}\n\n{notes_text}"
    return {"text": text, "pages": None, "no_text": not text.strip()}


# --- plain text ----------------------------------------------------------------------------------
def decode_text(data: bytes) -> str:
    """UTF-8 (with or without BOM), UTF-16/32 with BOM, else the best 8-bit guess (Cyrillic-aware)."""
    for bom, encoding in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                          (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
                          (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            return data.decode(encoding, errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    cyrillic = _best_cyrillic(data)
    if cyrillic is not None:
        return cyrillic
    import charset_normalizer

    best = charset_normalizer.from_bytes(data).best()
    return str(best) if best is not None else data.decode("latin-1")


_WELL_FORMED = re.compile(r"^[А-ЯЁ]?[а-яё]+(-[а-яё]+)*$|^[А-ЯЁ]+$")
_CYRILLIC_ENCODINGS = ("cp1251", "koi8_r", "cp866", "iso8859_5", "mac_cyrillic")  # most likely first


def _best_cyrillic(data: bytes) -> str | None:
    """Pick among the Russian 8-bit encodings the one that yields well-formed words; None if not Cyrillic.

    A wrong Cyrillic code page still gives Cyrillic letters, but in impossible
    shapes (case flipped mid-word, symbols inside words), so the share of
    words that look like Russian words tells the encodings apart even in a
    short text, where charset-normalizer guesses wrong (e.g. KOI8-R as Shift-JIS).
    """
    best: tuple[float, int, str] | None = None
    for rank, encoding in enumerate(_CYRILLIC_ENCODINGS):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        words = [w.strip(".,;:!?()[]«»\"'…") for w in text.split()]
        cyrillic_words = [w for w in words if any("\u0400" <= c <= "\u04ff" for c in w)]
        letters = sum(1 for c in text if c.isalpha())
        cyr_letters = sum(1 for c in text if "\u0400" <= c <= "\u04ff")
        if not cyrillic_words or cyr_letters < 0.5 * max(letters, 1):
            continue
        score = sum(1 for w in cyrillic_words if _WELL_FORMED.match(w)) / len(cyrillic_words)
        if best is None or score > best[0]:
            best = (score, rank, text)
    return best[2] if best is not None and best[0] >= 0.6 else None
