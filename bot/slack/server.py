"""Running the ASGI app (bot/slack/asgi.py) under uvicorn: HTTP mode, and the health side port
of Socket Mode.

`make_http_server` binds at once (port 0 = a free port, in `server_address`); `serve_forever`
runs it in the calling thread (in the main thread uvicorn handles SIGTERM/SIGINT: it stops
accepting, finishes the requests in flight, then re-raises the signal), `stop()` asks it to
stop from any thread and `shutdown()` stops and waits. A connection that has not sent its
headers within `header_timeout` is closed; idle keep-alive connections after 5 s; the event
loop holds stalled clients, not threads.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

from bot.slack.asgi import EVENTS_PATH, SlackASGI

log = logging.getLogger(__name__)
__all__ = ["EVENTS_PATH", "HttpServer", "make_http_server", "serve_http_in_thread"]
# The stdlib default listen backlog is 5: a burst of Slack requests overflows it and the kernel
# drops connections (measured: 309 of 400 lost). Queue them instead. Read at each
# make_http_server call, so benchmarks/bench_slack_burst.py's what-ifs can set it.
LISTEN_BACKLOG = 1024
MAX_CONNECTIONS = 4096  # beyond this uvicorn answers 503 instead of holding more sockets


def _header_timeout_protocol(seconds: float) -> type:
    """uvicorn's HTTP protocol (httptools' C parser; h11 where it is missing), closing
    connections that stall before their headers end (uvicorn itself only times out idle
    keep-alive connections)."""
    base: type
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    except ImportError:  # httptools not installed: the pure-Python parser
        from uvicorn.protocols.http.h11_impl import H11Protocol as base

    class _Protocol(base):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.access_log = False  # one line per request is noise under a burst

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._header_timer = self.loop.call_later(seconds, self._headers_overdue)

        def _headers_overdue(self) -> None:
            if self.cycle is None and not self.transport.is_closing():
                log.info("http: closed a connection that sent no request in %.0f s", seconds)
                self.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            self._header_timer.cancel()
            super().connection_lost(exc)

    return _Protocol


def _event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop where it is installed (several times faster per request)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class HttpServer:
    """uvicorn serving an ASGI app on a socket bound at construction."""

    def __init__(
        self,
        asgi: Any,
        host: str,
        port: int,
        *,
        header_timeout: float = 10.0,
        backlog: int = LISTEN_BACKLOG,
        on_stop: Callable[[], None] | None = None,
    ) -> None:
        import uvicorn

        self.asgi = asgi
        self._on_stop = on_stop
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.socket.bind((host, port))
        except OSError as exc:
            self.socket.close()
            raise PortInUseError(host, port, exc) from None
        self.socket.listen(backlog)
        self.server_address: tuple[str, int] = self.socket.getsockname()[:2]
        config = uvicorn.Config(
            asgi,
            http=_header_timeout_protocol(header_timeout),
            lifespan="off",
            log_config=None,  # our handlers (bot/cli/main.py); no access log with bodies
            access_log=False,
            backlog=backlog,
            timeout_keep_alive=5,
            timeout_graceful_shutdown=10,
            limit_concurrency=MAX_CONNECTIONS,
            h11_max_incomplete_event_size=16 * 1024,  # request line + headers
            server_header=False,
        )
        self.server = uvicorn.Server(config)
        self._done = threading.Event()

    def serve_forever(self) -> None:
        """Serve until `stop()` (or SIGTERM/SIGINT when run in the main thread)."""
        try:
            # uvicorn captures SIGTERM/SIGINT only in the main thread
            with asyncio.Runner(loop_factory=_event_loop) as runner:
                runner.run(self.server.serve(sockets=[self.socket]))
        finally:
            self._done.set()
            if isinstance(self.asgi, SlackASGI):
                self.asgi.close()
            if self._on_stop is not None:
                self._on_stop()

    def stop(self) -> None:
        """Stop accepting and finish the requests in flight (returns at once)."""
        self.server.should_exit = True

    def shutdown(self, timeout: float = 15.0) -> None:
        """Stop and wait until the server has closed."""
        self.stop()
        self._done.wait(timeout)
        self.socket.close()

    def server_close(self) -> None:
        """Close the listening socket (wsgiref's name; `shutdown` does it too)."""
        self.socket.close()

    @property
    def started(self) -> bool:
        return bool(self.server.started)


class PortInUseError(OSError):
    def __init__(self, host: str, port: int, exc: OSError) -> None:
        super().__init__(
            f"Cannot listen on {host}:{port}: {exc.strerror or exc}. Stop whatever uses the "
            "port or choose another (PAPERBOT_HTTP_PORT / `paperbot serve --port`, "
            "PAPERBOT_HEALTH_PORT)."
        )


def make_http_server(
    app: Any,
    host: str,
    port: int,
    health: Callable[[], dict[str, Any]],
    *,
    signing_secret: str | None = None,
    readiness: Callable[[], dict[str, Any]] | None = None,
    header_timeout: float = 10.0,
    gate: Any = None,
) -> HttpServer:
    """The Bolt `app` behind the screening ASGI layer on host:port; `health` on /healthz
    (and /readyz unless `readiness` is given). The signing secret defaults to Bolt's own."""
    if signing_secret is None:
        signing_secret = _bolt_signing_secret(app)
    asgi = SlackASGI(
        app, signing_secret=signing_secret, liveness=health, readiness=readiness, gate=gate
    )
    return HttpServer(asgi, host, port, header_timeout=header_timeout, backlog=LISTEN_BACKLOG)


def _bolt_signing_secret(app: Any) -> str | None:
    middleware = getattr(app, "_middleware_list", [])
    if not any(type(m).__name__ == "RequestVerification" for m in middleware):
        return None  # verification off (Socket Mode apps, some tests)
    verifier = getattr(app, "_signing_secret", None)
    return verifier if isinstance(verifier, str) and verifier else None


def serve_http_in_thread(server: HttpServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="paperbot-http")
    thread.start()
    for _ in range(500):  # serving within a few ms; a test may send its first request now
        if server.started or not thread.is_alive():
            break
        threading.Event().wait(0.01)
    return thread
