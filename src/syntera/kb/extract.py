"""Text out of an uploaded file: plain text, Markdown, HTML, PDF and DOCX.

The text comes out as Markdown-like lines: headings of HTML and DOCX become ``#`` lines,
so that the chunker can keep every heading with the text under it.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import PurePath
from typing import ClassVar

import docx
import pypdf
from pypdf.errors import PyPdfError

PLAIN = "text/plain"
MARKDOWN = "text/markdown"
HTML = "text/html"
PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

BY_SUFFIX = {
    ".txt": PLAIN,
    ".text": PLAIN,
    ".md": MARKDOWN,
    ".markdown": MARKDOWN,
    ".html": HTML,
    ".htm": HTML,
    ".pdf": PDF,
    ".docx": DOCX,
}
SUPPORTED = frozenset(BY_SUFFIX.values())


class ExtractionError(ValueError):
    """The file cannot be read as the type it claims; permanent (retrying won't help)."""


class UnsupportedType(ExtractionError):
    """Neither the name nor the declared type is one we read."""


@dataclass(frozen=True)
class Extracted:
    content_type: str
    text: str


def content_type_of(filename: str, declared: str | None) -> str:
    """The type we will read the file as: by its suffix, else by the declared type."""
    by_name = BY_SUFFIX.get(PurePath(filename).suffix.lower())
    if by_name is not None:
        return by_name
    declared_type = (declared or "").split(";")[0].strip().lower()
    if declared_type in SUPPORTED:
        return declared_type
    known = ", ".join(sorted(BY_SUFFIX))
    raise UnsupportedType(f"{filename!r} is not a supported type (supported: {known})")


def extract(data: bytes, content_type: str) -> Extracted:
    """The text of ``data`` read as ``content_type``."""
    readers = {PLAIN: _text, MARKDOWN: _text, HTML: _html, PDF: _pdf, DOCX: _docx}
    reader = readers.get(content_type)
    if reader is None:
        raise UnsupportedType(f"{content_type} is not a supported type")
    return Extracted(content_type, _tidy(reader(data)))


def _tidy(text: str) -> str:
    """Trailing spaces off, runs of blank lines down to one, NUL bytes out (PostgreSQL
    text cannot hold them)."""
    lines = [line.rstrip() for line in text.replace("\x00", "").splitlines()]
    tidy: list[str] = []
    for line in lines:
        if line or (tidy and tidy[-1]):
            tidy.append(line)
    return "\n".join(tidy).strip()


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ExtractionError(f"the file is not UTF-8 text (byte {error.start})") from error


def _pdf(data: bytes) -> str:
    if not data.startswith(b"%PDF"):
        raise ExtractionError("the file is not a PDF")
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        return "\n\n".join(page.extract_text() or "" for page in reader.pages)
    except (PyPdfError, ValueError, KeyError, TypeError) as error:
        raise ExtractionError(f"the PDF cannot be read: {error}") from error


def _docx(data: bytes) -> str:
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise ExtractionError("the file is not a DOCX document")
    try:
        document = docx.Document(io.BytesIO(data))
    except (KeyError, ValueError, zipfile.BadZipFile) as error:
        raise ExtractionError(f"the DOCX document cannot be read: {error}") from error
    lines = []
    for paragraph in document.paragraphs:
        style = paragraph.style.name if paragraph.style is not None else ""
        level = _heading_level(style or "")
        lines.append(
            f"{'#' * level} {paragraph.text}" if level and paragraph.text else paragraph.text
        )
    for table in document.tables:
        for row in table.rows:
            lines.append(" | ".join(cell.text for cell in row.cells))
    return "\n\n".join(lines)


def _heading_level(style: str) -> int:
    """Word's 'Title' and 'Heading N' styles as a Markdown heading level (0: not one)."""
    if style == "Title":
        return 1
    if style.startswith("Heading "):
        number = style.removeprefix("Heading ")
        return min(int(number), 6) if number.isdigit() else 0
    return 0


class _HtmlText(HTMLParser):
    """The visible text of an HTML page; headings as ``#`` lines, blocks on their own."""

    SKIPPED = frozenset({"script", "style", "head", "template", "noscript", "svg"})
    BLOCKS = frozenset(
        {"p", "div", "section", "article", "li", "tr", "br", "pre", "blockquote", "table",
         "ul", "ol", "dd", "dt", "header", "footer", "main", "nav", "aside", "form"}
    )  # fmt: skip
    HEADINGS: ClassVar[dict[str, int]] = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIPPED:
            self.skipping += 1
        elif tag in self.HEADINGS:
            self.parts.append("\n\n" + "#" * self.HEADINGS[tag] + " ")
        elif tag in self.BLOCKS:
            self.parts.append("\n")
        elif tag in ("td", "th"):
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIPPED:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self.HEADINGS:
            self.parts.append("\n\n")
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data if "\n" not in data else " ".join(data.split()))


def _html(data: bytes) -> str:
    parser = _HtmlText()
    parser.feed(_text(data))
    parser.close()
    # Within a line, runs of spaces from the markup's indentation become one.
    return "\n".join(" ".join(line.split()) for line in "".join(parser.parts).splitlines())
