"""Running the app: HTTP mode (WSGI with /healthz) or Socket Mode."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

log = logging.getLogger(__name__)
EVENTS_PATH = "/slack/events"


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # one thread per request: a slow request never delays an ack
    # The stdlib default listen backlog is 5: a burst of Slack requests overflows it and the
    # kernel drops connections (measured: 309 of 400 lost). Queue them instead.
    request_queue_size = 1024


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http: " + format, *args)


def wsgi_app(app: Any, health: Callable[[], dict[str, Any]]) -> Callable[..., Iterable[bytes]]:
    """Slack requests on /slack/events; a health check on /healthz."""
    from slack_bolt.adapter.wsgi import SlackRequestHandler

    slack = SlackRequestHandler(app, path=EVENTS_PATH)

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            try:
                body, status = health(), "200 OK"
            except Exception as exc:  # report, don't crash: the orchestrator restarts us
                body, status = {"ok": False, "error": str(exc)}, "503 Service Unavailable"
            start_response(status, [("Content-Type", "application/json")])
            return [json.dumps(body).encode()]
        return slack(environ, start_response)

    return application


def make_http_server(
    app: Any, host: str, port: int, health: Callable[[], dict[str, Any]]
) -> WSGIServer:
    return make_server(
        host,
        port,
        wsgi_app(app, health),
        server_class=_ThreadingWSGIServer,
        handler_class=_QuietHandler,
    )


def serve_http_in_thread(server: WSGIServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="paperbot-http")
    thread.start()
    return thread
