"""Pure, token-aware chunking: Paper -> sentence-aligned Chunks with deterministic ids."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol

from retrieval.models import Chunk, Paper
from retrieval.normalize import split_sentences


class TokenCodec(Protocol):
    """The part of tiktoken.Encoding chunking needs (tests can pass any codec)."""

    def encode(self, text: str) -> list[int]: ...

    def decode(self, tokens: Sequence[int]) -> str: ...


def chunk_paper(paper: Paper, codec: TokenCodec, max_tokens: int, overlap: int) -> list[Chunk]:
    """Pack whole sentences into chunks of at most ``max_tokens`` tokens.

    Consecutive chunks share trailing sentences worth at most ``overlap`` tokens, so a claim
    that straddles a boundary is still whole in one chunk. A single sentence longer than
    ``max_tokens`` is cut on token boundaries (with the same overlap).
    """
    if overlap >= max_tokens:
        raise ValueError("overlap must be smaller than max_tokens")
    pieces = _sentence_pieces(paper.abstract, codec, max_tokens, overlap)
    groups = _pack(pieces, max_tokens, overlap)
    return [_make_chunk(paper, i, group) for i, group in enumerate(groups)]


def chunk_id(paper_id: str, index: int, embed_text: str) -> str:
    """Stable id: the same text of the same paper always gets the same id, a new text a new one."""
    digest = hashlib.sha1(embed_text.encode()).hexdigest()[:12]
    return f"{paper_id}#{index}:{digest}"


def _make_chunk(paper: Paper, index: int, group: list[tuple[str, int]]) -> Chunk:
    text = " ".join(sentence for sentence, _ in group)
    n_tokens = sum(n for _, n in group)
    draft = Chunk("", paper.paper_id, index, text, n_tokens, paper.title)
    return Chunk(
        chunk_id(paper.paper_id, index, draft.embed_text),
        paper.paper_id,
        index,
        text,
        n_tokens,
        paper.title,
    )


def _sentence_pieces(
    text: str, codec: TokenCodec, max_tokens: int, overlap: int
) -> list[tuple[str, int]]:
    """Sentences with their token counts; over-long sentences are cut into token windows."""
    pieces: list[tuple[str, int]] = []
    for sentence in split_sentences(text):
        tokens = codec.encode(sentence)
        if len(tokens) <= max_tokens:
            pieces.append((sentence, len(tokens)))
            continue
        step = max_tokens - overlap
        for start in range(0, len(tokens), step):
            window = tokens[start : start + max_tokens]
            pieces.append((codec.decode(window).strip(), len(window)))
            if start + max_tokens >= len(tokens):
                break
    return [(s, n) for s, n in pieces if s]


def _pack(
    pieces: list[tuple[str, int]], max_tokens: int, overlap: int
) -> list[list[tuple[str, int]]]:
    groups: list[list[tuple[str, int]]] = []
    current: list[tuple[str, int]] = []
    size = 0
    for piece in pieces:
        if current and size + piece[1] > max_tokens:
            groups.append(current)
            current = _overlap_tail(current, overlap, max_tokens - piece[1])
            size = sum(n for _, n in current)
        current.append(piece)
        size += piece[1]
    if current:
        groups.append(current)
    return groups


def _overlap_tail(group: list[tuple[str, int]], overlap: int, room: int) -> list[tuple[str, int]]:
    """The last sentences of a chunk that fit in ``overlap`` tokens (and in the room left)."""
    tail: list[tuple[str, int]] = []
    total = 0
    for piece in reversed(group[1:] if len(group) > 1 else []):
        if total + piece[1] > min(overlap, room):
            break
        tail.insert(0, piece)
        total += piece[1]
    return tail
