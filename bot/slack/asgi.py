"""The ASGI application: Slack requests on /slack/events, /healthz and /readyz.

Requests are screened before Bolt parses anything: a body over `max_body_bytes` gets 413
without being read (by its Content-Length, or as soon as a streamed body passes the cap), a
bad Content-Length 400, a missing or forged signature or a non-integer timestamp 401. Bolt
only ever sees signed, small bodies, so it never logs a stranger's body. Bolt's `dispatch`
(which runs the ack listeners; the answering work is in lazy listeners on Bolt's own
executor) runs on a bounded thread pool, never on the event loop.

`create_asgi_app(settings, services)` builds it for `paperbot serve`; the module-level `app`
builds itself from the environment on first use, for `uvicorn bot.slack.asgi:app`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from slack_sdk.signature import Clock as SdkClock

from bot.slack.ack_gate import AckGate

if TYPE_CHECKING:
    from bot.services import Services
    from bot.slack.feed_watcher import FeedWatcher
    from bot.slack.settings import SlackSettings

log = logging.getLogger(__name__)
EVENTS_PATH = "/slack/events"
MAX_BODY_BYTES = 1 << 20  # Slack's bodies are a few KB
BODY_TIMEOUT_SECONDS = 10.0
SIGNATURE_MAX_AGE_SECONDS = 60 * 5
DISPATCH_THREADS = 32

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Check = Callable[[], dict[str, Any]]


class _Reject(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class SlackASGI:
    """Screens requests, hands signed ones to Bolt on a thread pool, answers health checks."""

    def __init__(
        self,
        bolt_app: Any,
        *,
        signing_secret: str | None,
        liveness: Check | None = None,
        readiness: Check | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        body_timeout: float = BODY_TIMEOUT_SECONDS,
        dispatch_threads: int = DISPATCH_THREADS,
        clock: Callable[[], float] = time.time,
        gate: AckGate | None = None,
    ) -> None:
        self.bolt_app = bolt_app
        self.signing_secret = signing_secret
        self.liveness = liveness or (lambda: {"ok": True})
        self.readiness = readiness
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self.clock = clock
        self.gate = gate or AckGate()  # the answer queue's: its workers give way to acks
        # Acks only: the answering work runs in Bolt's listener executor (bot/slack/app.py).
        self._pool = ThreadPoolExecutor(max_workers=dispatch_threads, thread_name_prefix="ack")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope.get("path", ""), scope.get("method", "GET")
        try:
            if path in ("/healthz", "/readyz") and method in ("GET", "HEAD"):
                check = self.liveness if path == "/healthz" else self.readiness or self.liveness
                status, body = await self._health(check)
                await _respond(send, status, json.dumps(body), "application/json")
            elif path == EVENTS_PATH and method == "POST":
                await self._slack(scope, receive, send)
            elif path == EVENTS_PATH:
                await _respond(send, 405, "Method Not Allowed")
            else:
                await _respond(send, 404, "Not Found")
        except _Reject as exc:
            log.info("http: %s %s -> %d (%s)", method, path, exc.status, exc.message)
            await _respond(send, exc.status, exc.message)
        except Exception as exc:  # never a traceback (nor a body) for a stranger's request
            log.warning("http: %s %s failed: %s", method, path, type(exc).__name__)
            log.debug("http: request failed", exc_info=True)
            await _respond(send, 400, "Bad Request")

    async def _health(self, check: Check) -> tuple[int, dict[str, Any]]:
        loop = asyncio.get_running_loop()
        try:
            body = await loop.run_in_executor(self._pool, check)
        except Exception as exc:  # report, don't crash: the orchestrator restarts us
            return 503, {"ok": False, "error": str(exc).splitlines()[0] if str(exc) else ""}
        return (200 if body.get("ok", True) else 503), body

    async def _slack(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _headers(scope)
        self._screen_headers(headers)
        body = await self._read_body(headers, receive)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise _Reject(400, "Bad Request: the body is not UTF-8") from None
        self._verify(headers, text)
        from slack_bolt.request import BoltRequest

        query = scope.get("query_string", b"").decode("latin-1")
        request = BoltRequest(body=text, query=query, headers={k: [v] for k, v in headers.items()})
        loop = asyncio.get_running_loop()
        try:
            with self.gate.acking():  # from the queue for an ack thread to the response
                response = await loop.run_in_executor(self._pool, self.bolt_app.dispatch, request)
        except Exception:  # Bolt turns listener errors into responses; this is the rest
            log.exception("http: Slack request failed")
            raise _Reject(400, "Bad Request") from None
        out_headers = [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in response.first_headers_without_set_cookie().items()
            if k.lower() != "content-length"
        ]
        raw = (response.body or "").encode("utf-8")
        await _send(send, response.status, out_headers, raw)

    def _screen_headers(self, headers: dict[str, str]) -> None:
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():  # negative, empty or not a number
                raise _Reject(400, "Bad Request: invalid Content-Length")
            if int(length) > self.max_body_bytes:
                raise _Reject(413, "Payload Too Large")
        if self.signing_secret is None:
            return
        timestamp = headers.get("x-slack-request-timestamp")
        signature = headers.get("x-slack-signature")
        if not timestamp or not signature:
            raise _Reject(401, "Unauthorized: missing Slack signature headers")
        if not timestamp.isdigit():
            raise _Reject(401, "Unauthorized: invalid X-Slack-Request-Timestamp")
        if abs(self.clock() - int(timestamp)) > SIGNATURE_MAX_AGE_SECONDS:
            raise _Reject(401, "Unauthorized: stale X-Slack-Request-Timestamp")

    async def _read_body(self, headers: dict[str, str], receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        deadline = asyncio.get_running_loop().time() + self.body_timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                message = await asyncio.wait_for(receive(), timeout=max(remaining, 0.001))
            except TimeoutError:
                raise _Reject(408, "Request Timeout") from None
            if message["type"] == "http.disconnect":
                raise _Reject(400, "Bad Request: client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _Reject(413, "Payload Too Large")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _verify(self, headers: dict[str, str], body: str) -> None:
        if self.signing_secret is None:
            return
        from slack_sdk.signature import SignatureVerifier

        verifier = SignatureVerifier(self.signing_secret, clock=_Clock(self.clock))
        if not verifier.is_valid(
            body, headers.get("x-slack-request-timestamp"), headers.get("x-slack-signature")
        ):
            raise _Reject(401, "Unauthorized: invalid Slack signature")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class _Clock(SdkClock):
    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now

    def now(self) -> float:
        return self._now()


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


async def _respond(send: Send, status: int, body: str, ctype: str = "text/plain") -> None:
    await _send(
        send, status, [(b"content-type", f"{ctype}; charset=utf-8".encode())], body.encode()
    )


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


# ------------------------------------------------------------------ health
def slack_auth(client: Any) -> dict[str, Any]:
    """auth.test once at start: {"ok": True, "team": …, "bot_user": …} or the error."""
    try:
        resp = client.auth_test()
        return {"ok": True, "team": resp.get("team"), "bot_user": resp.get("user_id")}
    except Exception as exc:  # SlackApiError (bad token) or a connection error
        return {"ok": False, "error": _first_line(exc)}


def readiness_check(
    services: Services,
    settings: SlackSettings,
    *,
    watcher: FeedWatcher | None = None,
    auth: dict[str, Any] | None = None,
    queue: Check | None = None,
) -> Check:
    """/readyz: state store, vector store, model, Slack auth, feeds, answer queue (and the BM25
    warm-up's progress, never failing); `ok` is false (503) when any part that the bot needs
    to answer is down."""

    def check() -> dict[str, Any]:
        from bot.slack.feed_watcher import health

        checks: dict[str, Any] = {}
        checks["state_store"] = _probe(lambda: services.store.feeds() and None)
        checks["vector_store"] = _probe(lambda: {"papers": services.corpus.count_papers()})
        checks["model"] = {"ok": _model_loaded(services)}
        checks["slack_auth"] = auth if auth is not None else {"ok": True, "checked": False}
        feeds = health(services.store, settings.feed_alert_failures, watcher)
        checks["feeds"] = {
            "ok": "feeds_error" not in feeds and feeds["feed_watcher"] != "stopped",
            **{k: v for k, v in feeds.items() if k != "feeds"},
        }
        if queue is not None:
            checks["queue"] = _probe(queue)
        warmth = _probe(services.corpus.lexical_warmth)
        if len(warmth) > 1:  # for a glance (searches work while it warms): never failing
            checks["bm25_warm"] = {**warmth, "ok": True}
        ok = all(c.get("ok", False) for c in checks.values())
        return {"ok": ok, **checks}

    return check


def liveness_check(
    services: Services, settings: SlackSettings, watcher: FeedWatcher | None = None
) -> Check:
    """/healthz: the process answers; papers and feeds for a glance (never 503 for a feed)."""

    def check() -> dict[str, Any]:
        from bot.slack.feed_watcher import health

        feeds = health(services.store, settings.feed_alert_failures, watcher)
        return {"ok": True, "papers": services.corpus.count_papers(), **feeds}

    return check


def _probe(fn: Callable[[], Any]) -> dict[str, Any]:
    try:
        extra = fn()
    except Exception as exc:
        return {"ok": False, "error": _first_line(exc)}
    return {"ok": True, **(extra if isinstance(extra, dict) else {})}


def _model_loaded(services: Services) -> bool:
    return bool(services.corpus.model_loaded())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


# ------------------------------------------------------------------ factories
def create_asgi_app(
    settings: SlackSettings,
    services: Services,
    *,
    bolt_app: Any = None,
    watcher: FeedWatcher | None = None,
    auth: dict[str, Any] | None = None,
    queue: Check | None = None,
) -> SlackASGI:
    """The ASGI app for `paperbot serve` (or any ASGI server)."""
    if bolt_app is None:
        from bot.slack.app import create_app

        bolt_app = create_app(settings, services)
    if queue is None and getattr(services, "answer_queue", None) is not None:
        queue = services.answer_queue.stats  # made by the app's listeners
    secret = settings.signing_secret.get_secret_value() if settings.signing_secret else None
    answer_queue = getattr(services, "answer_queue", None)
    return SlackASGI(
        bolt_app,
        gate=answer_queue.gate if answer_queue is not None else None,
        signing_secret=secret,
        liveness=liveness_check(services, settings, watcher),
        readiness=readiness_check(services, settings, watcher=watcher, auth=auth, queue=queue),
        max_body_bytes=settings.http_max_body_bytes,
        body_timeout=settings.http_body_timeout_seconds,
    )


class _LazyApp:
    """`uvicorn bot.slack.asgi:app`: built from the environment on first use, so importing
    this module has no side effects. Feeds and digests are `paperbot serve`'s job."""

    def __init__(self) -> None:
        self._app: SlackASGI | None = None
        self._services: Services | None = None
        self._lock = threading.Lock()

    def _build(self) -> SlackASGI:
        with self._lock:
            if self._app is None:
                from answers.settings import AnswerSettings
                from bot.services import Services
                from bot.slack.app import create_app
                from bot.slack.settings import SlackSettings
                from retrieval import RetrievalSettings

                settings = SlackSettings()
                services = Services.build(RetrievalSettings(), AnswerSettings())
                services.warm_up()
                bolt_app = create_app(settings, services)
                auth = slack_auth(bolt_app.client)
                self._app = create_asgi_app(settings, services, bolt_app=bolt_app, auth=auth)
                self._services = services
                if services.answer_queue is not None:
                    services.answer_queue.start()  # resume what a stopped process left
            return self._app

    def _stop(self) -> None:
        queue = getattr(self._services, "answer_queue", None)
        if queue is not None:
            queue.stop()  # finish or hand back the answers in flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # build at startup; stop the answer queue at shutdown
            loop = asyncio.get_running_loop()
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await loop.run_in_executor(None, self._build)
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await loop.run_in_executor(None, self._stop)
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        built = self._app
        if built is None:
            built = await asyncio.get_running_loop().run_in_executor(None, self._build)
        await built(scope, receive, send)


app = _LazyApp()
