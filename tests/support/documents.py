"""Documents with known text, made here (no file from outside): scans for OCR and office files for the
extractors.  ``python -m tests.support.documents DIR`` writes the whole set into DIR (the benchmark uses it).

Scans: Pillow draws business text in Russian and English (amounts, dates, INN numbers, ``№``, ``ё``,
``«»``) on an A4 page at 300 dpi, and a "photocopy" of it at 200 dpi (about one degree of skew, a slight blur,
grain, JPEG quality 60); both saved as image-only PDFs and as images.  Office files are made with their own
libraries (python-docx, openpyxl, python-pptx) or written by hand (ODF, RTF, HTML, CSV).
"""

from __future__ import annotations

import random
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"

RUSSIAN = [
    "ДОГОВОР ПОСТАВКИ № 47/2026-П",
    "г. Москва                                                                 «15» марта 2026 г.",
    "ООО «Северный ветер», ИНН 7707083893, КПП 770701001, именуемое в дальнейшем «Поставщик»,",
    "в лице генерального директора Ёлкина Петра Семёновича, действующего на основании Устава,",
    "и АО «Промтехснаб», ИНН 5024173259, именуемое в дальнейшем «Покупатель», заключили договор:",
    "1. Поставщик обязуется передать товар: насосы центробежные ЦНС 38-44 в количестве 12 шт.",
    "2. Цена единицы товара составляет 184 350,00 руб., общая сумма договора 2 212 200,00 руб.,",
    "в том числе НДС 20% в размере 368 700,00 руб. Оплата производится до 30.04.2026 г.",
    "3. Срок поставки: не позднее 15 рабочих дней с даты поступления предоплаты на счёт.",
    "4. Счёт № 0318 от 16.03.2026 г. выставлен на расчётный счёт 40702810938000012345.",
    "5. Отгрузка со склада в г. Ярославль, ул. Полевая, д. 8, строение 2, тел. +7 (4852) 58-11-09.",
    "6. Ответственность сторон: пеня 0,1% за каждый день просрочки, но не более 10% от суммы.",
    "Поставщик: Ёлкин П. С.                                   Покупатель: Журавлёва Е. А.",
]
ENGLISH = [
    "INVOICE No. 2026-0415                                                   Date: 04/15/2026",
    "Bill to: Northwind Traders Ltd., 221 Baker Street, London NW1 6XE, United Kingdom",
    "VAT number: GB 123 4567 89          Customer ID: NW-00871          Terms: Net 30",
    "Item 1: Centrifugal pump CP-38, quantity 12, unit price $1,845.50, amount $22,146.00",
    "Item 2: Spare seal kit SK-7, quantity 40, unit price $27.30, amount $1,092.00",
    "Item 3: Installation and commissioning, 16 hours at $95.00, amount $1,520.00",
    "Subtotal: $24,758.00          Sales tax 8.25%: $2,042.54          Total due: $26,800.54",
    "Payment due by May 15, 2026 to account 0048-2231-7765 (routing 021000021).",
    "Questions about this invoice? Call +1 (212) 555-0187 or write to billing@northwind.example.",
    "Thank you for your business. Late payments accrue interest of 1.5% per month.",
]
#: the strings OCR must get exactly: amounts, dates, tax numbers
EXACT = {
    "ru": [
        "7707083893",
        "5024173259",
        "2 212 200,00",
        "368 700,00",
        "30.04.2026",
        "16.03.2026",
        "40702810938000012345",
        "№ 47/2026-П",
    ],
    "en": ["$26,800.54", "$22,146.00", "04/15/2026", "0048-2231-7765", "$2,042.54", "2026-0415"],
}


def reference(language: str) -> str:
    return "\n".join(RUSSIAN if language == "ru" else ENGLISH)


def normalised(text: str) -> str:
    """Whitespace collapsed (OCR's spacing between columns is not an error of the text)."""
    return re.sub(r"\s+", " ", text).strip()


def cer(reference_text: str, hypothesis: str) -> float:
    """Character error rate: edit distance over the reference's length, after whitespace normalisation."""
    ref, hyp = normalised(reference_text), normalised(hypothesis)
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        current = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h))
        previous = current
    return previous[-1] / max(len(ref), 1)


def page(lines: list[str], dpi: int = 300) -> Any:
    """An A4 page with ``lines`` in DejaVu Sans (11 points, smaller if the longest line would not fit between
    the margins), as a grayscale PIL image at ``dpi``."""
    from PIL import Image, ImageDraw, ImageFont

    width, height = round(8.27 * dpi), round(11.69 * dpi)
    margin = round(0.6 * dpi)
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    points = 11.0
    font = ImageFont.truetype(FONT, round(points / 72 * dpi))
    while max(font.getlength(line) for line in lines) > width - 2 * margin:
        points -= 0.5
        font = ImageFont.truetype(FONT, round(points / 72 * dpi))
    y = round(0.9 * dpi)
    for line in lines:
        draw.text((margin, y), line, font=font, fill=0)
        y += round(points * 1.7 / 72 * dpi)
    return image


def photocopy(image: Any, *, dpi: int = 200, seed: int = 7) -> Any:
    """The page as a 200-dpi photocopy: about one degree of skew, a slight blur, grain, JPEG quality 60."""
    import io

    from PIL import Image, ImageFilter

    rng = random.Random(seed)
    scaled = image.resize(
        (round(image.width * dpi / 300), round(image.height * dpi / 300)), Image.Resampling.LANCZOS
    )
    skewed = scaled.rotate(1.0, resample=Image.Resampling.BICUBIC, expand=False, fillcolor=255)
    blurred = skewed.filter(ImageFilter.GaussianBlur(0.6))
    grain = Image.effect_noise(blurred.size, 40)  # gaussian noise around 128
    noisy = Image.blend(blurred, grain, 0.12)  # grain: +-5 grey levels around the page
    pixels = noisy.load()
    assert pixels is not None
    for _ in range(noisy.width * noisy.height // 20_000):  # specks of toner
        x, y = rng.randrange(noisy.width), rng.randrange(noisy.height)
        pixels[x, y] = rng.choice((0, 60))
    buffer = io.BytesIO()
    noisy.save(buffer, format="JPEG", quality=60)
    buffer.seek(0)
    return Image.open(buffer).convert("L")


def image_pdf(images: list[Any], path: Path, dpi: int) -> Path:
    """An image-only PDF (no text layer), one page per image."""
    first, *rest = [i.convert("RGB") for i in images]
    first.save(path, format="PDF", resolution=dpi, save_all=True, append_images=rest)
    return path


def text_pdf(lines: list[str], path: Path) -> Path:
    """A one-page PDF with a real text layer (drawn by pypdfium2 with a standard font)."""
    import pypdfium2.raw as raw

    document = raw.FPDF_CreateNewDocument()
    page_ = raw.FPDFPage_New(document, 0, 595, 842)
    font = raw.FPDFText_LoadStandardFont(document, b"Helvetica")
    y = 780
    for line in lines:
        text = raw.FPDFPageObj_CreateTextObj(document, font, 11.0)
        encoded = (line + "\x00").encode("utf-16-le")
        buffer = (raw.c_ushort * (len(encoded) // 2)).from_buffer_copy(encoded)
        raw.FPDFText_SetText(text, buffer)
        raw.FPDFPageObj_Transform(text, 1, 0, 0, 1, 50, y)
        raw.FPDFPage_InsertObject(page_, text)
        y -= 16
    raw.FPDFPage_GenerateContent(page_)
    raw.FPDF_ClosePage(page_)
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(document)
    pdf.save(str(path))
    pdf.close()
    return path


def append_scan(text_pdf_path: Path, scan: Any, path: Path) -> Path:
    """The digital PDF with one scanned page appended after its text pages."""
    import io

    import pypdfium2 as pdfium

    buffer = io.BytesIO()
    scan.convert("RGB").save(buffer, format="PDF", resolution=300)
    pdf = pdfium.PdfDocument(str(text_pdf_path))
    pdf.import_pages(pdfium.PdfDocument(buffer.getvalue()))
    pdf.save(str(path))
    pdf.close()
    return path


# --- office files -------------------------------------------------------------------------------
PRICE_ROWS: list[list[object]] = [
    ["Артикул", "Наименование", "Цена, руб.", "Остаток"],
    ["ЦНС-38", "Насос центробежный", 184350, 12],
    ["SK-7", "Комплект уплотнений", 2730.5, 40],
]


def docx_file(path: Path) -> Path:
    import docx

    document = docx.Document()
    document.add_heading("Протокол совещания", level=1)
    document.add_paragraph("Присутствовали: Ёлкин П. С., Журавлёва Е. А.")
    document.add_heading("Решения", level=2)
    document.add_paragraph("Утвердить прайс-лист", style="List Bullet")
    document.add_paragraph("Подписать договор № 47", style="List Bullet")
    table = document.add_table(rows=0, cols=4)
    for row in PRICE_ROWS:
        cells = table.add_row().cells
        for cell_, value in zip(cells, row, strict=True):
            cell_.text = str(value)
    document.save(str(path))
    return path


def xlsx_file(path: Path, *, extra_rows: int = 0) -> Path:
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Прайс"
    for row in PRICE_ROWS:
        sheet.append(row)
    sheet["E1"] = "Сумма"
    sheet["E2"] = "=C2*D2"
    sheet["E3"] = "=C3*D3"
    for i in range(extra_rows):
        sheet.append([f"X-{i}", "filler", i, i])
    second = workbook.create_sheet("Контакты")
    second.append(["Имя", "Телефон"])
    second.append(["Ёлкин П. С.", "+7 (4852) 58-11-09"])
    workbook.save(str(path))
    return path


def with_cached_values(path: Path) -> Path:
    """openpyxl writes formulas without their cached values: add them, as Excel or LibreOffice would have."""
    data = {name: zipfile.ZipFile(path).read(name) for name in zipfile.ZipFile(path).namelist()}
    sheet = data["xl/worksheets/sheet1.xml"].decode()
    sheet = sheet.replace("<f>C2*D2</f><v></v>", "<f>C2*D2</f><v>2212200</v>").replace(
        "<f>C3*D3</f><v></v>", "<f>C3*D3</f><v>109220</v>"
    )
    data["xl/worksheets/sheet1.xml"] = sheet.encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for name, content in data.items():
            out.writestr(name, content)
    return path


def pptx_file(path: Path) -> Path:
    from pptx import Presentation
    from pptx.util import Inches

    presentation = Presentation()
    first = presentation.slides.add_slide(presentation.slide_layouts[1])
    first.shapes.title.text = "Итоги квартала"
    body = first.placeholders[1].text_frame
    body.text = "Выручка выросла на 12%"
    sub = body.add_paragraph()
    sub.text = "Москва: 40 млн руб."
    sub.level = 1
    first.notes_slide.notes_text_frame.text = "Сказать про новый склад в Ярославле"
    second = presentation.slides.add_slide(presentation.slide_layouts[5])
    second.shapes.title.text = "Цены"
    shape = second.shapes.add_table(3, 2, Inches(1), Inches(2), Inches(6), Inches(2))
    for r, row in enumerate([["Товар", "Цена"], ["ЦНС-38", "184 350"], ["SK-7", "2 730,50"]]):
        for c, value in enumerate(row):
            shape.table.cell(r, c).text = value
    presentation.save(str(path))
    return path


def odt_file(path: Path) -> Path:
    content = """<?xml version="1.0" encoding="UTF-8"?>
<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"
 xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"
 office:version="1.2"><office:body><office:text>
<text:h text:outline-level="1">Протокол</text:h>
<text:p>Встреча<text:s text:c="2"/>состоялась 15.03.2026.</text:p>
<text:list><text:list-item><text:p>Первое решение</text:p></text:list-item>
<text:list-item><text:p>Второе решение</text:p></text:list-item></text:list>
<table:table table:name="T"><table:table-row><table:table-cell><text:p>Товар</text:p></table:table-cell>
<table:table-cell><text:p>Цена</text:p></table:table-cell></table:table-row>
<table:table-row><table:table-cell><text:p>ЦНС-38</text:p></table:table-cell>
<table:table-cell><text:p>184 350</text:p></table:table-cell></table:table-row></table:table>
</office:text></office:body></office:document-content>"""
    return _odf(path, "application/vnd.oasis.opendocument.text", content)


def ods_file(path: Path) -> Path:
    content = """<?xml version="1.0" encoding="UTF-8"?>
<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"
 xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"
 office:version="1.2"><office:body><office:spreadsheet>
<table:table table:name="Прайс"><table:table-row><table:table-cell><text:p>Товар</text:p></table:table-cell>
<table:table-cell><text:p>Цена</text:p></table:table-cell></table:table-row>
<table:table-row><table:table-cell><text:p>ЦНС-38</text:p></table:table-cell>
<table:table-cell><text:p>184350</text:p></table:table-cell></table:table-row>
<table:table-row table:number-rows-repeated="1048570"><table:table-cell table:number-columns-repeated="1024"/></table:table-row>
</table:table></office:spreadsheet></office:body></office:document-content>"""
    return _odf(path, "application/vnd.oasis.opendocument.spreadsheet", content)


def odp_file(path: Path) -> Path:
    content = """<?xml version="1.0" encoding="UTF-8"?>
<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"
 xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0"
 office:version="1.2"><office:body><office:presentation>
<draw:page draw:name="p1"><draw:frame><draw:text-box><text:p>Итоги квартала</text:p></draw:text-box></draw:frame></draw:page>
<draw:page draw:name="p2"><draw:frame><draw:text-box><text:p>Планы на 2027</text:p></draw:text-box></draw:frame></draw:page>
</office:presentation></office:body></office:document-content>"""
    return _odf(path, "application/vnd.oasis.opendocument.presentation", content)


def _odf(path: Path, mimetype: str, content: str) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("mimetype", mimetype, compress_type=zipfile.ZIP_STORED)
        zf.writestr("content.xml", content, compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr(
            "META-INF/manifest.xml",
            '<?xml version="1.0"?><manifest:manifest xmlns:manifest='
            '"urn:oasis:names:tc:opendocument:xmlns:manifest:1.0"/>',
        )
    return path


def rtf_file(path: Path) -> Path:
    body = "Счёт № 0318 от 16.03.2026 на сумму 2 212 200,00 руб."
    escaped = "".join(f"\\'{b:02x}" if b > 127 else chr(b) for b in body.encode("cp1251"))
    path.write_bytes(
        (
            "{\\rtf1\\ansi\\ansicpg1251\\deff0{\\fonttbl{\\f0 Arial;}}\\f0\\fs22 "
            + escaped
            + "\\par Invoice paid.\\par}"
        ).encode("ascii")
    )
    return path


def html_file(path: Path) -> Path:
    path.write_text(
        """<!DOCTYPE html><html><head><meta charset="utf-8"><title>Прайс</title>
<style>body { color: red }</style><script>var tracking = "do-not-extract";</script></head>
<body><nav><a href="/">Главная</a> | <a href="/about">О нас</a></nav>
<main><h1>Прайс-лист</h1><p>Цены действуют до 30.04.2026.</p>
<ul><li>Доставка по Москве</li><li>Самовывоз<ul><li>Ярославль</li></ul></li></ul>
<table><tr><th>Товар</th><th>Цена</th></tr><tr><td>ЦНС-38</td><td>184 350</td></tr></table></main>
<footer>© 2026 Северный ветер</footer></body></html>""",
        encoding="utf-8",
    )
    return path


def csv_file(path: Path) -> Path:
    path.write_bytes("Товар;Цена;Остаток\nЦНС-38;184 350;12\nSK-7;2 730,50;40\n".encode("cp1251"))
    return path


def write_all(directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    made: dict[str, Path] = {}
    for language, lines in (("ru", RUSSIAN), ("en", ENGLISH)):
        clean = page(lines)
        made[f"scan-{language}-300dpi.pdf"] = image_pdf(
            [clean], directory / f"scan-{language}-300dpi.pdf", 300
        )
        made[f"photocopy-{language}-200dpi.pdf"] = image_pdf(
            [photocopy(clean)], directory / f"photocopy-{language}-200dpi.pdf", 200
        )
        clean.save(directory / f"photo-{language}.png", dpi=(300, 300))
        made[f"photo-{language}.png"] = directory / f"photo-{language}.png"
    return made


def odd_pptx_file(path: Path) -> Path:
    """A slide python-pptx cannot fully read, as real decks have: an autoshape without a geometry (its shape_type
    raises NotImplementedError), a table whose graphic frame lost its table (reading it raises), and ordinary
    text around them."""
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[5])
    slide.shapes.title.text = "Итоги"
    odd = slide.shapes.add_shape(1, Inches(1), Inches(1), Inches(2), Inches(1))
    odd.text_frame.text = "в фигуре без геометрии"
    odd._element.spPr.remove(
        odd._element.spPr.find("{http://schemas.openxmlformats.org/drawingml/2006/main}prstGeom")
    )
    broken = slide.shapes.add_table(1, 1, Inches(1), Inches(3), Inches(2), Inches(1))
    broken._element.graphic.graphicData.remove(broken._element.graphic.graphicData.tbl)
    slide.shapes.add_textbox(
        Inches(5), Inches(1), Inches(2), Inches(1)
    ).text_frame.text = "остальное на месте"
    deck.save(str(path))
    return path


#: a saved page as people keep them: a comment in the body, <br> inside inline elements, cells spanning rows and
#: columns, a table nested in a cell
HTML_PAGE = """<!DOCTYPE html><html><head><title>Отчёт</title></head><body><!-- saved by a browser -->
<p>Итог<span>ООО «Ромашка»<br>ИНН 7707083893</span></p><?php echo 1; ?>
<table><tr><th>Имя</th><th colspan="2">Контакт</th></tr>
<tr><td rowspan="2">Анна</td><td>телефон</td><td>+7 900 000-00-00</td></tr>
<tr><td>почта</td><td>anna@example.ru</td></tr>
<tr><td>Борис</td><td>см.<table><tr><td>вложенная</td><td>таблица</td></tr></table></td><td>—</td></tr></table>
</body></html>"""


def unreadable_scan(lines: list[str]) -> Any:
    """A page scanned far too coarse (a ninth of its resolution, scaled back up): Tesseract still returns
    text, with a mean word confidence near 35 and a character error rate over 50 %."""
    clean = page(lines).convert("L")
    return clean.resize((clean.width // 9, clean.height // 9)).resize(clean.size)


_W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
_DOCX_NAMESPACES = (
    f'xmlns:w="{_W_NS}" xmlns:w14="http://schemas.microsoft.com/office/word/2010/wordml" '
    'xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006" '
    'xmlns:wps="http://schemas.microsoft.com/office/word/2010/wordprocessingShape" '
    'xmlns:v="urn:schemas-microsoft-com:vml" '
    'xmlns:m="http://schemas.openxmlformats.org/officeDocument/2006/math"'
)


def docx_hidden_content_file(path: Path) -> Path:
    """Content Word shows that a plain paragraph-and-table reader misses, as real forms and contracts have it:
    a table and a paragraph inside a content control, a text box (with the VML fallback copy Word writes beside
    it), a table nested in a cell, an equation, a checked and an unchecked checkbox, and a tracked deletion."""
    import docx
    from docx.oxml import parse_xml

    document = docx.Document()
    document.add_heading("Заявка на поставку", 1)
    body = document.element.body

    def add(xml: str) -> None:
        body.insert(len(body) - 1, parse_xml(xml))  # before the section properties

    add(f"""<w:sdt {_DOCX_NAMESPACES}><w:sdtPr><w:alias w:val="Позиции"/></w:sdtPr><w:sdtContent>
        <w:p><w:r><w:t>Позиции в поле формы:</w:t></w:r></w:p>
        <w:tbl><w:tblGrid><w:gridCol/><w:gridCol/></w:tblGrid>
          <w:tr><w:tc><w:p><w:r><w:t>ЦНС-38</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>184350</w:t></w:r></w:p></w:tc></w:tr>
        </w:tbl></w:sdtContent></w:sdt>""")
    add(f"""<w:p {_DOCX_NAMESPACES}><w:r><w:t>Адрес доставки: </w:t></w:r><w:r><mc:AlternateContent>
        <mc:Choice Requires="wps"><w:drawing><wps:txbx><w:txbxContent><w:p><w:r><w:t>Ярославль, ул. Свободы, 1</w:t></w:r></w:p>
        </w:txbxContent></wps:txbx></w:drawing></mc:Choice>
        <mc:Fallback><w:pict><v:textbox><w:txbxContent><w:p><w:r><w:t>Ярославль, ул. Свободы, 1</w:t></w:r></w:p>
        </w:txbxContent></v:textbox></w:pict></mc:Fallback></mc:AlternateContent></w:r></w:p>""")
    outer = document.add_table(rows=1, cols=2)
    outer.cell(0, 0).text = "Условия"
    inner = outer.cell(0, 1).add_table(rows=1, cols=2)
    inner.cell(0, 0).text = "Отсрочка"
    inner.cell(0, 1).text = "30 дней"
    add(
        f"""<w:p {_DOCX_NAMESPACES}><w:r><w:t xml:space="preserve">Сумма: </w:t></w:r><m:oMath><m:r><m:t>S=2×184350</m:t></m:r></m:oMath></w:p>"""
    )
    for label, checked, glyph in (("Доставка", "1", "\u2612"), ("Самовывоз", "0", "\u2610")):
        add(f"""<w:p {_DOCX_NAMESPACES}><w:sdt><w:sdtPr><w14:checkbox><w14:checked w14:val="{checked}"/></w14:checkbox>
            </w:sdtPr><w:sdtContent><w:r><w:t>{glyph}</w:t></w:r></w:sdtContent></w:sdt><w:r><w:t xml:space="preserve"> {label}</w:t></w:r></w:p>""")
    add(f"""<w:p {_DOCX_NAMESPACES}><w:r><w:t xml:space="preserve">Цена окончательная</w:t></w:r><w:del w:id="1" w:author="x">
        <w:r><w:delText> и обсуждению не подлежит</w:delText></w:r></w:del><w:r><w:t>.</w:t></w:r></w:p>""")
    document.save(str(path))
    return path


def epub_file(path: Path) -> Path:
    """An EPUB 3 book of two chapters whose spine order differs from their file names' order."""
    chapter = (
        '<?xml version="1.0" encoding="utf-8"?><html xmlns="http://www.w3.org/1999/xhtml"><head><title>{t}</title>'
        "</head><body><h1>{t}</h1><p>{p}</p></body></html>"
    )
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(
            zipfile.ZipInfo("mimetype"), "application/epub+zip"
        )  # first and stored, as the format asks
        zf.writestr(
            "META-INF/container.xml",
            '<?xml version="1.0"?><container version="1.0" '
            'xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles><rootfile '
            'full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/></rootfiles></container>',
        )
        zf.writestr(
            "OEBPS/content.opf",
            '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" '
            'version="3.0"><manifest><item id="b" href="text/b.xhtml" media-type="application/xhtml+xml"/>'
            '<item id="a" href="text/a.xhtml" media-type="application/xhtml+xml"/></manifest>'
            '<spine><itemref idref="b"/><itemref idref="a"/></spine></package>',
        )
        zf.writestr(
            "OEBPS/text/b.xhtml", chapter.format(t="Глава первая", p="ООО «Ромашка» поставляет насосы.")
        )
        zf.writestr("OEBPS/text/a.xhtml", chapter.format(t="Глава вторая", p="Договор № 15 подписан."))
    return path


if __name__ == "__main__":
    for name, path in write_all(Path(sys.argv[1] if len(sys.argv) > 1 else "ocr-testset")).items():
        sys.stdout.write(f"{name}\t{path}\n")
