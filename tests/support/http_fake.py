"""The base of the local test peers: a threaded stdlib HTTP server on 127.0.0.1 (a free port)
that hands each request to the fake's `handle`, plus the start/stop lifecycle it shares with
the websocket Socket Mode fake::

    class Teapot(HTTPFake[Request]):
        def handle(self, request: Request, ex: Exchange) -> None:
            self.record(request)
            ex.send_json(418, {"error": "I'm a teapot"})

    with Teapot() as fake:  # or fake = Teapot().start() ... fake.stop()
        httpx.get(fake.url + "/brew")
        assert fake.requests[0].path == "/brew"
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, Self, TypeVar
from urllib.parse import parse_qsl, urlsplit

T = TypeVar("T")
R = TypeVar("R")  # what a fake records per request

JSON = "application/json; charset=utf-8"


class Peer:
    """A server run in a background thread for a test: start()/stop() or ``with``."""

    def __init__(self) -> None:
        self._cond = threading.Condition()  # guards the peer's state; notified on news
        self._stopping = threading.Event()  # set by stop(): cuts `pause`s short

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def pause(self, seconds: float) -> None:
        """Wait in a handler (a slow answer), but no longer than until stop()."""
        self._stopping.wait(seconds)

    def wait_until(self, probe: Callable[[], T | None], timeout: float, what: str) -> T:
        """Block until probe() (run with the lock held) returns something other than None."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while (found := probe()) is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"waited {timeout}s for {what}; {self._seen()}")
                self._cond.wait(left)
            return found

    def _seen(self) -> str:
        """What the peer saw, for the message of a failed wait."""
        return ""


@dataclass(frozen=True)
class Request:
    """One HTTP request as it arrived."""

    method: str
    path: str
    params: dict[str, str]  # the query string
    headers: dict[str, str]  # lower-cased names
    body: bytes


class HTTPFake(Peer, Generic[R]):
    """A threaded HTTP server; subclasses answer in `handle` and `record` what they got."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[R] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        self._stopping.clear()
        handler = type("BoundExchange", (Exchange,), {"fake": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.02},  # a quick shutdown(), so a quick teardown
            name=type(self).__name__,
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def record(self, request: R) -> None:
        with self._cond:
            self.requests.append(request)
            self._cond.notify_all()

    def handle(self, request: Request, ex: Exchange) -> None:
        raise NotImplementedError


class Exchange(BaseHTTPRequestHandler):
    """The stdlib handler: parses the request for `fake.handle`, writes what it answers. A
    client that has gone away (its timeout fired) is not an error."""

    fake: HTTPFake[Any]  # set on the subclass made in start()
    protocol_version = "HTTP/1.1"  # keep-alive and chunked streams, as the real services

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        parts = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=parts.path,
            params=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self.rfile.read(length) if length else b"",
        )
        self.fake.handle(request, self)

    def send_head(self, status: int, headers: Mapping[str, str]) -> None:
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
        except OSError:
            self.close_connection = True

    def send(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        self.send_head(status, {**(headers or {}), "content-length": str(len(body))})
        self.write(body)

    def send_json(self, status: int, value: Any, headers: Mapping[str, str] | None = None) -> None:
        self.send(status, json.dumps(value).encode(), {"content-type": JSON, **(headers or {})})

    def write(self, data: bytes) -> None:
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def cut(self) -> None:
        """Drop the connection now (a body cut short)."""
        self.close_connection = True
        with contextlib.suppress(OSError):  # already closed by the peer
            self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, format: str, *args: Any) -> None:
        return  # keep test output quiet
