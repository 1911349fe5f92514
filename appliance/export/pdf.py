"""A Document as PDF with reportlab (pure Python). Text goes through Paragraph, which
reads markup, so every string is escaped first."""

from __future__ import annotations

import io
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Image as RLImage
from reportlab.platypus import Paragraph as RLParagraph
from reportlab.platypus import SimpleDocTemplate, Spacer, Table, TableStyle
from reportlab.platypus.flowables import Flowable

from appliance.export.document import Document, Image, Paragraph
from appliance.export.document import Table as DocTable

_STYLES = getSampleStyleSheet()
_CELL = _STYLES["BodyText"].clone("cell", fontSize=8, leading=10)
_WIDTH = A4[0] - 36 * mm


def _p(text: str, style: str = "BodyText") -> RLParagraph:
    return RLParagraph(escape(text).replace("\n", "<br/>"), _STYLES[style])


def _table(t: DocTable) -> Table:
    data = [[RLParagraph(f"<b>{escape(h)}</b>", _CELL) for h in t.header]]
    data += [[RLParagraph(escape(c), _CELL) for c in row] for row in t.rows]
    table = Table(data, colWidths=[_WIDTH / max(1, len(t.header))] * len(t.header),
                  repeatRows=1)
    table.setStyle(TableStyle([
        ("GRID", (0, 0), (-1, -1), 0.3, colors.grey),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eef2f7")),
        ("VALIGN", (0, 0), (-1, -1), "TOP")]))
    return table


def _image(img: Image) -> list[Flowable]:
    pic = RLImage(io.BytesIO(img.png))
    scale = min(1.0, _WIDTH / pic.drawWidth)
    pic.drawWidth, pic.drawHeight = pic.drawWidth * scale, pic.drawHeight * scale
    return [pic, _p(img.caption, "Italic")]


def render(doc: Document) -> bytes:
    buf = io.BytesIO()
    pdf = SimpleDocTemplate(buf, pagesize=A4, title=doc.title, author="Tracehold",
                            leftMargin=18 * mm, rightMargin=18 * mm,
                            topMargin=16 * mm, bottomMargin=16 * mm)
    story: list[Flowable] = [_p(doc.title, "Title"), _p(doc.subtitle, "Italic"),
                             Spacer(1, 4 * mm)]
    for section in doc.sections:
        story.append(_p(section.heading, "Heading2"))
        for block in section.blocks:
            if isinstance(block, Paragraph):
                story.append(_p(block.text))
            elif isinstance(block, DocTable):
                story.append(_table(block) if block.rows else _p("(none)"))
            else:
                story += _image(block)
            story.append(Spacer(1, 2 * mm))
    pdf.build(story)
    return buf.getvalue()
