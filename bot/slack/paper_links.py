"""Links for papers that arrived without one: the arXiv id of a title-only paper, by title.

The HF Daily Papers page text carries titles and abstracts but no ids, so those papers are
stored under a title hash and would show no link. `ArxivLinks` asks the arXiv API for the
paper of that title (`retrieval.arxiv_id_by_title`), at most `max_lookups` per message,
paced with every other arXiv request of the process, and remembers every answer (found or
not) in memory. A failed lookup (offline, arXiv down) leaves the paper as it was — it reads
"no link" — and the rest of the message's lookups are skipped.

Nothing here runs at import or by default: a surface gets lookups only when it is given an
`ArxivLinks` (the services' `arxiv_links`, when set); tests pass one pointed at a local fake.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from retrieval import PaperbotError, arxiv_id_by_title, feeds, title_key

if TYPE_CHECKING:
    from answers.digest import Digest
    from retrieval import Paper, RetrievalSettings

log = logging.getLogger(__name__)
MAX_LOOKUPS = 20


class ArxivLinks:
    """arXiv ids of title-only papers, looked up by title and cached in memory."""

    def __init__(
        self,
        lookup: Callable[[str], str | None],
        *,
        max_lookups: int = MAX_LOOKUPS,
        pace: Callable[[], None] | None = None,
    ) -> None:
        self._lookup = lookup
        self._pace = pace or (lambda: None)
        self.max_lookups = max_lookups
        self._found: dict[str, str | None] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: RetrievalSettings, client: Any = None) -> ArxivLinks:
        """Lookups at ``PAPERBOT_ARXIV_API_URL``, paced by ``PAPERBOT_ARXIV_DELAY_SECONDS``
        with the feeds' arXiv requests."""

        def lookup(title: str) -> str | None:
            return arxiv_id_by_title(
                title,
                base_url=settings.arxiv_api_url,
                timeout=settings.request_timeout,
                retries=min(settings.max_retries, 1),
                client=client,
            )

        return cls(lookup, pace=lambda: feeds.ARXIV_PACER.wait(settings.arxiv_delay_seconds))

    def resolve(self, papers: Sequence[Paper]) -> list[Paper]:
        """The papers, each title-only one with its arXiv id when arXiv knows its title."""
        budget = self.max_lookups
        resolved: list[Paper] = []
        for paper in papers:
            if paper.arxiv_id or paper.link:
                resolved.append(paper)
                continue
            key = title_key(paper.title)
            with self._lock:
                known = key in self._found
            if not known and budget > 0:
                budget -= 1
                try:
                    self._pace()
                    found = self._lookup(paper.title)
                except PaperbotError as exc:
                    log.warning("arXiv title lookup failed, showing 'no link': %s", exc)
                    budget = 0  # offline or arXiv down: don't wait on the others
                else:
                    with self._lock:
                        self._found[key] = found
            with self._lock:
                arxiv_id = self._found.get(key)
            resolved.append(paper.model_copy(update={"arxiv_id": arxiv_id}) if arxiv_id else paper)
        return resolved

    def resolve_digest(self, digest: Digest) -> Digest:
        """The digest with its title-only papers linked (same groups, order and TL;DRs)."""
        groups = []
        for group in digest.groups:
            papers = self.resolve([p.paper for p in group.papers])
            items = [
                dataclasses.replace(item, paper=paper)
                for item, paper in zip(group.papers, papers, strict=True)
            ]
            groups.append(dataclasses.replace(group, papers=items))
        return dataclasses.replace(digest, groups=groups)


def of(services: Any) -> ArxivLinks | None:
    """The services' title lookups, when they have them (None: papers keep "no link")."""
    links = getattr(services, "arxiv_links", None)
    return links if isinstance(links, ArxivLinks) else None
