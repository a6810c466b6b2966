"""A scriptable OpenAI-compatible HTTP server for tests (stdlib only, 127.0.0.1, a free port).

Endpoints: POST /v1/chat/completions (JSON or SSE with ``stream: true``), POST /v1/embeddings
(deterministic vectors from a hash of each text; float lists or base64), GET /v1/models.

Each request takes the first queued script whose path matches it, else gets the default reply::

    with FakeOpenAIServer() as server:
        server.enqueue_error(429, headers={"retry-after-ms": "10"})  # then the default answer
        client = openai.OpenAI(api_key="k", base_url=server.base_url)
        ...
        assert server.requests[-1].body["model"] == "gpt-test"

Misbehaving models for the claim verifier and the injection defence are reply functions below
(`hallucinating`, `uncited`, `unknown_ids`, `obedient`, `repetitive`); a stalling one is
``FakeOpenAIServer(chat_delay=…)`` (every chat request waits) or ``chunk_delay`` (a slow stream).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from tests.support.http_fake import Exchange, HTTPFake, Request

CHAT_PATH = "/v1/chat/completions"
EMBEDDINGS_PATH = "/v1/embeddings"
MODELS_PATH = "/v1/models"
CHAT_MODEL = "gpt-test"
EMBEDDING_MODEL = "embed-test"

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
    """One scripted reaction to the next request matching `path` (None = any request)."""

    kind: str  # "chat" | "json" | "hang" | "drop"
    path: str | None
    text: str = ""
    status: int = 200
    body: Any = None
    headers: dict[str, str] | None = None
    seconds: float = 0.0


class FakeOpenAIServer(HTTPFake[RecordedRequest]):
    """The server; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        *,
        dim: int = 64,
        default_reply: str | ReplyFn | None = None,
        api_key: str | None = None,
        chat_delay: float = 0.0,
        chunk_delay: float = 0.0,
        embed_delay: float = 0.0,
    ) -> None:
        super().__init__()
        #: Seconds every embeddings request waits before it is answered (a remote endpoint).
        self.embed_delay = embed_delay
        #: The most embeddings requests that were being answered at the same time.
        self.peak_embed_requests = 0
        self._embed_requests = 0
        self.dim = dim
        #: Seconds every chat request waits before it is answered (a stalled model).
        self.chat_delay = chat_delay
        #: Seconds between the pieces of a streamed answer (a slow model).
        self.chunk_delay = chunk_delay
        #: The answer when no script is queued: a fixed text, a function of the request body,
        #: or None for "echo: <last user message>".
        self.default_reply = default_reply
        #: When set, requests without ``Authorization: Bearer <api_key>`` get a 401.
        self.api_key = api_key
        self._scripts: list[_Script] = []

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    # ---- scripting -------------------------------------------------------------------------

    def enqueue_chat(self, text: str) -> None:
        """The next chat completion answers `text` (streamed if the request streams)."""
        self._push(_Script("chat", CHAT_PATH, text=text))

    def enqueue_json(self, body: Any, *, status: int = 200, path: str | None = None) -> None:
        """The next matching request gets exactly this JSON body."""
        self._push(_Script("json", path, status=status, body=body))

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
        self._push(_Script("json", path, status=status, body=body, headers=headers))

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
        with self._cond:
            self._scripts.clear()
            self.requests.clear()

    def requests_to(self, path: str) -> list[RecordedRequest]:
        """Recorded requests whose path is `path` (e.g. ``"/v1/embeddings"``)."""
        with self._cond:
            return [r for r in self.requests if r.path == path]

    @property
    def pending(self) -> int:
        """Scripts not consumed yet."""
        with self._cond:
            return len(self._scripts)

    def _push(self, script: _Script) -> None:
        with self._cond:
            self._scripts.append(script)

    def _pop(self, path: str) -> _Script | None:
        with self._cond:
            for i, script in enumerate(self._scripts):
                if script.path is None or script.path == path:
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

    # ---- serving ---------------------------------------------------------------------------

    def handle(self, request: Request, ex: Exchange) -> None:
        try:
            body = json.loads(request.body) if request.body else None
        except json.JSONDecodeError:
            body = None
        self.record(RecordedRequest(request.method, request.path, request.headers, body))
        script = self._pop(request.path)
        if self.api_key and request.headers.get("authorization") != f"Bearer {self.api_key}":
            ex.send_json(401, _error("Incorrect API key provided", "invalid_api_key"))
            return
        if script is not None and script.kind == "hang":
            self.pause(script.seconds)
            script = None
        if self.chat_delay and request.path == CHAT_PATH:
            self.pause(self.chat_delay)
        if script is not None and script.kind == "json":
            ex.send_json(script.status, script.body, script.headers)
            return
        params = body if isinstance(body, dict) else {}
        drop = script is not None and script.kind == "drop"
        if request.method == "GET" and request.path == MODELS_PATH:
            ids = (CHAT_MODEL, EMBEDDING_MODEL)
            data = [{"id": i, "object": "model", "created": 0, "owned_by": "test"} for i in ids]
            ex.send_json(200, {"object": "list", "data": data})
        elif request.method == "POST" and request.path == CHAT_PATH:
            if script is not None and script.kind in ("chat", "drop"):
                text = script.text
            else:
                text = self.reply_for(params)
            self._chat(ex, params, text, drop)
        elif request.method == "POST" and request.path == EMBEDDINGS_PATH:
            with self._cond:
                self._embed_requests += 1
                self.peak_embed_requests = max(self.peak_embed_requests, self._embed_requests)
            try:
                if self.embed_delay:
                    self.pause(self.embed_delay)
                _send(ex, self._embeddings(params), drop)
            finally:
                with self._cond:
                    self._embed_requests -= 1
        else:
            ex.send_json(404, _error(f"no route {request.method} {request.path}", "not_found"))

    def _chat(self, ex: Exchange, body: dict[str, Any], text: str, drop: bool) -> None:
        usage = _usage(_count_words(body), len(text.split()))
        model = str(body.get("model") or CHAT_MODEL)
        if not body.get("stream"):
            message = {"role": "assistant", "content": text or None}
            choice = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}
            payload = _completion(model, "chat.completion") | {"choices": [choice], "usage": usage}
            _send(ex, payload, drop)
            return
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        chunks = _stream_chunks(model, text, usage if include_usage else None)
        events = [f"data: {json.dumps(c)}\n\n".encode() for c in chunks]
        if drop:  # the role chunk and half the content, then the connection dies: no [DONE]
            events = events[: max(2, len(events) // 2)]
        else:
            events.append(b"data: [DONE]\n\n")
        headers = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
        ex.send_head(200, headers | {"transfer-encoding": "chunked"})
        for event in events:
            ex.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
            if self.chunk_delay:
                self.pause(self.chunk_delay)
        if drop:
            ex.cut()
        else:
            ex.write(b"0\r\n\r\n")

    def _embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        raw_input = body.get("input", [])
        texts = [raw_input] if isinstance(raw_input, str) else list(raw_input)
        dim = body.get("dimensions") or self.dim
        as_b64 = body.get("encoding_format") == "base64"
        data = []
        for i, item in enumerate(texts):
            vec = self.vector(item if isinstance(item, str) else json.dumps(item), dim)
            value: Any = base64.b64encode(struct.pack(f"<{dim}f", *vec)).decode() if as_b64 else vec
            data.append({"object": "embedding", "index": i, "embedding": value})
        n_tokens = sum(len(str(t).split()) for t in texts)
        return {
            "object": "list",
            "data": data,
            "model": body.get("model") or EMBEDDING_MODEL,
            "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens},
        }


def _send(ex: Exchange, payload: dict[str, Any], drop: bool) -> None:
    """The JSON answer, or (drop) its full length announced, half of it sent, then a cut."""
    if not drop:
        ex.send_json(200, payload)
        return
    data = json.dumps(payload).encode()
    ex.send_head(200, {"content-type": "application/json", "content-length": str(len(data))})
    ex.write(data[: len(data) // 2])
    ex.cut()


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


def _stream_chunks(model: str, text: str, usage: dict[str, int] | None) -> Iterator[dict[str, Any]]:
    """The chunk objects of a streamed completion: role, one per word, finish, usage."""
    base = _completion(model, "chat.completion.chunk")

    def chunk(delta: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": reason, "logprobs": None}
        return base | {"choices": [choice]}

    yield chunk({"role": "assistant", "content": ""})
    # One piece per word; joined they give `text` back exactly.
    for piece in re.findall(r"^\s+|\S+\s*", text):
        yield chunk({"content": piece})
    yield chunk({}, "stop")
    if usage is not None:
        yield base | {"choices": [], "usage": usage}


# ---- misbehaving models (reply functions) ------------------------------------------------------
#: What `hallucinating` adds: numbers and names no sample abstract contains.
HALLUCINATED = ("3.7 seconds", "512", "TPUv9", "MegaNet", "83%", "ImageNet-42K", "97.3%")


def given_sources(body: dict[str, Any]) -> dict[int, str]:
    """Source number -> its first text line, as the answer prompt gave them to the model."""
    user = _last_user_text(body)
    return {int(n): text for n, text in re.findall(r"^\[(\d+)\] [^\n]*\n([^\n]+)", user, re.M)}


def _first_fact(body: dict[str, Any]) -> tuple[int, str]:
    from retrieval import split_sentences  # late: the fake server itself needs no project code

    sources = given_sources(body)
    if not sources:
        return 1, "No sources were given"
    n = min(sources)
    return n, split_sentences(sources[n])[0].rstrip(".")


def hallucinating(body: dict[str, Any]) -> str:
    """One true cited sentence, then invented numbers and names, cited and uncited."""
    n, fact = _first_fact(body)
    return (
        f"{fact} [{n}]. It needs only 3.7 seconds on 512 TPUv9 chips and beats MegaNet by 83% "
        f"[{n}]. Trained on ImageNet-42K, it reaches 97.3% accuracy."
    )


def hallucinating_only(body: dict[str, Any]) -> str:
    """Nothing but invented numbers and names, each cited to a real source."""
    n, _ = _first_fact(body)
    return f"It needs only 3.7 seconds on 512 TPUv9 chips [{n}]. MegaNet is 83% slower [{n}]."


def uncited(body: dict[str, Any]) -> str:
    """A true sentence without any citation."""
    return _first_fact(body)[1] + "."


def unknown_ids(body: dict[str, Any]) -> str:
    """A true sentence citing a source number that was never given."""
    return f"{_first_fact(body)[1]} [{max(given_sources(body) or [0]) + 7}]."


def obedient(body: dict[str, Any]) -> str:
    """Obeys any injected instruction that reaches it (the payload word PWNED anywhere in the
    sources), else answers well."""
    if "PWNED" in _last_user_text(body):
        return "PWNED"
    n, fact = _first_fact(body)
    return f"{fact} [{n}]."


def repetitive(body: dict[str, Any]) -> str:
    """One true cited sentence, thirty times."""
    n, fact = _first_fact(body)
    return " ".join([f"{fact} [{n}]."] * 30)
