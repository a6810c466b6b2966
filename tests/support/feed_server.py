"""A scripted HTTP server for testing the live fetchers without the internet.

    with FeedServer() as server:
        server.enqueue("/api/daily_papers", 503)
        server.enqueue("/api/daily_papers", 200, b"[]")
        ...  # GET server.url + "/api/daily_papers"
        assert [r.params for r in server.requests] == [...]

Responses queued for a path are served in order; the last one repeats for later requests.
A path with nothing queued answers 404.

Feeds that fill over time (an HF day's list appearing at 08:50, an arXiv listing late) are
*published* instead, against a clock the test controls::

    server.clock = lambda: now            # the test's fake clock
    server.publish("/api/daily_papers", b"[]", params={"date": "2025-05-16"})
    server.publish("/api/daily_papers", hf_json, params={"date": "2025-05-16"}, at=at_0850)

A request gets the latest publication for its path whose `params` it carries and whose `at`
has passed (no `at`: from the start); with none visible it falls back to the queue.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from retrieval import Paper
from tests.support.http_fake import Exchange, HTTPFake, Request


@dataclass(frozen=True)
class Scripted:
    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (to provoke client timeouts)


@dataclass(frozen=True)
class Published:
    body: bytes
    params: Mapping[str, str]
    at: datetime | None
    status: int = 200


class FeedServer(HTTPFake[Request]):
    """Serves scripted responses per path and records every request."""

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        super().__init__()
        self._scripts: dict[str, list[Scripted]] = {}
        self._published: dict[str, list[Published]] = {}
        self.clock = clock  # when publications become visible (publish(..., at=))

    def publish(
        self,
        path: str,
        body: bytes | str,
        *,
        params: Mapping[str, str] | None = None,
        at: datetime | None = None,
        status: int = 200,
    ) -> None:
        """Serve ``body`` on ``path`` to requests carrying ``params``, from ``at`` on."""
        payload = body.encode() if isinstance(body, str) else body
        with self._cond:
            self._published.setdefault(path, []).append(
                Published(payload, dict(params or {}), at, status)
            )

    def _visible(self, request: Request) -> Published | None:
        now = self.clock() if self.clock else None
        candidates = [
            p
            for p in self._published.get(request.path, [])
            if all(request.params.get(k) == v for k, v in p.params.items())
            and (p.at is None or (now is not None and p.at <= now))
        ]
        if not candidates:
            return None
        return max(candidates, key=lambda p: (p.at is not None, p.at or datetime.min))

    def enqueue(
        self,
        path: str,
        status: int = 200,
        body: bytes | str = b"",
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
    ) -> None:
        payload = body.encode() if isinstance(body, str) else body
        with self._cond:
            self._scripts.setdefault(path, []).append(
                Scripted(status, payload, dict(headers or {}), delay)
            )

    def requests_to(self, path: str) -> list[Request]:
        with self._cond:
            return [r for r in self.requests if r.path == path]

    def handle(self, request: Request, ex: Exchange) -> None:
        self.record(request)
        with self._cond:
            published = self._visible(request)
        if published is not None:
            ex.send(published.status, published.body)
            return
        with self._cond:
            queue = self._scripts.get(request.path)
            scripted = (queue.pop(0) if len(queue) > 1 else queue[0]) if queue else None
        if scripted is None:
            ex.send(404, b"not found")
            return
        self.pause(scripted.delay)
        ex.send(scripted.status, scripted.body, scripted.headers)


# ---------------------------------------------------------------- payloads
def hf_json(
    papers: Sequence[Paper], first_id: int, listed: str = "2025-05-16T06:50:00.000Z"
) -> bytes:
    """The Daily Papers API shape: entries listed at `listed`, published on arXiv days earlier."""
    entries = [
        {
            "paper": {
                "id": f"2505.{first_id + n:05d}",
                "title": p.title,
                "summary": p.abstract,
                "authors": [{"name": "A. Author"}],
                "publishedAt": "2025-05-13T17:59:30.000Z",
                "upvotes": 40 - n,
            },
            "publishedAt": listed,
            "title": p.title,
            "numComments": 1,
        }
        for n, p in enumerate(papers)
    ]
    return json.dumps(entries).encode()


def arxiv_atom(papers: Sequence[Paper], first_id: int, submitted: str) -> bytes:
    """An arXiv API answer: entries submitted at `submitted` (UTC), newest first."""
    entries = "".join(
        f"""<entry><id>http://arxiv.org/abs/2505.{first_id + n:05d}v1</id>
<updated>{submitted}</updated><published>{submitted}</published>
<title>{_xml(p.title)}</title><summary>{_xml(p.abstract)}</summary>
<author><name>B. Author</name></author>
<link href="http://arxiv.org/abs/2505.{first_id + n:05d}v1" rel="alternate" type="text/html"/>
<arxiv:primary_category xmlns:arxiv="http://arxiv.org/schemas/atom" term="cs.LG"/>
<category term="cs.LG"/></entry>"""
        for n, p in enumerate(papers)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        "<title>ArXiv Query</title><id>http://arxiv.org/api/x</id>"
        '<opensearch:totalResults xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/">'
        f"{len(papers)}</opensearch:totalResults>{entries}</feed>"
    ).encode()


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
