"""Office, OpenDocument and markup files to Markdown (worker_service.assets.markdown), structure kept.

Runs in the hard-limited extraction child like PDF: the same time and memory caps.  Every package (DOCX,
XLSX, PPTX, ODT/ODS/ODP) passes the zip-bomb guard first (entries, declared uncompressed size, ratio);
spreadsheets stop at ``max_cells`` cells and say so in the text (``truncated``).  Each extractor returns
``{"text", "pages", "no_text"}`` (``pages``: sheets or slides where the format has them).

* DOCX: headings (Title, Heading 1-6), lists with their levels, tables as pipe tables, footnotes and
  endnotes after the body (python-docx; strict OOXML and renamed main parts fall back to the runs' text).
* XLSX/XLSM: every sheet in order, the cached values of formulas (openpyxl ``data_only``), a table each.
* PPTX: slides in order, the title as a heading, text frames with their bullet levels, tables, speaker notes.
* ODT/ODS/ODP: the same from ``content.xml`` (headings, lists, tables; sheets; slides).
* RTF: the code page of ``\\ansicpg`` for ``\\'xx`` escapes, Unicode escapes (striprtf).
* HTML: the readable content only (no script, style, navigation, header, footer, forms), headings, lists, tables.
* CSV/TSV: the delimiter and encoding detected, a table.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any
from xml.etree import ElementTree

from worker_service.assets import markdown as md
from worker_service.errors import PermanentError


def _result(blocks: list[str], pages: int | None = None) -> dict[str, Any]:
    text = md.join(blocks)
    return {"text": text, "pages": pages, "no_text": not re.sub(r"<!--.*?-->|[\s|#\-]", "", text)}


def check_package(
    zf: zipfile.ZipFile, *, max_entries: int, max_uncompressed: int, max_ratio: int, kind: str
) -> None:
    """Zip-bomb guard from the declared sizes (zipfile stops reading at the declared size)."""
    infos = zf.infolist()
    if len(infos) > max_entries:
        raise PermanentError(
            f"the {kind} has {len(infos)} zip entries; the limit is {max_entries}", error_code="too_large"
        )
    total = sum(i.file_size for i in infos)
    if total > max_uncompressed:
        raise PermanentError(
            f"the {kind} expands to {total // 2**20} MB; the limit is {max_uncompressed // 2**20} MB",
            error_code="too_large",
        )
    for info in infos:
        if info.file_size > 1_000_000 and info.file_size > max_ratio * max(info.compress_size, 1):
            raise PermanentError(
                f"{info.filename} has a compression ratio above {max_ratio}:1", error_code="too_large"
            )


def _opened(path: str, kind: str, limits: dict[str, Any]) -> None:
    try:
        with zipfile.ZipFile(path) as zf:
            check_package(
                zf,
                max_entries=limits["docx_max_entries"],
                max_uncompressed=limits["docx_max_uncompressed_mb"] * 1024 * 1024,
                max_ratio=limits["docx_max_ratio"],
                kind=kind,
            )
    except zipfile.BadZipFile as exc:
        raise PermanentError(f"not a readable {kind}: {exc}", error_code="corrupt") from None


# --- DOCX ------------------------------------------------------------------------------------------
_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_M = "{http://schemas.openxmlformats.org/officeDocument/2006/math}"
_W14 = "{http://schemas.microsoft.com/office/word/2010/wordml}"
_MC_FALLBACK = "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"
#: the glyphs Word draws for a checkbox content control (its state is read from the control instead)
_BOX_GLYPHS = str.maketrans("", "", "\u2610\u2611\u2612")


def docx_markdown(path: str) -> str | None:
    """The body of a (transitional) DOCX as Markdown; None when python-docx cannot read it.  Everything Word shows
    is read: paragraphs and tables inside content controls, text boxes (once: their VML fallback copy is
    skipped), tables nested in cells (each its own table after the outer one), equations' text, checkbox states
    (``[x]``/``[ ]``); deleted text of tracked changes is not."""
    import docx

    try:
        document = docx.Document(path)
    except Exception:  # noqa: BLE001 - strict OOXML, renamed main part...: the caller reads the runs itself
        return None
    blocks = _docx_blocks(document.element.body, document)
    # consecutive list items belong to one list: no blank line between them
    return re.sub(r"(?m)^(\s*(?:-|1\.) .*)\n\n(?=\s*(?:-|1\.) )", r"\1\n", md.join(blocks))


def _docx_blocks(container: Any, document: Any) -> list[str]:
    """Markdown blocks of a body, a content control's content, a text box or a table cell, in order."""
    from docx.text.paragraph import Paragraph

    blocks: list[str] = []
    for child in container.iterchildren():
        tag = child.tag if isinstance(child.tag, str) else ""
        if tag == f"{_W}p":
            boxes: list[Any] = []
            blocks.append(_docx_paragraph(Paragraph(child, document), _inline_text(child, boxes)))
            for box in boxes:  # a text box anchored in the paragraph: its own paragraphs, after it
                blocks += _docx_blocks(box, document)
        elif tag == f"{_W}tbl":
            blocks += _docx_table(child, document)
        elif tag == f"{_W}sdt":
            content = child.find(f"{_W}sdtContent")
            if content is not None:
                blocks += _docx_blocks(content, document)
        elif tag in (f"{_W}customXml", f"{_W}smartTag"):
            blocks += _docx_blocks(child, document)
    return blocks


def _inline_text(element: Any, boxes: list[Any]) -> str:
    """The text of a paragraph as Word shows it: runs, inline content controls, hyperlinks, fields' results,
    equations, symbols, checkbox states; text boxes are collected into ``boxes`` instead (read after)."""
    parts: list[str] = []

    def walk(node: Any) -> None:
        for child in node:
            tag = child.tag if isinstance(child.tag, str) else ""
            if tag == _MC_FALLBACK or tag == f"{_W}delText" or tag == f"{_W}instrText":
                continue  # a second copy of a text box; deleted text; a field's code (its result is read)
            if tag == f"{_W}txbxContent":
                boxes.append(child)
            elif tag in (f"{_W}t", f"{_M}t"):
                parts.append(child.text or "")
            elif tag == f"{_W}tab":
                parts.append("\t")
            elif tag in (f"{_W}br", f"{_W}cr"):
                parts.append("\n")
            elif tag == f"{_W}sym":
                parts.append(_symbol(child.get(f"{_W}char") or ""))
            elif tag == f"{_W}sdt" and (state := _checkbox(child)) is not None:
                inner: list[str] = []
                content = child.find(f"{_W}sdtContent")
                if content is not None:
                    inner.append(_inline_text(content, boxes).translate(_BOX_GLYPHS))
                parts.append(" ".join(x for x in (state, "".join(inner).strip()) if x))
            else:
                walk(child)

    walk(element)
    return "".join(parts)


def _symbol(code: str) -> str:
    """A ``w:sym`` character: Unicode when it is one (checkbox glyphs included), else nothing (a symbol font's
    private code has no meaning as text)."""
    try:
        value = int(code, 16)
    except ValueError:
        return ""
    return "" if 0xE000 <= value <= 0xF8FF else chr(value)


def _checkbox(sdt: Any) -> str | None:
    """``[x]``/``[ ]`` for a checkbox content control, None for any other control."""
    properties = sdt.find(f"{_W}sdtPr")
    box = properties.find(f"{_W14}checkbox") if properties is not None else None
    if box is None:
        return None
    checked = box.find(f"{_W14}checked")
    return "[x]" if checked is not None and checked.get(f"{_W14}val") in ("1", "true") else "[ ]"


def _docx_table(element: Any, document: Any) -> list[str]:
    """The table (one row a line, a merged cell once), then each table nested in its cells as its own."""
    from docx.table import Table

    nested: list[str] = []
    rows = []
    for row in Table(element, document).rows:
        cells = []
        for cell in _unique_cells(row.cells):
            texts: list[str] = []
            for block in _docx_blocks(cell._tc, document):
                (nested if block.startswith("|") else texts).append(block)
            cells.append(" ".join(texts))
        rows.append(cells)
    return [md.table(rows), *nested]


def _unique_cells(cells: Any) -> list[Any]:
    """A merged cell is returned once per grid column it spans: keep it once."""
    seen: list[Any] = []
    for cell in cells:
        if not seen or cell._tc is not seen[-1]._tc:
            seen.append(cell)
    return seen


def _docx_paragraph(paragraph: Any, text: str) -> str:
    if not text.strip():
        return ""
    style = (paragraph.style.name if paragraph.style is not None else "") or ""
    if style == "Title":
        return md.heading(text, 1)
    match = re.match(r"Heading (\d)", style)
    if match:
        return md.heading(text, int(match.group(1)))
    numbering = paragraph._p.pPr.numPr if paragraph._p.pPr is not None else None
    if numbering is not None or style.startswith("List"):
        level = int(numbering.ilvl.val) if numbering is not None and numbering.ilvl is not None else 0
        return md.list_item(text, level, ordered="Number" in style)
    return text


# --- XLSX ------------------------------------------------------------------------------------------
def extract_xlsx(path: str, limits: dict[str, Any]) -> dict[str, Any]:
    import openpyxl

    _opened(path, "XLSX", limits)
    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - openpyxl raises many types on damaged files
        raise PermanentError(
            f"not a readable XLSX: {type(exc).__name__}: {exc}", error_code="corrupt"
        ) from None
    budget = _CellBudget(limits["max_cells"])
    blocks: list[str] = []
    # a formula saved without its value (openpyxl and some generators do that) would come out empty: say so
    formulas = (
        openpyxl.load_workbook(path, read_only=True, data_only=False) if _uncached_formulas(path) else None
    )
    try:
        for number, sheet in enumerate(workbook.worksheets, start=1):
            blocks += [md.marker("sheet", number, sheet.title), md.heading(sheet.title, 2)]
            rows = sheet.iter_rows(values_only=True)
            if formulas is not None:
                rows = _marked(rows, formulas.worksheets[number - 1].iter_rows(values_only=True))
            blocks.append(md.table(budget.rows(rows)))
            if budget.exhausted:
                blocks.append(budget.note())
                break
        sheets = len(workbook.worksheets)
    finally:
        workbook.close()
        if formulas is not None:
            formulas.close()
    return {**_result(blocks, sheets), "truncated": budget.exhausted}


_UNCACHED_FORMULA = re.compile(rb"<f>[^<]*</f>\s*(?:<v\s*/>|<v>\s*</v>)?\s*</c>")


def _uncached_formulas(path: str) -> bool:
    """Whether a worksheet has a formula cell with no value saved (read from the XML; cheap next to a parse)."""
    with zipfile.ZipFile(path) as zf:
        return any(
            _UNCACHED_FORMULA.search(zf.read(name))
            for name in zf.namelist()
            if name.startswith("xl/worksheets/") and name.endswith(".xml")
        )


def _marked(
    cached: Iterator[tuple[Any, ...]], formulas: Iterator[tuple[Any, ...]]
) -> Iterator[tuple[Any, ...]]:
    """The cached values, a formula with none shown as ``[=C2*D2: no saved value]`` instead of an empty cell."""
    from itertools import zip_longest

    for values, sources in zip_longest(cached, formulas, fillvalue=()):
        yield tuple(
            f"[{source}: no saved value]"
            if value is None and isinstance(source, str) and source.startswith("=")
            else value
            for value, source in zip_longest(values, sources)
        )


class _CellBudget:
    """At most ``limit`` cells over a whole workbook; rows trimmed of empty trailing cells, empty rows dropped."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.exhausted = False

    def rows(self, rows: Any) -> Iterator[list[object]]:
        for row in rows:
            values = list(row)
            while values and values[-1] in (None, ""):
                values.pop()
            if not values:
                continue
            self.used += len(values)
            if self.used > self.limit:
                self.exhausted = True
                return
            yield [_value(v) for v in values]

    def note(self) -> str:
        return f"[truncated: the document has more than {self.limit} cells; the rest is not extracted]"


def _value(value: object) -> object:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if hasattr(value, "isoformat"):
        text = value.isoformat()
        return text.removesuffix("T00:00:00")
    return value


# --- PPTX ------------------------------------------------------------------------------------------
def extract_pptx(path: str, limits: dict[str, Any]) -> dict[str, Any]:
    from pptx import Presentation

    _opened(path, "PPTX", limits)
    try:
        presentation = Presentation(path)
    except Exception as exc:  # noqa: BLE001
        raise PermanentError(
            f"not a readable PPTX: {type(exc).__name__}: {exc}", error_code="corrupt"
        ) from None
    blocks: list[str] = []
    skipped = 0
    slides = list(presentation.slides)
    for number, slide in enumerate(slides, start=1):
        blocks.append(md.marker("slide", number))
        try:
            title = slide.shapes.title
            title_id = title.shape_id if title is not None else None
            if title is not None and title.has_text_frame and title.text_frame.text.strip():
                blocks.append(md.heading(title.text_frame.text, 2))
        except Exception as exc:  # noqa: BLE001 - python-pptx raises NotImplementedError and more on odd shapes
            title_id, skipped = None, skipped + 1
            blocks.append(md.skipped("a slide title", f"{type(exc).__name__}: {exc}"))
        for shape in _shapes(slide.shapes):
            if title_id is not None and shape.shape_id == title_id:
                continue
            try:
                blocks.append(_pptx_shape(shape))
            except Exception as exc:  # noqa: BLE001 - one shape python-pptx cannot read; the rest is kept
                skipped += 1
                blocks.append(md.skipped("a shape", f"{type(exc).__name__}: {exc}"))
        try:
            if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
                notes = slide.notes_slide.notes_text_frame.text.strip()
                if notes:
                    blocks.append(f"Notes: {notes}")
        except Exception as exc:  # noqa: BLE001
            skipped += 1
            blocks.append(md.skipped("the slide's notes", f"{type(exc).__name__}: {exc}"))
    return {**_result(blocks, len(slides)), "parts_skipped": skipped}


def _shapes(shapes: Any) -> Iterator[Any]:
    for shape in shapes:
        try:
            group = shape.shape_type == 6  # MSO_SHAPE_TYPE.GROUP
        except Exception:  # noqa: BLE001 - an unrecognised shape has no type (NotImplementedError): not a group
            group = False
        if group:
            yield from _shapes(shape.shapes)
        else:
            yield shape


def _pptx_shape(shape: Any) -> str:
    if getattr(shape, "has_table", False) and shape.has_table:
        return md.table([cell.text for cell in row.cells] for row in shape.table.rows)
    if getattr(shape, "has_text_frame", False) and shape.has_text_frame:
        lines = []
        for paragraph in shape.text_frame.paragraphs:
            text = paragraph.text
            if text.strip():
                lines.append(md.list_item(text, paragraph.level) if paragraph.level else text.strip())
        return "\n".join(lines)
    return ""


# --- OpenDocument --------------------------------------------------------------------------------------
_NS = {
    "office": "urn:oasis:names:tc:opendocument:xmlns:office:1.0",
    "text": "urn:oasis:names:tc:opendocument:xmlns:text:1.0",
    "table": "urn:oasis:names:tc:opendocument:xmlns:table:1.0",
    "draw": "urn:oasis:names:tc:opendocument:xmlns:drawing:1.0",
    "presentation": "urn:oasis:names:tc:opendocument:xmlns:presentation:1.0",
}


def _q(name: str) -> str:
    prefix, local = name.split(":")
    return f"{{{_NS[prefix]}}}{local}"


def extract_odf(path: str, kind: str, limits: dict[str, Any]) -> dict[str, Any]:
    _opened(path, kind.upper(), limits)
    try:
        with zipfile.ZipFile(path) as zf:
            root = ElementTree.fromstring(zf.read("content.xml"))
    except (KeyError, ElementTree.ParseError, zipfile.BadZipFile) as exc:
        raise PermanentError(
            f"not a readable {kind.upper()}: {type(exc).__name__}: {exc}", error_code="corrupt"
        ) from None
    body = root.find(_q("office:body"))
    if body is None:
        raise PermanentError(f"the {kind.upper()} has no body", error_code="corrupt")
    budget = _CellBudget(limits["max_cells"])
    blocks: list[str] = []
    pages = None
    if kind == "ods":
        sheets = body.findall(f"{_q('office:spreadsheet')}/{_q('table:table')}")
        for number, sheet in enumerate(sheets, start=1):
            name = sheet.get(_q("table:name"))
            blocks += [
                md.marker("sheet", number, name),
                md.heading(name or f"Sheet {number}", 2),
                md.table(budget.rows(_odf_rows(sheet))),
            ]
            if budget.exhausted:
                blocks.append(budget.note())
                break
        pages = len(sheets)
    elif kind == "odp":
        slides = body.findall(f"{_q('office:presentation')}/{_q('draw:page')}")
        for number, slide in enumerate(slides, start=1):
            blocks.append(md.marker("slide", number))
            blocks += _odf_blocks(slide, budget)
        pages = len(slides)
    else:
        text = body.find(_q("office:text"))
        blocks += _odf_blocks(text if text is not None else body, budget)
    return {**_result(blocks, pages), "truncated": budget.exhausted}


def _odf_text(element: ElementTree.Element) -> str:
    """The text of an ODF element: spans joined, ``text:s`` as spaces, tabs and line breaks kept."""
    parts = [element.text or ""]
    for child in element:
        if child.tag == _q("text:s"):
            parts.append(" " * int(child.get(_q("text:c"), "1")))
        elif child.tag == _q("text:tab"):
            parts.append("\t")
        elif child.tag == _q("text:line-break"):
            parts.append("\n")
        elif child.tag not in (_q("text:note"),):
            parts.append(_odf_text(child))
        parts.append(child.tail or "")
    return "".join(parts)


def _odf_blocks(container: ElementTree.Element, budget: _CellBudget, level: int = 0) -> list[str]:
    blocks: list[str] = []
    for child in container:
        if child.tag == _q("text:h"):
            blocks.append(md.heading(_odf_text(child), int(child.get(_q("text:outline-level"), "1"))))
        elif child.tag == _q("text:p"):
            blocks.append(_odf_text(child).strip())
        elif child.tag == _q("text:list"):
            blocks.append("\n".join(_odf_list(child, level)))
        elif child.tag == _q("table:table"):
            blocks.append(md.table(budget.rows(_odf_rows(child))))
        elif child.tag in (
            _q("draw:frame"),
            _q("draw:text-box"),
            _q("draw:custom-shape"),
            _q("text:section"),
            _q("draw:g"),
        ):
            blocks += _odf_blocks(child, budget, level)
    return blocks


def _odf_list(element: ElementTree.Element, level: int) -> list[str]:
    items: list[str] = []
    for item in element.findall(_q("text:list-item")):
        for child in item:
            if child.tag == _q("text:list"):
                items += _odf_list(child, level + 1)
            elif child.tag in (_q("text:p"), _q("text:h")):
                items.append(md.list_item(_odf_text(child), level))
    return [i for i in items if i]


def _odf_rows(table: ElementTree.Element) -> Iterator[list[str]]:
    """Rows with ``number-rows-repeated`` / ``number-columns-repeated`` expanded (capped: a sheet may declare
    a million repeated empty rows to fill its grid)."""
    for row in table.iter(_q("table:table-row")):
        cells: list[str] = []
        for cell in row:
            if cell.tag not in (_q("table:table-cell"), _q("table:covered-table-cell")):
                continue
            value = "\n".join(_odf_text(p) for p in cell.findall(_q("text:p")))
            repeat = min(int(cell.get(_q("table:number-columns-repeated"), "1")), 1024)
            cells += [value] * (repeat if value else min(repeat, 1))
        repeat_rows = min(int(row.get(_q("table:number-rows-repeated"), "1")), 1024)
        for _ in range(repeat_rows if any(cells) else 1):
            yield cells


# --- RTF ------------------------------------------------------------------------------------------
def extract_rtf(path: str) -> dict[str, Any]:
    from striprtf.striprtf import rtf_to_text

    with open(path, "rb") as fh:
        raw = fh.read().decode("latin-1")
    match = re.search(r"\\ansicpg(\d+)", raw[:4096])
    encoding = f"cp{match.group(1)}" if match else "cp1252"
    try:
        "".encode(encoding)
    except LookupError:
        encoding = "cp1252"
    try:
        text = rtf_to_text(raw, encoding=encoding, errors="replace")
    except Exception as exc:  # noqa: BLE001 - a damaged group structure
        raise PermanentError(
            f"not a readable RTF: {type(exc).__name__}: {exc}", error_code="corrupt"
        ) from None
    text = re.sub(r"\n{3,}", "\n\n", text.replace("\r\n", "\n")).strip()
    return _result([text])


# --- HTML -----------------------------------------------------------------------------------------
_CHROME = (
    "script",
    "style",
    "noscript",
    "template",
    "nav",
    "header",
    "footer",
    "aside",
    "form",
    "svg",
    "iframe",
    "button",
    "select",
    "object",
    "embed",
    "canvas",
    "menu",
)


def extract_html(path: str, decode: Any) -> dict[str, Any]:
    import lxml.html

    with open(path, "rb") as fh:
        data = fh.read()
    declared = re.search(rb"<meta[^>]+charset=[\"']?([A-Za-z0-9_\-]+)", data[:4096], re.I)
    try:
        text = data.decode(declared.group(1).decode()) if declared else decode(data)
    except (LookupError, UnicodeDecodeError):
        text = decode(data)
    text = re.sub(r"^\s*<\?xml[^>]*\?>", "", text)
    try:
        root = lxml.html.document_fromstring(text)
    except Exception as exc:  # noqa: BLE001 - lxml's parser errors
        raise PermanentError(f"not readable HTML: {exc}", error_code="corrupt") from None
    blocks = _html_page_blocks(root)
    title = root.xpath("string(//title)").strip()
    if title and not any(b.startswith("# ") for b in blocks):
        blocks.insert(0, md.heading(title, 1))
    return _result(blocks)


def _html_page_blocks(root: Any) -> list[str]:
    """A parsed page's readable content as Markdown blocks: chrome, comments and scripts dropped."""
    for element in root.xpath(
        "|".join(f"//{tag}" for tag in _CHROME) + "|//*[@role='navigation']|//*[@hidden]"
    ):
        element.drop_tree()
    for other in root.xpath(
        "//comment()|//processing-instruction()"
    ):  # not text; lxml cannot read their content
        other.drop_tree()
    for br in root.iter("br"):  # a line break separates words wherever it sits, inside inline elements too
        br.tail = "\n" + (br.tail or "")
    main = root.xpath("//main") or root.xpath("//article") or root.xpath("//body") or [root]
    return _html_blocks(main[0])


def _html_blocks(element: Any) -> list[str]:
    blocks: list[str] = []
    inline: list[str] = []

    def flush() -> None:
        text = re.sub(r"\s+", " ", "".join(inline)).strip()
        if text:
            blocks.append(text)
        inline.clear()

    inline.append(element.text or "")
    for child in element:
        tag = child.tag if isinstance(child.tag, str) else ""
        if re.fullmatch(r"h[1-6]", tag):
            flush()
            blocks.append(md.heading(child.text_content(), int(tag[1])))
        elif tag in ("ul", "ol"):
            flush()
            blocks.append("\n".join(_html_list(child, 0)))
        elif tag == "table":
            flush()
            blocks += _html_table(child)
        elif tag == "pre":
            flush()
            blocks.append("```\n" + child.text_content().strip("\n") + "\n```")
        elif tag == "br":
            inline.append("\n")
        elif tag in (
            "p",
            "div",
            "section",
            "blockquote",
            "main",
            "article",
            "dl",
            "figure",
            "li",
            "dd",
            "dt",
            "address",
            "details",
            "center",
        ):
            flush()
            blocks += _html_blocks(child)
        else:
            inline.append(child.text_content())
        inline.append(child.tail or "")
    flush()
    return blocks


def _html_table(table: Any) -> list[str]:
    """The table as Markdown, every cell in the column its rowspan and colspan put it in (a spanned place is left
    empty), then each table nested in a cell as a table of its own (its text kept out of the cell)."""
    nested: list[str] = []
    grid: dict[tuple[int, int], str] = {}
    rows = table.xpath("./tr|./thead/tr|./tbody/tr|./tfoot/tr")
    for r, row in enumerate(rows):
        c = 0
        for cell in row.xpath("./th|./td"):
            for inner in [t for t in cell.iter("table") if next(t.iterancestors("table"), None) is table]:
                nested += _html_table(inner)  # its own nested tables come out of this call
                inner.drop_tree()
            while (r, c) in grid:
                c += 1
            rowspan, colspan = _span(cell.get("rowspan")), _span(cell.get("colspan"))
            for dr in range(rowspan):
                for dc in range(colspan):
                    grid[(r + dr, c + dc)] = (
                        "" if dr or dc else re.sub(r"\s+", " ", cell.text_content()).strip()
                    )
            c += colspan
    if not grid:
        return nested
    height, width = max(r for r, _ in grid) + 1, max(c for _, c in grid) + 1
    return [md.table([grid.get((r, c), "") for c in range(width)] for r in range(height)), *nested]


def _span(value: str | None) -> int:
    """A rowspan or colspan attribute as a count (1 when absent or absurd: a page may say colspan=10000)."""
    return int(value) if value and value.strip().isdigit() and 1 <= int(value) <= 100 else 1


def _html_list(element: Any, level: int) -> list[str]:
    items: list[str] = []
    ordered = element.tag == "ol"
    for item in element.xpath("./li"):
        nested = item.xpath("./ul|./ol")
        for sub in nested:
            sub.drop_tree()
        items.append(md.list_item(item.text_content(), level, ordered))
        for sub in nested:
            items += _html_list(sub, level + 1)
    return [i for i in items if i]


# --- EPUB ----------------------------------------------------------------------------------------
_OPF = "{http://www.idpf.org/2007/opf}"


def extract_epub(path: str, decode: Any, limits: dict[str, Any]) -> dict[str, Any]:
    """An EPUB book: its chapters (XHTML) in reading order (the package's spine), each read as HTML, each after a
    ``<!-- chapter N -->`` marker; the same package limits as Office files."""
    import lxml.html
    from lxml import etree

    _opened(path, "EPUB", limits)
    blocks: list[str] = []
    with zipfile.ZipFile(path) as zf:
        container = etree.fromstring(zf.read("META-INF/container.xml"))
        rootfile = container.find(".//{urn:oasis:names:tc:opendocument:xmlns:container}rootfile")
        if rootfile is None or not rootfile.get("full-path"):
            raise PermanentError("the EPUB names no package document", error_code="corrupt")
        opf_name = rootfile.get("full-path", "")
        package = etree.fromstring(zf.read(opf_name))
        folder = str(PurePosixPath(opf_name).parent)
        items = {item.get("id"): item.get("href") for item in package.iter(f"{_OPF}item")}
        chapters = [items.get(ref.get("idref")) for ref in package.iter(f"{_OPF}itemref")]
        names = set(zf.namelist())
        for number, href in enumerate((h for h in chapters if h), start=1):
            name = str(PurePosixPath(folder) / href) if folder not in ("", ".") else href
            if name not in names:
                continue
            text = decode(zf.read(name))
            root = lxml.html.document_fromstring(re.sub(r"^\s*<\?xml[^>]*\?>", "", text))
            blocks.append(md.marker("chapter", number))
            blocks += _html_page_blocks(root)
    return _result(blocks, len(chapters))


# --- CSV / TSV ------------------------------------------------------------------------------------
def extract_csv(path: str, decode: Any, limits: dict[str, Any]) -> dict[str, Any]:
    with open(path, "rb") as fh:
        text = decode(fh.read())
    sample = "\n".join(text.splitlines()[:50])
    try:
        dialect: Any = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel_tab if sample.count("\t") > sample.count(",") else csv.excel
    budget = _CellBudget(limits["max_cells"])
    rows = budget.rows(csv.reader(io.StringIO(text), dialect))
    blocks = [md.table(rows)]
    if budget.exhausted:
        blocks.append(budget.note())
    return {**_result(blocks), "truncated": budget.exhausted}
