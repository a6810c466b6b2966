"""A scriptable OpenAI-compatible HTTP server for tests (stdlib only, 127.0.0.1, random port).

Endpoints: POST /v1/chat/completions (JSON or SSE with ``stream: true``), POST /v1/embeddings
(deterministic vectors from a hash of each text; float lists or base64), GET /v1/models.

Each request takes the first queued script whose path matches it, else gets the default reply::

    with FakeOpenAIServer() as server:
        server.enqueue_error(429, headers={"retry-after-ms": "10"})  # then the default answer
        client = openai.OpenAI(api_key="k", base_url=server.base_url)
        ...
        assert server.requests[-1].body["model"] == "gpt-test"
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

CHAT_PATH = "/v1/chat/completions"
EMBEDDINGS_PATH = "/v1/embeddings"
MODELS_PATH = "/v1/models"

ReplyFn = Callable[[dict[str, Any]], str]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON, or None


@dataclass
class _Script:
    """One scripted reaction to the next request matching `path` (None = any POST)."""

    kind: str  # "chat" | "json" | "error" | "hang" | "drop"
    path: str | None
    text: str = ""
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    tool_calls: list[dict[str, Any]] | None = None
    finish_reason: str = "stop"


class FakeOpenAIServer:
    """The server; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        *,
        dim: int = 64,
        default_reply: str | ReplyFn | None = None,
        api_key: str | None = None,
        chat_model: str = "gpt-test",
        embedding_model: str = "embed-test",
        stream_delay: float = 0.0,
    ) -> None:
        self.dim = dim
        #: The answer when no script is queued: a fixed text, a function of the request body,
        #: or None for "echo: <last user message>".
        self.default_reply = default_reply
        #: When set, requests without ``Authorization: Bearer <api_key>`` get a 401.
        self.api_key = api_key
        self.chat_model = chat_model
        self.embedding_model = embedding_model
        #: Seconds between SSE chunks (to test slow streams).
        self.stream_delay = stream_delay
        self.requests: list[RecordedRequest] = []
        self._scripts: list[_Script] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()  # wakes hung handlers on stop()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeOpenAIServer:
        self._stopping.clear()
        handler = type("_BoundHandler", (_Handler,), {"fake": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.02},  # quick shutdown()
            name="fake-openai",
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

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- scripting -------------------------------------------------------------------------

    def enqueue_chat(
        self,
        text: str,
        *,
        tool_calls: list[dict[str, Any]] | None = None,
        finish_reason: str | None = None,
    ) -> None:
        """The next chat completion answers `text` (streamed if the request streams).

        `tool_calls` items are ``{"name": ..., "arguments": {...} or "json", "id": optional}``.
        """
        reason = finish_reason or ("tool_calls" if tool_calls else "stop")
        self._push(
            _Script("chat", CHAT_PATH, text=text, tool_calls=tool_calls, finish_reason=reason)
        )

    def enqueue_json(
        self,
        body: Any,
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
        path: str | None = None,
    ) -> None:
        """The next matching request gets exactly this JSON body."""
        self._push(_Script("json", path, status=status, body=body, headers=headers or {}))

    def enqueue_error(
        self,
        status: int,
        body: Any = None,
        headers: dict[str, str] | None = None,
        *,
        path: str | None = None,
    ) -> None:
        """The next matching request fails with `status` (body defaults to an OpenAI error)."""
        if body is None:
            body = {"error": {"message": f"scripted error {status}", "type": "test", "code": None}}
        self._push(_Script("error", path, status=status, body=body, headers=headers or {}))

    def enqueue_hang(self, seconds: float, *, path: str | None = None) -> None:
        """The next matching request waits `seconds` before it is answered (as by default)."""
        self._push(_Script("hang", path, seconds=seconds))

    def enqueue_drop_midstream(
        self, text: str = "partial answer", *, path: str | None = None
    ) -> None:
        """The next matching request gets part of its body, then the connection is cut."""
        self._push(_Script("drop", path, text=text))

    def reset(self) -> None:
        """Forget queued scripts and recorded requests."""
        with self._lock:
            self._scripts.clear()
            self.requests.clear()

    def requests_to(self, path: str) -> list[RecordedRequest]:
        """Recorded requests whose path is `path` (e.g. ``"/v1/embeddings"``)."""
        with self._lock:
            return [r for r in self.requests if r.path == path]

    @property
    def pending(self) -> int:
        """Scripts not consumed yet."""
        with self._lock:
            return len(self._scripts)

    def _push(self, script: _Script) -> None:
        with self._lock:
            self._scripts.append(script)

    def _record_and_pop(self, request: RecordedRequest) -> _Script | None:
        with self._lock:
            self.requests.append(request)
            for i, script in enumerate(self._scripts):
                if script.path is None or script.path == request.path:
                    return self._scripts.pop(i)
            return None

    # ---- default behaviour -----------------------------------------------------------------

    def reply_for(self, body: dict[str, Any]) -> str:
        if callable(self.default_reply):
            return self.default_reply(body)
        if self.default_reply is not None:
            return self.default_reply
        return f"echo: {_last_user_text(body)}"

    def vector(self, text: str, dim: int | None = None) -> list[float]:
        """The deterministic fake embedding of `text`: values in [-1, 1) from sha256."""
        n = dim or self.dim
        raw = b"".join(
            hashlib.sha256(f"{i}:{text}".encode()).digest() for i in range((n * 4 + 31) // 32)
        )
        ints = struct.unpack(f"<{n}I", raw[: n * 4])
        return [v / 2**31 - 1.0 for v in ints]

    def _wait(self, seconds: float) -> None:
        self._stopping.wait(seconds)


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):  # content parts
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


def _count_words(body: dict[str, Any]) -> int:
    """A stand-in for token counting: whitespace words in all messages."""
    return sum(len(str(m.get("content") or "").split()) for m in body.get("messages") or [])


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenAIServer  # set on the subclass made in start()
    protocol_version = "HTTP/1.1"  # keep-alive and chunked SSE, as the real API

    def log_message(self, format: str, *args: Any) -> None:
        return  # keep pytest output clean

    # ---- routing ---------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._handle(None)

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = None
        self._handle(body)

    def _handle(self, body: Any) -> None:
        path = self.path.split("?", 1)[0]
        headers = {k.lower(): v for k, v in self.headers.items()}
        script = self.fake._record_and_pop(RecordedRequest(self.command, path, headers, body))
        if self.fake.api_key and headers.get("authorization") != f"Bearer {self.fake.api_key}":
            self._send_json(401, _error("Incorrect API key provided", "invalid_api_key"))
            return
        if script is not None and script.kind == "hang":
            self.fake._wait(script.seconds)
            script = None
        if script is not None and script.kind in ("error", "json"):
            self._send_json(script.status, script.body, script.headers)
            return
        self._route(path, body if isinstance(body, dict) else {}, script)

    def _route(self, path: str, body: dict[str, Any], script: _Script | None) -> None:
        if self.command == "GET" and path == MODELS_PATH:
            self._send_json(200, self._models())
        elif self.command == "POST" and path == CHAT_PATH:
            self._chat(body, script)
        elif self.command == "POST" and path == EMBEDDINGS_PATH:
            self._embeddings(body, script)
        else:
            self._send_json(404, _error(f"no route {self.command} {path}", "not_found"))

    def _models(self) -> dict[str, Any]:
        ids = [self.fake.chat_model, self.fake.embedding_model]
        data = [{"id": i, "object": "model", "created": 0, "owned_by": "test"} for i in ids]
        return {"object": "list", "data": data}

    # ---- chat ------------------------------------------------------------------------------

    def _chat(self, body: dict[str, Any], script: _Script | None) -> None:
        text = script.text if script and script.kind == "chat" else self.fake.reply_for(body)
        tool_calls = _tool_calls(script.tool_calls) if script and script.tool_calls else None
        reason = script.finish_reason if script and script.kind == "chat" else "stop"
        usage = _usage(_count_words(body), len(text.split()))
        model = str(body.get("model") or self.fake.chat_model)
        drop = script is not None and script.kind == "drop"
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            chunks = _stream_chunks(
                model, text, tool_calls, reason, usage if include_usage else None
            )
            self._send_sse(chunks, drop=drop)
            return
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        if tool_calls:
            message["tool_calls"] = tool_calls
        choice = {"index": 0, "message": message, "finish_reason": reason, "logprobs": None}
        payload = _completion(model, "chat.completion") | {"choices": [choice], "usage": usage}
        if drop:
            self._send_truncated(payload)
        else:
            self._send_json(200, payload)

    # ---- embeddings ------------------------------------------------------------------------

    def _embeddings(self, body: dict[str, Any], script: _Script | None) -> None:
        raw_input = body.get("input", [])
        texts = [raw_input] if isinstance(raw_input, str) else list(raw_input)
        dim = body.get("dimensions") or self.fake.dim
        as_b64 = body.get("encoding_format") == "base64"
        data = []
        for i, item in enumerate(texts):
            vec = self.fake.vector(item if isinstance(item, str) else json.dumps(item), dim)
            value: Any = base64.b64encode(struct.pack(f"<{dim}f", *vec)).decode() if as_b64 else vec
            data.append({"object": "embedding", "index": i, "embedding": value})
        n_tokens = sum(len(str(t).split()) for t in texts)
        payload = {
            "object": "list",
            "data": data,
            "model": body.get("model") or self.fake.embedding_model,
            "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens},
        }
        if script is not None and script.kind == "drop":
            self._send_truncated(payload)
        else:
            self._send_json(200, payload)

    # ---- wire ------------------------------------------------------------------------------

    def _send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self._write(data)

    def _send_truncated(self, body: Any) -> None:
        """Announce the full length, send half, cut the connection."""
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self._write(data[: len(data) // 2])
        self._cut()

    def _send_sse(self, chunks: Iterator[dict[str, Any]], *, drop: bool) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        events = [f"data: {json.dumps(c)}\n\n".encode() for c in chunks]
        if drop:
            # The role chunk and half the content, then the connection dies: no [DONE].
            for event in events[: max(2, len(events) // 2)]:
                self._write_chunk(event)
            self._cut()
            return
        for event in [*events, b"data: [DONE]\n\n"]:
            if self.fake.stream_delay:
                self.fake._wait(self.fake.stream_delay)
            self._write_chunk(event)
        self._write(b"0\r\n\r\n")

    def _write_chunk(self, data: bytes) -> None:
        self._write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    def _write(self, data: bytes) -> None:
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. its timeout fired)

    def _cut(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):  # already closed by the peer
            self.connection.shutdown(socket.SHUT_RDWR)


def _error(message: str, code: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "code": code}}


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _completion(model: str, obj: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-test-{time.monotonic_ns()}",
        "object": obj,
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_test",
    }


def _tool_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for i, call in enumerate(calls):
        args = call.get("arguments", {})
        out.append(
            {
                "id": call.get("id", f"call_{i}"),
                "type": "function",
                "function": {
                    "name": call["name"],
                    "arguments": args if isinstance(args, str) else json.dumps(args),
                },
            }
        )
    return out


def _stream_chunks(
    model: str,
    text: str,
    tool_calls: list[dict[str, Any]] | None,
    finish_reason: str,
    usage: dict[str, int] | None,
) -> Iterator[dict[str, Any]]:
    """The chunk objects of a streamed completion: role, one per word, finish, usage."""
    base = _completion(model, "chat.completion.chunk")

    def chunk(delta: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": reason, "logprobs": None}
        return base | {"choices": [choice]}

    yield chunk({"role": "assistant", "content": ""})
    # One piece per word; joined they give `text` back exactly.
    for piece in re.findall(r"^\s+|\S+\s*", text):
        yield chunk({"content": piece})
    for i, call in enumerate(tool_calls or []):
        yield chunk({"tool_calls": [{"index": i, **call}]})
    yield chunk({}, finish_reason)
    if usage is not None:
        yield base | {"choices": [], "usage": usage}
