"""How one paper reads in Slack: pure mrkdwn for a paper's line, its links and its picture.

Every line links somewhere real: the paper's page, its arXiv abstract and PDF, its Hugging
Face page (known for papers an HF feed listed). A paper without any link says "no link" —
and the id shown is always an arXiv id, never the internal title hash (``t:…``) that
title-only papers are stored under. Authors: the first three, then "et al.". Upvotes and
comments when the feed had them. The picture (a section accessory): the HF social thumbnail,
which HF publishes for every paper it lists at a URL made of the arXiv id (its API's
``thumbnail`` field carries exactly that URL).

``pack`` fits many paper lines into few sections (Slack: 3,000 characters a section) without
splitting a line, so long lists fit a message by design instead of being cut.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from retrieval import Paper

MAX_AUTHORS = 3
HF_SOURCES = ("hf_api", "hf_page")
HF_PAPERS = "https://huggingface.co/papers/"
HF_THUMBNAIL = "https://cdn-thumbnails.huggingface.co/social-thumbnails/papers/{}.png"
NO_LINK = "no link"


def escape(text: str) -> str:
    """Slack's three control characters, escaped (text shown as written)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link(url: str | None, label: str) -> str:
    """A mrkdwn link with an escaped label; non-http(s) URLs are shown as plain text."""
    if not url or not url.startswith(("https://", "http://")):
        return escape(label)
    safe_url = quote(url, safe=":/?#[]@!$&'()*+,;=%-._~")
    return f"<{safe_url.replace('|', '%7C')}|{escape(label).replace('|', '¦')}>"


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``1 paper``, ``2 papers``, ``1,204 papers``."""
    return f"{count:,} {noun if count == 1 else many or noun + 's'}"


def visible_id(paper: Paper) -> str | None:
    """The id a reader may look up: the arXiv id; never an internal title hash."""
    return paper.arxiv_id or None


def arxiv_url(paper: Paper) -> str | None:
    return f"https://arxiv.org/abs/{paper.arxiv_id}" if paper.arxiv_id else None


def pdf_url(paper: Paper) -> str | None:
    if paper.pdf_url:
        return paper.pdf_url
    return f"https://arxiv.org/pdf/{paper.arxiv_id}" if paper.arxiv_id else None


def hf_url(paper: Paper) -> str | None:
    if paper.url and paper.url.startswith(HF_PAPERS):
        return paper.url
    if paper.arxiv_id and paper.source in HF_SOURCES:
        return HF_PAPERS + paper.arxiv_id
    return None


def thumbnail(paper: Paper) -> str | None:
    """HF's thumbnail for a paper an HF feed listed (by its arXiv id), else None."""
    if paper.arxiv_id and (paper.source in HF_SOURCES or hf_url(paper)):
        return HF_THUMBNAIL.format(paper.arxiv_id)
    return None


def authors(paper: Paper) -> str:
    names = [a for a in paper.authors if a.strip()]
    shown = ", ".join(names[:MAX_AUTHORS])
    return shown + " et al." if len(names) > MAX_AUTHORS else shown


def title_link(paper: Paper) -> str:
    return f"*{link(paper.link, paper.title)}*"


def links(paper: Paper) -> str:
    """``arXiv 2410.17243 · PDF · HF`` as links; empty when the paper has only a page of
    its own (its title links there); ``no link`` when it has none at all."""
    parts: list[str] = []
    abs_url = arxiv_url(paper)
    if abs_url:
        parts.append(link(abs_url, f"arXiv {paper.arxiv_id}"))
    pdf = pdf_url(paper)
    if pdf:
        parts.append(link(pdf, "PDF"))
    hf = hf_url(paper)
    if hf:
        parts.append(link(hf, "HF"))
    shown = " · ".join(p for p in parts if p.startswith("<"))
    if shown or paper.link:  # a paper with only its own page: the title links to it
        return shown
    return f"_{NO_LINK}_"


def meta(paper: Paper) -> str:
    """Authors · date · ▲ upvotes · 💬 comments (the parts that are known)."""
    parts = [escape(authors(paper))] if paper.authors else []
    day = paper.published or paper.listed
    if day:
        parts.append(day.isoformat())
    if paper.upvotes is not None:
        parts.append(f"▲ {paper.upvotes:,}")
    if paper.comments:
        parts.append(f"💬 {paper.comments:,}")
    return " · ".join(p for p in parts if p)


def paper_line(paper: Paper, detail: str | None = None, *, compact: bool = False) -> str:
    """The paper's title (linked), who and when, its links, and ``detail`` (already mrkdwn,
    e.g. a TL;DR or the matching passage) on the last line."""
    head = title_link(paper)
    if compact:
        extra = [e for e in (links(paper), f"▲ {paper.upvotes:,}" if paper.upvotes else "") if e]
        return " · ".join([head, *extra])
    lines = [head]
    about = " · ".join(part for part in (meta(paper), links(paper)) if part)
    if about:
        lines.append(about)
    if detail:
        lines.append(detail)
    return "\n".join(lines)


def image_accessory(paper: Paper) -> dict[str, Any] | None:
    url = thumbnail(paper)
    if url is None:
        return None
    return {"type": "image", "image_url": url, "alt_text": _alt(paper.title)}


def _alt(title: str) -> str:
    text = f"Thumbnail of {title}"
    return text if len(text) <= 2000 else text[:1999] + "…"


def pack(
    lines: Sequence[str], limit: int, cut: Callable[[str, int], str], sep: str = "\n"
) -> list[str]:
    """Lines joined (by ``sep``) into as few texts of at most ``limit`` characters as
    possible, in order, never splitting a line (a line longer than ``limit`` alone is
    ``cut``)."""
    packed: list[str] = []
    current = ""
    for line in lines:
        piece = line if len(line) <= limit else cut(line, limit)
        if current and len(current) + len(sep) + len(piece) > limit:
            packed.append(current)
            current = ""
        current = f"{current}{sep}{piece}" if current else piece
    if current:
        packed.append(current)
    return packed
