"""arXiv API (Atom feed): https://export.arxiv.org/api/query, see arxiv.org/help/api.

arXiv reports a bad query as a feed with one entry titled "Error" (often with HTTP 400);
that becomes a SourceError carrying arXiv's own message.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Literal
from xml.etree.ElementTree import Element, ParseError

import defusedxml
import defusedxml.ElementTree as SafeET
import httpx

from retrieval.errors import SourceError
from retrieval.models import Paper, RecordError
from retrieval.normalize import (
    DEFAULT_MAX_ABSTRACT_CHARS,
    InvalidRecord,
    describe,
    make_paper,
    parse_arxiv_id,
    title_key,
)
from retrieval.sources.http import get_bytes
from retrieval.sources.tabular import DEFAULT_MAX_INPUT_BYTES, parse_iso_date

NS = {
    "atom": "http://www.w3.org/2005/Atom",
    "arxiv": "http://arxiv.org/schemas/atom",
    "opensearch": "http://a9.com/-/spec/opensearch/1.1/",
}
SortBy = Literal["relevance", "lastUpdatedDate", "submittedDate"]


def parse(
    data: bytes | str,
    *,
    origin: str,
    max_abstract_chars: int = DEFAULT_MAX_ABSTRACT_CHARS,
) -> Iterator[Paper | RecordError]:
    """One Paper (or RecordError) per <entry> of an arXiv API feed."""
    root = _parse_feed(data, origin)
    entries = root.findall("atom:entry", NS)
    _raise_if_error(entries, origin)
    for number, entry in enumerate(entries, start=1):
        yield _entry_to_paper(entry, origin, number, max_abstract_chars)


def fetch(
    *,
    query: str | None = None,
    ids: Sequence[str] | None = None,
    max_results: int,
    base_url: str,
    timeout: float,
    retries: int,
    delay_seconds: float,
    page_size: int,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
    sort_by: SortBy | None = None,
    max_bytes: int = DEFAULT_MAX_INPUT_BYTES,
) -> Iterator[bytes]:
    """Raw feed pages for a search query and/or an id list, ``page_size`` entries at a time.

    Arguments are checked now, before any request; pages are fetched lazily, pausing
    ``delay_seconds`` between requests (arXiv asks for one request every 3 seconds).
    """
    if not query and not ids:
        raise SourceError("arXiv fetch needs a search query or a list of arXiv ids")
    if max_results < 1 or page_size < 1:
        raise SourceError(
            f"arXiv fetch needs max_results and page_size >= 1 (got {max_results}, {page_size})"
        )
    params: dict[str, str | int] = {}
    if query:
        params["search_query"] = query
    if ids:
        id_list = _check_ids(ids)
        params["id_list"] = ",".join(id_list)
        max_results = min(max_results, len(id_list))
    if sort_by:
        params.update(sortBy=sort_by, sortOrder="descending")

    def pages() -> Iterator[bytes]:
        start = 0
        while start < max_results:
            if start:
                sleep(delay_seconds)  # arXiv etiquette, also between pages of one query
            page: dict[str, str | int] = {
                **params,
                "start": start,
                "max_results": min(page_size, max_results - start),
            }
            data = get_bytes(
                base_url,
                params=page,
                timeout=timeout,
                retries=retries,
                client=client,
                backoff=max(delay_seconds, 0.5),
                sleep=sleep,
                explain=error_message,
                max_bytes=max_bytes,
            )
            n_entries, total = _page_info(data, base_url)
            yield data
            start += n_entries
            if n_entries == 0 or (total is not None and start >= total):
                return

    return pages()


def arxiv_id_by_title(
    title: str,
    *,
    base_url: str,
    timeout: float,
    retries: int,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
    max_results: int = 5,
) -> str | None:
    """The arXiv id of the paper called ``title`` (compared case- and punctuation-
    insensitively, as `title_key` does), or None when arXiv lists no paper of that title.

    One request (a title phrase search); a failed one raises SourceError. Callers pace it
    (arXiv asks for one request every 3 seconds) and cache the answer.
    """
    wanted = title_key(title)
    if not wanted:
        return None
    data = get_bytes(
        base_url,
        params={"search_query": f'ti:"{wanted}"', "start": 0, "max_results": max_results},
        timeout=timeout,
        retries=retries,
        client=client,
        sleep=sleep,
        explain=error_message,
    )
    for record in parse(data, origin=base_url):
        if isinstance(record, Paper) and record.arxiv_id and title_key(record.title) == wanted:
            return record.arxiv_id
    return None


def error_message(data: bytes) -> str | None:
    """arXiv's message if ``data`` is an API error feed, else None (never raises)."""
    try:
        root = _parse_feed(data, "arXiv")
    except SourceError:
        return None
    for entry in root.findall("atom:entry", NS):
        if _is_error(entry):
            return _text(entry, "atom:summary") or "unknown error"
    return None


def _parse_feed(data: bytes | str, origin: str) -> Element:
    raw = data.encode() if isinstance(data, str) else data
    try:
        root: Element = SafeET.fromstring(raw)
    except ParseError as exc:
        line, column = exc.position
        raise SourceError(
            f"{origin} is not valid XML: {_reason(exc)} at line {line}, column {column + 1}"
        ) from None
    except defusedxml.DefusedXmlException as exc:
        raise SourceError(f"{origin}: refused unsafe XML ({exc})") from None
    if root.tag != f"{{{NS['atom']}}}feed":
        raise SourceError(f"{origin} is not an Atom feed (root element is {root.tag})")
    return root


def _reason(exc: ParseError) -> str:
    # "not well-formed (invalid token): line 3, column 4" -> "not well-formed (invalid token)"
    return str(exc).split(": line ")[0]


def _raise_if_error(entries: list[Element], origin: str) -> None:
    for entry in entries:
        if _is_error(entry):
            message = _text(entry, "atom:summary") or "unknown error"
            raise SourceError(f"arXiv API error for {origin}: {message}")


def _is_error(entry: Element) -> bool:
    entry_id = _text(entry, "atom:id") or ""
    return "/api/errors" in entry_id or (_text(entry, "atom:title") == "Error" and not entry_id)


def _page_info(data: bytes, origin: str) -> tuple[int, int | None]:
    """(entries on this page, opensearch:totalResults or None); raises on an error feed."""
    root = _parse_feed(data, origin)
    entries = root.findall("atom:entry", NS)
    _raise_if_error(entries, origin)
    total = _text(root, "opensearch:totalResults")
    return len(entries), int(total) if total and total.isdigit() else None


def _entry_to_paper(
    entry: Element, origin: str, number: int, max_abstract_chars: int
) -> Paper | RecordError:
    title = _text(entry, "atom:title")
    try:
        published = _text(entry, "atom:published")
        updated = _text(entry, "atom:updated")
        return make_paper(
            title=title,
            abstract=_text(entry, "atom:summary"),
            source="arxiv",
            # make_paper takes the id and version from the abs URL: .../abs/2410.17243v2
            arxiv_id=_text(entry, "atom:id") or None,
            authors=[_text(a, "atom:name") or "" for a in entry.findall("atom:author", NS)],
            categories=_categories(entry),
            published=parse_iso_date(published, "published") if published else None,
            updated=parse_iso_date(updated, "updated") if updated else None,
            url=_link(entry, rel="alternate"),
            pdf_url=_link(entry, title="pdf"),
            max_abstract_chars=max_abstract_chars,
        )
    except InvalidRecord as exc:
        return RecordError(origin, describe(number, title), str(exc))


def _text(element: Element, path: str) -> str | None:
    found = element.find(path, NS)
    return found.text.strip() if found is not None and found.text else None


def _categories(entry: Element) -> list[str]:
    """All category terms, the primary one first, without repeats."""
    primary = entry.find("arxiv:primary_category", NS)
    terms = [primary.get("term", "")] if primary is not None else []
    terms += [c.get("term", "") for c in entry.findall("atom:category", NS)]
    return list(dict.fromkeys(t for t in terms if t))


def _link(entry: Element, *, rel: str | None = None, title: str | None = None) -> str | None:
    for link in entry.findall("atom:link", NS):
        if (rel is None or link.get("rel") == rel) and (
            title is None or link.get("title") == title
        ):
            href = link.get("href")
            if href:
                # The API still writes http:// links; arxiv.org serves (and prefers) https.
                return href.replace("http://arxiv.org/", "https://arxiv.org/", 1)
    return None


def _check_ids(ids: Sequence[str]) -> list[str]:
    """Normalise ids ('arXiv:2410.17243v2' -> '2410.17243v2'); SourceError names a bad one."""
    checked: list[str] = []
    for raw in ids:
        parsed = parse_arxiv_id(raw)
        if parsed is None:
            raise SourceError(
                f"{raw!r} is not an arXiv id (expected e.g. 2410.17243 or 2410.17243v2)"
            )
        arxiv_id, version = parsed
        checked.append(f"{arxiv_id}v{version}" if version else arxiv_id)
    return list(dict.fromkeys(checked))
