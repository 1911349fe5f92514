"""A report as plain data (title, sections of paragraphs, tables and images), so the
case report and the compliance report are written once and rendered by one PDF and
one HTML renderer."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Paragraph:
    text: str


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass
class Image:
    caption: str
    png: bytes


Block = Paragraph | Table | Image


@dataclass
class Section:
    heading: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Document:
    title: str
    subtitle: str
    sections: list[Section] = field(default_factory=list)


def text(value: object) -> str:
    """A cell or line for people: None as a dash."""
    if value is None or value == "":
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
