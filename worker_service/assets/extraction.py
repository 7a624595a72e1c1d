"""Text extraction.  Runs inside the hard-limited child (worker_service.runtime.hardlimit), never in the worker.

``extract(path, detected_type, limits)`` returns a dict with ``text`` (Markdown: worker_service.assets.markdown),
``pages``, ``no_text``, and for what may be OCRed ``ocr_pages``, ``ocr_languages`` and, when a page needed OCR
that could not run, ``ocr_unavailable`` (the reason); failures raise PermanentError with the pinned error codes
(``encrypted``, ``corrupt``, ``too_many_pages``, ``too_large``, ``unsupported_type``, ``timeout``).

PDF pages are decided one by one: a page with a usable text layer is never OCRed; a page without one (or
whose layer is not text: unmapped glyphs, control characters) that draws an image is rendered at 300 dpi and
OCRed, so a digital PDF with one scanned page gets both, in page order (a blank page costs nothing).  Office, OpenDocument and markup formats are
worker_service.assets.documents; OCR is worker_service.assets.ocr.
"""

from __future__ import annotations

import codecs
import functools
import io
import os
import re
import zipfile
from collections.abc import Callable, Iterable
from pathlib import PurePosixPath
from typing import Any
from xml.etree import ElementTree

from worker_service.errors import PermanentError, TransientError

#: below this many non-whitespace characters per page a PDF has no usable text layer
NO_TEXT_CHARS_PER_PAGE = 10
_W_NS_LOCAL_TEXT = {"t", "delText"}


def extract(path: str, detected_type: str, limits: dict[str, Any]) -> dict[str, Any]:
    """The document's text and facts (runs in the hard-limited child).  A parser library's own exception is the
    document's fault, a permanent ``corrupt`` with the library's reason, never a transient retry: the same bytes
    fail the same way.  OSError (the disk, the temporary file) stays what it is."""
    try:
        return _extract(path, detected_type, limits)
    except (PermanentError, TransientError, OSError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - every parser library raises its own types (and ValueError, KeyError...)
        if _raised_here(exc):
            raise  # a bug of this service's own code, not the document's fault: it must show as one
        library = (type(exc).__module__ or "").split(".")[0] or "builtins"
        raise PermanentError(
            f"not a readable {detected_type}: {library}: {type(exc).__name__}: {str(exc)[:500]}",
            error_code="corrupt",
        ) from None


def _raised_here(exc: BaseException) -> bool:
    """Whether the innermost frame of ``exc`` is this service's code (worker_service/), not a library's."""
    import os.path

    frame = exc.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return frame is not None and os.path.abspath(frame.tb_frame.f_code.co_filename).startswith(here + os.sep)


def _extract(path: str, detected_type: str, limits: dict[str, Any]) -> dict[str, Any]:
    from worker_service.assets import documents

    if detected_type == "pdf":
        return extract_pdf(
            path, max_pages=limits["max_pdf_pages"], tables=limits.get("pdf_tables", False), ocr=_Ocr(limits)
        )
    if detected_type == "docx":
        return extract_docx(
            path,
            max_entries=limits["docx_max_entries"],
            max_uncompressed=limits["docx_max_uncompressed_mb"] * 1024 * 1024,
            max_ratio=limits["docx_max_ratio"],
        )
    if detected_type == "image":
        return extract_image(path, _Ocr(limits), max_pixels=limits["max_image_pixels"])
    if detected_type == "xlsx":
        return documents.extract_xlsx(path, limits)
    if detected_type == "pptx":
        return documents.extract_pptx(path, limits)
    if detected_type in ("odt", "ods", "odp"):
        return documents.extract_odf(path, detected_type, limits)
    if detected_type == "rtf":
        return documents.extract_rtf(path)
    if detected_type == "html":
        return documents.extract_html(path, decode_text)
    if detected_type == "epub":
        return documents.extract_epub(path, decode_text, limits)
    if detected_type == "csv":
        return documents.extract_csv(path, decode_text, limits)
    if detected_type in ("text", "markdown"):
        with open(path, "rb") as fh:
            text = decode_text(fh.read())
        return {"text": text, "pages": None, "no_text": not text.strip()}
    raise PermanentError(f"no extractor for {detected_type}", error_code="unsupported_type")


class OcrSlots:
    """Host-wide tokens for running Tesseract beside a document's own thread: a multi-page scan reads pages in
    parallel on the assets group's idle threads, and as many documents as threads read one page each.

    A token is an exclusive ``flock`` on one of ``count`` files in ``directory`` (the kernel drops it when a
    process dies, a hard-limit kill included).  A document reading pages takes a token for its first page when
    one is free (it reads anyway when none is: it is one of the group's threads) and one more for each further
    page it reads at the same time, never waiting for one.

    Parameters: count (the assets group's threads on this host), directory.
    """

    def __init__(self, count: int, directory: str | None = None) -> None:
        import tempfile

        self.count = max(1, count)
        self.directory = directory or os.path.join(tempfile.gettempdir(), f"worker-ocr-slots-{os.getuid()}")

    def take(self) -> int | None:
        """A held token (a file descriptor), or None when every one is taken."""
        import fcntl

        try:
            os.makedirs(self.directory, exist_ok=True)
        except OSError:
            return None
        for index in range(self.count):
            try:
                fd = os.open(os.path.join(self.directory, f"slot-{index}"), os.O_CREAT | os.O_RDWR, 0o600)
            except OSError:
                return None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except OSError:
                os.close(fd)
        return None

    @staticmethod
    def give(token: int | None) -> None:
        if token is not None:
            os.close(token)


class _Ocr:
    """OCR for the pages that need it, counting them; remembers why it could not run (once per document)."""

    def __init__(self, limits: dict[str, Any]) -> None:
        import threading

        self.languages = str(limits.get("ocr_languages") or "rus+eng")
        self.page_timeout_s = float(limits.get("ocr_page_timeout_seconds") or 60)
        self.progress_path = limits.get("progress_path")
        self.slots = OcrSlots(int(limits.get("ocr_slots") or 1), limits.get("ocr_slots_dir"))
        self.lock = threading.Lock()
        self.pages = 0
        self.low_confidence: list[int] = []  # pages whose reading stayed doubtful
        self.rotated: list[int] = []  # pages turned upright before reading
        self.unavailable: str | None = None
        self.checked = False

    def available(self) -> bool:
        from worker_service.assets import ocr

        if not self.checked:  # once per document, when a page first needs OCR (Tesseract runs anyway on a
            self.checked = True  # missing language, with the others: a silently worse reading)
            self.unavailable = ocr.unavailable_reason(self.languages)
        return self.unavailable is None

    def __call__(self, image: Any, dpi: float | None = None, *, page: int = 1, of: int = 1) -> str:
        from worker_service.assets import ocr

        if not self.available():
            return ""
        try:
            reading = ocr.recognise(
                image, languages=self.languages, page_timeout_s=self.page_timeout_s, dpi=dpi
            )
        except ocr.OcrUnavailable as exc:
            self.unavailable = str(exc)
            return ""
        with self.lock:
            self.pages += 1
            report_progress(self.progress_path, self.pages, of)
            if reading.doubtful:
                self.low_confidence.append(page)
            if reading.rotated:
                self.rotated.append(page)
        return reading.text

    def many(self, pages: Iterable[tuple[int, Callable[[], Any], float | None]], of: int) -> dict[int, str]:
        """The text of each ``(page number, image maker, dpi)``, pages read side by side on free slots (the
        images made here, one by one, only when a slot can take them: at most as many in memory as read)."""
        from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

        if not self.available():
            return {}
        texts: dict[int, str] = {}
        running: dict[Future[str], tuple[int, int | None]] = {}

        def settle(done: Iterable[Future[str]]) -> None:
            for future in done:
                number, token = running.pop(future)
                self.slots.give(token)
                texts[number] = future.result()

        with ThreadPoolExecutor(max_workers=self.slots.count) as pool:
            try:
                for number, make, dpi in pages:
                    token = self.slots.take()
                    while running and token is None:  # beside the first page only on a free slot
                        settle(wait(running, return_when=FIRST_COMPLETED)[0])
                        token = self.slots.take()
                    running[pool.submit(self, make(), dpi, page=number, of=of)] = (number, token)
                settle(list(running))
            finally:
                for _number, token in running.values():
                    self.slots.give(token)
        return texts

    def facts(self) -> dict[str, Any]:
        return {
            "ocr_pages": self.pages,
            "ocr_languages": self.languages if self.pages else None,
            "ocr_low_confidence_pages": self.low_confidence,
            "ocr_rotated_pages": self.rotated,
            **({"ocr_unavailable": self.unavailable} if self.unavailable else {}),
        }


def report_progress(path: str | None, done: int, total: int) -> None:
    """``done total`` pages into the file the worker's ProgressWatch reads (worker_service.assets.progress),
    replaced atomically; a failure only loses the line."""
    if not path:
        return
    try:
        with open(f"{path}.part", "w") as fh:
            fh.write(f"{done} {total}")
        os.replace(f"{path}.part", path)
    except OSError:
        pass


#: what a text layer without a usable font encoding yields: U+FFFD, private-use and control characters
_JUNK = re.compile("[\ufffd\ue000-\uf8ff\U000f0000-\U0010ffff\x00-\x08\x0b\x0e-\x1f\x7f]")


def usable_text_layer(text: str) -> bool:
    """Whether a page's text layer is text: enough characters, mostly not the marks of unmapped glyphs
    (U+FFFD, private-use or control characters, which a layer without a usable font encoding yields)."""
    visible = len("".join(text.split()))
    if visible < NO_TEXT_CHARS_PER_PAGE:
        return False
    return len(_JUNK.findall(text)) <= 0.3 * visible


def _same(value: Any) -> Any:
    return value


# --- images -------------------------------------------------------------------------------------
def extract_image(path: str, ocr: _Ocr, *, max_pixels: int) -> dict[str, Any]:
    from worker_service.assets import markdown as md
    from worker_service.assets import ocr as ocr_module

    image = ocr_module.open_image(path, max_pixels)
    try:
        pages = ocr_module.frames(image)
        dpi = image.info.get("dpi", (None,))[0]
        resolution = float(dpi) if dpi else None
        read = ocr.many(
            ((n, functools.partial(_same, page), resolution) for n, page in enumerate(pages, start=1)),
            of=len(pages),
        )
        texts = [read.get(n, "") for n in range(1, len(pages) + 1)]
    finally:
        image.close()
    if len(pages) == 1:
        text = texts[0]
    else:
        text = md.join(f"{md.marker('page', n)}\n{t}" for n, t in enumerate(texts, start=1))
    visible = len(re.sub(r"<!--.*?-->|\s", "", text))
    return {"text": text, "pages": len(pages), "no_text": visible == 0, **ocr.facts()}


# --- PDF -----------------------------------------------------------------------------------
def extract_pdf(
    path: str, *, max_pages: int, tables: bool = False, ocr: _Ocr | None = None
) -> dict[str, Any]:
    import pypdfium2 as pdfium

    from worker_service.assets import markdown as md

    declared = declared_page_count(path)
    if declared > max_pages:
        raise PermanentError(
            f"the PDF declares {declared} pages; the limit is {max_pages}", error_code="too_many_pages"
        )
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
            raise PermanentError(
                f"the PDF has {pages} pages; the limit is {max_pages}", error_code="too_many_pages"
            )
        parts: list[str] = []
        unreadable = 0
        scanned: list[int] = []  # pages without a usable text layer that draw an image: OCR reads them
        for index in range(pages):
            try:
                page_text = _page_text(pdf, index).replace("\r\n", "\n").replace("\r", "\n")
            except pdfium.PdfiumError:
                page_text = ""
                unreadable += 1
            if ocr is not None and not usable_text_layer(page_text) and _has_images(pdf, index):
                scanned.append(index)
            parts.append(page_text)
        if ocr is not None and scanned:
            # rendered here, one by one as slots free up (PDFium is not thread-safe; Tesseract runs beside)
            read = ocr.many(
                ((i + 1, functools.partial(_render, pdf, i), TARGET_RENDER_DPI) for i in scanned),
                of=len(scanned),
            )
            for index in scanned:
                recognised = read.get(index + 1, "")
                if usable_text_layer(recognised) or not parts[index].strip():
                    parts[index] = recognised
        if pages and unreadable == pages:
            raise PermanentError("no page of the PDF could be read", error_code="corrupt")
    finally:
        pdf.close()
    text = (
        md.join(f"{md.marker('page', n)}\n{p.strip()}" for n, p in enumerate(parts, start=1))
        if pages > 1
        else (parts[0].strip() if parts else "")
    )
    if tables:
        text += _pdf_tables(path)
    visible = len(re.sub(r"<!--.*?-->|\s", "", text))
    facts = ocr.facts() if ocr is not None else {}
    return {
        "text": text,
        "pages": pages,
        "no_text": visible < max(1, pages) * NO_TEXT_CHARS_PER_PAGE,
        **facts,
    }


TARGET_RENDER_DPI = 300


def _has_images(pdf: Any, index: int) -> bool:
    """Whether the page draws any image (a blank or vector-only page has nothing for OCR to read)."""
    import pypdfium2.raw as pdfium_raw

    page = pdf[index]
    try:
        return (
            next(iter(page.get_objects(filter=[pdfium_raw.FPDF_PAGEOBJ_IMAGE], max_depth=4)), None)
            is not None
        )
    finally:
        page.close()


def _render(pdf: Any, index: int) -> Any:
    """The page as a grayscale PIL image at 300 dpi (what OCR reads)."""
    page = pdf[index]
    try:
        return page.render(scale=TARGET_RENDER_DPI / 72, grayscale=True).to_pil()
    finally:
        page.close()


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
        body = data[start if start >= 0 else 0 : end if end >= 0 else len(data)]
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
                raise PermanentError(
                    f"the PDF has {pages} pages; the limit is {max_pages}", error_code="too_many_pages"
                )
            for page in pdf.pages:
                try:
                    parts.append(page.extract_text() or "")
                finally:
                    page.close()
    except PermanentError:
        raise
    except Exception as exc:  # pdfminer raises many types (TypeError included) on damaged files
        raise PermanentError(
            f"not a readable PDF: {reason}; pdfminer: {type(exc).__name__}: {exc}", error_code="corrupt"
        ) from None
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
    """The zip-bomb guard of every Office package (documents.check_package); returns the main part's name."""
    from worker_service.assets.documents import check_package

    check_package(
        zf, max_entries=max_entries, max_uncompressed=max_uncompressed, max_ratio=max_ratio, kind="DOCX"
    )
    main = _main_part(zf, {i.filename for i in zf.infolist()})
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
            main = check_docx_zip(
                zf, max_entries=max_entries, max_uncompressed=max_uncompressed, max_ratio=max_ratio
            )
            names = set(zf.namelist())
            notes = []
            folder = str(PurePosixPath(main).parent)
            for part in ("footnotes.xml", "endnotes.xml"):
                name = f"{folder}/{part}"
                if name in names:
                    notes.append(_xml_text(zf.read(name)).strip())
            main_xml = zf.read(main) if main != "word/document.xml" else None
        text = ""
        if main == "word/document.xml":
            from worker_service.assets.documents import docx_markdown

            # headings, lists and tables as Markdown; docx2txt (plain runs) where python-docx cannot read it
            text = docx_markdown(path) or docx2txt.process(path)
        if not text.strip():
            # docx2txt reads only word/document.xml in the transitional namespace: strict OOXML and
            # renamed main parts come back empty, so read the main part ourselves.
            with zipfile.ZipFile(path) as zf:
                text = _xml_text(main_xml if main_xml is not None else zf.read(main))
    except PermanentError:
        raise
    except (zipfile.BadZipFile, KeyError, ElementTree.ParseError, EOFError, ValueError) as exc:
        raise PermanentError(
            f"not a readable DOCX: {type(exc).__name__}: {exc}", error_code="corrupt"
        ) from None
    notes_text = "\n\n".join(n for n in notes if n)
    if notes_text:
        text = f"{text.rstrip()}\n\n{notes_text}"
    return {"text": text, "pages": None, "no_text": not text.strip()}


# --- plain text ----------------------------------------------------------------------------------
def decode_text(data: bytes) -> str:
    """UTF-8 (with or without BOM), UTF-16/32 with BOM, else the best 8-bit guess (Cyrillic-aware)."""
    for bom, encoding in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
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
