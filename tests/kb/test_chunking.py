"""Chunks are bounded in tokens, overlap, and carry the headings they sit under."""

from __future__ import annotations

import itertools

import pytest

from syntera.kb.chunking import Chunker, count_tokens, sections

SENTENCE = "Refunds are paid to the original card within thirty days of the request. "


def test_every_chunk_fits_the_token_budget_and_the_text_is_covered() -> None:
    body = " ".join(f"Sentence number {i} talks about topic {i % 7}." for i in range(400))
    chunker = Chunker(size=64, overlap=8)
    chunks = chunker.chunks(body)
    assert len(chunks) > 10
    assert all(count_tokens(chunk) <= 64 for chunk in chunks)
    for i in range(400):
        assert any(f"Sentence number {i} " in chunk for chunk in chunks), i


def test_consecutive_chunks_overlap() -> None:
    body = " ".join(f"Fact {i} is true." for i in range(200))
    chunks = Chunker(size=48, overlap=12).chunks(body)
    shared = [
        set(a.split()) & set(b.split()) - {"Fact", "is", "true."}
        for a, b in itertools.pairwise(chunks)
    ]
    assert all(shared), "every chunk shares words with the next"
    without = Chunker(size=48, overlap=0).chunks(body)
    assert len(without) < len(chunks)


def test_headings_stay_with_their_text() -> None:
    text = (
        "# Billing\n\nHow we bill.\n\n## Refunds\n\n"
        + SENTENCE * 30
        + "\n\n## Invoices\n\nMonthly."
    )
    chunks = Chunker(size=60, overlap=10).chunks(text)
    refunds = [c for c in chunks if "Refunds are paid" in c]
    assert len(refunds) > 2
    assert all(c.startswith("# Billing\n## Refunds\n") for c in refunds)
    assert "# Billing\n## Invoices\nMonthly." in chunks
    assert "# Billing\nHow we bill." in chunks
    assert not any(c.strip() in {"# Billing", "## Refunds"} for c in chunks)


def test_a_heading_inside_a_code_fence_is_text() -> None:
    text = "# Setup\n\n```\n# not a heading\nrun it\n```\n"
    parts = list(sections(text))
    assert [p.headings for p in parts] == [("# Setup",)]
    assert "# not a heading" in parts[0].body


def test_overlap_must_be_smaller_than_the_chunk() -> None:
    with pytest.raises(ValueError, match="overlap"):
        Chunker(size=50, overlap=50)
