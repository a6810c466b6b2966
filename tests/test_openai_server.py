"""The fake OpenAI server, checked with the real `openai` client."""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.support.openai_server import CHAT_PATH, EMBEDDINGS_PATH, FakeOpenAIServer


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(dim=8) as srv:
        yield srv


def client_for(server: FakeOpenAIServer, **kwargs: object) -> openai.OpenAI:
    options: dict[str, object] = {"timeout": 5.0, "max_retries": 0} | kwargs
    return openai.OpenAI(api_key="test-key", base_url=server.base_url, **options)  # type: ignore[arg-type]


def ask(client: openai.OpenAI, text: str = "hi there") -> str:
    response = client.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": text}]
    )
    return response.choices[0].message.content or ""


def test_chat_default_echo_and_recording(server: FakeOpenAIServer) -> None:
    client = client_for(server)
    response = client.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "what is RAG?"}]
    )
    assert response.choices[0].message.content == "echo: what is RAG?"
    assert response.choices[0].finish_reason == "stop"
    assert response.usage is not None and response.usage.prompt_tokens == 3
    (req,) = server.requests
    assert req.path == CHAT_PATH and req.method == "POST"
    assert req.headers["authorization"] == "Bearer test-key"
    assert req.body["messages"][0]["content"] == "what is RAG?"


def test_chat_scripted_then_default(server: FakeOpenAIServer) -> None:
    server.enqueue_chat("first")
    server.default_reply = "fallback"
    client = client_for(server)
    assert ask(client) == "first"
    assert ask(client) == "fallback"
    server.default_reply = lambda body: body["model"].upper()
    assert ask(client) == "GPT-TEST"


def test_chat_streaming_with_usage(server: FakeOpenAIServer) -> None:
    server.enqueue_chat("Retrieval  augmented generation.")
    stream = client_for(server).chat.completions.create(
        model="gpt-test",
        messages=[{"role": "user", "content": "q"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Retrieval  augmented generation."
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    assert len(chunks) >= 5  # role, 3 words, finish, usage


def test_chat_streaming_without_usage_by_default(server: FakeOpenAIServer) -> None:
    stream = client_for(server).chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "q"}], stream=True
    )
    chunks = list(stream)
    assert all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "echo: q"


def test_models(server: FakeOpenAIServer) -> None:
    ids = [m.id for m in client_for(server).models.list()]
    assert ids == ["gpt-test", "embed-test"]


def test_embeddings_float_and_base64_agree(server: FakeOpenAIServer) -> None:
    client = client_for(server)
    floats = client.embeddings.create(model="e", input=["a", "b"], encoding_format="float")
    assert [len(d.embedding) for d in floats.data] == [8, 8]
    raw = client.embeddings.create(model="e", input=["a", "b"], encoding_format="base64")
    encoded = raw.data[1].embedding
    assert isinstance(encoded, str)  # an explicit format is returned as sent
    decoded = struct.unpack("<8f", base64.b64decode(encoded))
    assert decoded == pytest.approx(floats.data[1].embedding, abs=1e-6)
    # Without encoding_format the client asks for base64 and decodes it itself.
    auto = client.embeddings.create(model="e", input="a")
    assert auto.data[0].embedding == pytest.approx(floats.data[0].embedding, abs=1e-6)
    assert server.requests_to(EMBEDDINGS_PATH)[-1].body["encoding_format"] == "base64"
    assert floats.data[0].embedding == pytest.approx(server.vector("a"), abs=1e-6)  # deterministic
    assert server.vector("a") != server.vector("b")


def test_429_then_success_with_client_retries(server: FakeOpenAIServer) -> None:
    server.enqueue_error(429, headers={"retry-after-ms": "10"})
    server.enqueue_error(429, headers={"retry-after": "0.01"})
    assert ask(client_for(server, max_retries=2)) == "echo: hi there"
    assert len(server.requests) == 3


def test_500_is_internal_server_error(server: FakeOpenAIServer) -> None:
    server.enqueue_error(500, {"error": {"message": "boom", "type": "server_error"}})
    with pytest.raises(openai.InternalServerError, match="boom"):
        ask(client_for(server))


def test_error_only_for_its_path(server: FakeOpenAIServer) -> None:
    server.enqueue_error(404, path=EMBEDDINGS_PATH)
    client = client_for(server)
    assert ask(client) == "echo: hi there"  # the chat request skips the embeddings script
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="e", input=["a"])
    assert server.pending == 0


def test_hang_times_out(server: FakeOpenAIServer) -> None:
    server.enqueue_hang(5)
    start = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        ask(client_for(server, timeout=0.3))
    assert time.monotonic() - start < 3
    assert ask(client_for(server)) == "echo: hi there"  # the server still serves others


def test_drop_midstream_streaming(server: FakeOpenAIServer) -> None:
    server.enqueue_drop_midstream("one two three four five six")
    stream = client_for(server).chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "q"}], stream=True
    )
    received: list[str] = []
    with pytest.raises((httpx.HTTPError, openai.APIError)):
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) != "one two three four five six"


def test_drop_midstream_json(server: FakeOpenAIServer) -> None:
    server.enqueue_drop_midstream()
    with pytest.raises(openai.APIConnectionError):
        ask(client_for(server))


def test_api_key_checked_when_set() -> None:
    with FakeOpenAIServer(api_key="right") as srv:
        with pytest.raises(openai.AuthenticationError):
            ask(client_for(srv))
        good = openai.OpenAI(api_key="right", base_url=srv.base_url, max_retries=0)
        assert ask(good) == "echo: hi there"
