"""A scripted HTTP server for testing the live fetchers without the internet.

    with FeedServer() as server:
        server.enqueue("/api/daily_papers", 503)
        server.enqueue("/api/daily_papers", 200, b"[]")
        ...  # GET server.url + "/api/daily_papers"
        assert [r.params for r in server.requests] == [...]

Responses queued for a path are served in order; the last one repeats for later requests.
A path with nothing queued answers 404.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tests.support.http_fake import Exchange, HTTPFake, Request


@dataclass(frozen=True)
class Scripted:
    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (to provoke client timeouts)


class FeedServer(HTTPFake[Request]):
    """Serves scripted responses per path and records every request."""

    def __init__(self) -> None:
        super().__init__()
        self._scripts: dict[str, list[Scripted]] = {}

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
            queue = self._scripts.get(request.path)
            scripted = (queue.pop(0) if len(queue) > 1 else queue[0]) if queue else None
        if scripted is None:
            ex.send(404, b"not found")
            return
        self.pause(scripted.delay)
        ex.send(scripted.status, scripted.body, scripted.headers)
