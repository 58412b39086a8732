"""Every supported format gives its text; anything else is refused by name."""

from __future__ import annotations

import pytest

from syntera.kb.extract import (
    DOCX,
    HTML,
    MARKDOWN,
    PDF,
    PLAIN,
    ExtractionError,
    UnsupportedType,
    content_type_of,
    extract,
)
from tests.kb import files


def test_plain_text_and_its_byte_order_mark() -> None:
    assert extract("\ufeffHello, café.\n\n\n\nBye.  ".encode(), PLAIN).text == (
        "Hello, café.\n\nBye."
    )


def test_markdown_is_kept_as_written() -> None:
    text = extract(files.MARKDOWN, MARKDOWN).text
    assert text.startswith("# Pricing\n\nThe Starter plan costs 29 dollars a month.")
    assert "## Enterprise" in text


def test_html_gives_visible_text_with_headings_as_markdown() -> None:
    text = extract(files.HTML, HTML).text
    assert "# Shipping" in text.splitlines()
    assert "We ship to 40 countries." in text
    assert "## Returns" in text.splitlines()
    assert "Within 30 days" in text
    assert "Unused items" in text
    assert "secret" not in text
    assert "color" not in text
    assert "ignored title" not in text


def test_pdf_gives_the_text_of_every_page() -> None:
    text = extract(files.pdf_bytes("Invoices are sent monthly.", "Page two (appendix)."), PDF).text
    assert "Invoices are sent monthly." in text
    assert "Page two (appendix)." in text


def test_docx_gives_headings_paragraphs_and_tables() -> None:
    data = files.docx_bytes(
        "Onboarding", ["Create an account first.", "Then invite your team."], [["Plan", "Seats"]]
    )
    text = extract(data, DOCX).text
    lines = text.splitlines()
    assert "# Onboarding" in lines
    assert "Create an account first." in lines
    assert "Then invite your team." in lines
    assert "Plan | Seats" in lines


@pytest.mark.parametrize(
    ("name", "declared", "expected"),
    [
        ("notes.TXT", None, PLAIN),
        ("readme.md", "application/octet-stream", MARKDOWN),
        ("page.htm", None, HTML),
        ("scan.pdf", None, PDF),
        ("letter.docx", None, DOCX),
        ("upload", "text/markdown; charset=utf-8", MARKDOWN),
    ],
)
def test_type_by_suffix_then_declared_type(name: str, declared: str | None, expected: str) -> None:
    assert content_type_of(name, declared) == expected


@pytest.mark.parametrize(("name", "declared"), [("photo.png", "image/png"), ("x.exe", None)])
def test_other_types_are_refused(name: str, declared: str | None) -> None:
    with pytest.raises(UnsupportedType, match="not a supported type"):
        content_type_of(name, declared)


@pytest.mark.parametrize(
    ("data", "content_type", "message"),
    [
        (b"\xff\xfe\x00bad", PLAIN, "not UTF-8"),
        (b"not a pdf at all", PDF, "not a PDF"),
        (b"%PDF-1.4 truncated garbage", PDF, "cannot be read"),
        (b"plain words", DOCX, "not a DOCX"),
    ],
)
def test_unreadable_files_say_why(data: bytes, content_type: str, message: str) -> None:
    with pytest.raises(ExtractionError, match=message):
        extract(data, content_type)
