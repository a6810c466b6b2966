"""The LLM provider layer with the real `openai` client against a local OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
from langchain_core.messages import AIMessage

from answers.errors import LLMError
from answers.llm import (
    LLMRunner,
    Reply,
    Usage,
    build_chat_model,
    describe,
    estimate_cost,
    llm_errors,
    model_name,
    to_messages,
    usage_of,
)
from answers.settings import AnswerSettings
from prompts import PromptError
from retrieval import ConfigError
from tests.support.openai_server import CHAT_PATH, FakeOpenAIServer

pytestmark = pytest.mark.integration

SECRET = "sk-test-SECRET-0123456789abcdef"
Make = Callable[..., AnswerSettings]


@pytest.fixture
def make_settings(make_answer_settings: Make) -> Make:
    """Every test here is about the chat model's settings."""
    return make_answer_settings


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(default_reply="GVGEN generates 3D Gaussians from text.") as srv:
        yield srv


def _openai(make_settings: Make, server: FakeOpenAIServer, **extra: Any) -> AnswerSettings:
    values: dict[str, Any] = {
        "llm_provider": "openai",
        "llm_base_url": server.base_url,
        "llm_model": "gpt-test",
        "llm_timeout": 2,
        "llm_max_retries": 1,
    }
    return make_settings(**(values | extra))


def _chat(settings: AnswerSettings) -> Any:
    model = build_chat_model(settings)
    assert model is not None
    return model


# ---------------------------------------------------------------------- factory
def test_extractive_and_auto_without_key_mean_no_model(make_settings: Make) -> None:
    assert build_chat_model(make_settings(llm_provider="extractive")) is None
    assert build_chat_model(make_settings(llm_provider="auto")) is None
    # a key with provider=extractive still means extractive
    assert build_chat_model(make_settings(llm_provider="extractive", llm_api_key=SECRET)) is None
    assert model_name(None) == "extractive"


def test_openai_with_base_url_builds_chat_openai(
    make_settings: Make, server: FakeOpenAIServer
) -> None:
    from langchain_openai import ChatOpenAI

    settings = _openai(make_settings, server, llm_timeout=7, llm_max_retries=2, llm_max_tokens=123)
    model = build_chat_model(settings)
    assert isinstance(model, ChatOpenAI)
    assert model.model_name == "gpt-test" and model_name(model) == "gpt-test"
    assert model.openai_api_base == server.base_url
    assert model.request_timeout == 7 and model.max_retries == 2
    assert model.max_tokens == 123 and model.temperature == 0.0
    assert model.stream_usage is True


def test_auto_picks_openai_with_a_key_or_a_base_url(
    make_settings: Make, server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from langchain_openai import ChatOpenAI

    # the shared OpenAI variables (also used for embeddings) serve the chat model too
    monkeypatch.setenv("PAPERBOT_OPENAI_API_KEY", SECRET)
    with_key = make_settings()
    assert with_key.resolved_llm_provider == "openai"
    assert isinstance(build_chat_model(with_key), ChatOpenAI)
    monkeypatch.delenv("PAPERBOT_OPENAI_API_KEY")
    monkeypatch.setenv("PAPERBOT_OPENAI_BASE_URL", server.base_url)
    model = build_chat_model(make_settings())
    assert isinstance(model, ChatOpenAI) and model.openai_api_base == server.base_url
    # the chat-specific settings win over the shared OpenAI ones
    monkeypatch.setenv("PAPERBOT_OPENAI_BASE_URL", "http://127.0.0.1:1/v1")
    monkeypatch.setenv("PAPERBOT_LLM_BASE_URL", server.base_url)
    assert make_settings(llm_model="m2").llm_base_url == server.base_url


def test_openai_without_key_or_base_url_is_a_config_error(make_settings: Make) -> None:
    with pytest.raises(ConfigError, match="PAPERBOT_OPENAI_API_KEY") as info:
        build_chat_model(make_settings(llm_provider="openai"))
    assert "PAPERBOT_LLM_BASE_URL" in str(info.value)


def test_describe(make_settings: Make) -> None:
    assert describe(make_settings(llm_provider="extractive")).startswith("extractive")
    hosted = make_settings(llm_api_key=SECRET)
    assert describe(hosted) == "gpt-4o-mini at https://api.openai.com/v1"
    local = make_settings(llm_base_url="http://127.0.0.1:11434/v1", llm_model="llama3")
    assert describe(local) == "llama3 at http://127.0.0.1:11434/v1"


# ---------------------------------------------------------------------- the key stays secret
def test_api_key_never_in_describe_repr_or_dumps(
    make_settings: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("PAPERBOT_LLM_API_KEY", "PAPERBOT_OPENAI_API_KEY"):
        monkeypatch.setenv(variable, SECRET)
        settings = make_settings()
        monkeypatch.delenv(variable)
        assert SECRET not in describe(settings)
        assert SECRET not in repr(settings) and SECRET not in str(settings)
        assert SECRET not in settings.model_dump_json()
        assert SECRET not in repr(build_chat_model(settings))


def test_api_key_never_in_logs(make_settings: Make, caplog: pytest.LogCaptureFixture) -> None:
    with FakeOpenAIServer(api_key=SECRET, default_reply="Fine.") as server:
        caplog.set_level(logging.DEBUG)  # openai, httpx and httpcore log requests at DEBUG
        model = _chat(_openai(make_settings, server, llm_api_key=SECRET))
        with llm_errors("gpt-test"):
            assert model.invoke("hello").content == "Fine."
        assert server.requests[-1].headers["authorization"] == f"Bearer {SECRET}"
        wrong = _chat(_openai(make_settings, server, llm_api_key=SECRET[::-1]))
        with pytest.raises(LLMError, match="rejected the API key"), llm_errors("gpt-test"):
            wrong.invoke("hello")
    assert caplog.records  # logging did happen
    assert SECRET not in caplog.text and SECRET[::-1] not in caplog.text


# ---------------------------------------------------------------------- chat over HTTP
def test_chat_non_streaming_and_streaming_report_usage(
    make_settings: Make, server: FakeOpenAIServer
) -> None:
    model = _chat(_openai(make_settings, server))
    message = model.invoke("What is GVGEN?")
    assert message.content == "GVGEN generates 3D Gaussians from text."
    assert usage_of(message) == Usage(3, 6)  # the server counts words
    body = server.requests[-1].body
    assert body["model"] == "gpt-test" and body["messages"][-1]["content"] == "What is GVGEN?"
    assert body["temperature"] == 0.0

    pieces: list[str] = []
    usage = Usage()
    for chunk in model.stream("What is GVGEN?"):
        pieces.append(str(chunk.content))
        usage = usage + usage_of(chunk)
    assert len([p for p in pieces if p]) > 1  # really streamed, word by word
    assert "".join(pieces) == "GVGEN generates 3D Gaussians from text."
    assert usage == Usage(3, 6)
    assert server.requests[-1].body["stream"] is True

    async def collect() -> str:
        return "".join([str(c.content) async for c in model.astream("What is GVGEN?")])

    assert asyncio.run(collect()) == "GVGEN generates 3D Gaussians from text."


# ---------------------------------------------------------------------- error mapping
def _fails(model: Any, message: str, cause: type[BaseException]) -> LLMError:
    with pytest.raises(LLMError, match=message) as info, llm_errors("gpt-test"):
        model.invoke("What is GVGEN?")
    assert isinstance(info.value.__cause__, cause)
    assert "gpt-test" in str(info.value)
    return info.value


def test_401_wrong_key(make_settings: Make) -> None:
    with FakeOpenAIServer(api_key="the-right-key") as server:
        model = _chat(_openai(make_settings, server, llm_api_key="a-wrong-key"))
        error = _fails(model, "rejected the API key", openai.AuthenticationError)
        assert "PAPERBOT_OPENAI_API_KEY" in str(error)
        assert len(server.requests) == 1  # 401 is not retried


def test_429_exhausted_after_retries(make_settings: Make, server: FakeOpenAIServer) -> None:
    for _ in range(3):
        server.enqueue_error(429, headers={"retry-after-ms": "5"})
    model = _chat(_openai(make_settings, server, llm_max_retries=2))
    _fails(model, "rate-limited even after retries", openai.RateLimitError)
    assert len(server.requests_to(CHAT_PATH)) == 3  # first try + 2 retries


def test_429_then_success(make_settings: Make, server: FakeOpenAIServer) -> None:
    server.enqueue_error(429, headers={"retry-after": "0"})
    model = _chat(_openai(make_settings, server))
    with llm_errors("gpt-test"):
        assert model.invoke("q").content == "GVGEN generates 3D Gaussians from text."
    assert len(server.requests) == 2


def test_500(make_settings: Make, server: FakeOpenAIServer) -> None:
    server.enqueue_error(500, headers={"retry-after-ms": "5"})
    server.enqueue_error(500, headers={"retry-after-ms": "5"})
    model = _chat(_openai(make_settings, server))
    _fails(model, "failed with HTTP 500; try again later", openai.InternalServerError)


def test_400_is_a_status_error_without_retry(make_settings: Make, server: FakeOpenAIServer) -> None:
    server.enqueue_error(400)
    model = _chat(_openai(make_settings, server))
    _fails(model, "failed with HTTP 400", openai.BadRequestError)
    assert len(server.requests) == 1


def test_timeout(make_settings: Make, server: FakeOpenAIServer) -> None:
    server.enqueue_hang(3)
    server.enqueue_hang(3)
    model = _chat(_openai(make_settings, server, llm_timeout=0.3))
    error = _fails(model, "did not answer in time", openai.APITimeoutError)
    assert "PAPERBOT_LLM_TIMEOUT" in str(error)


def test_connection_refused(make_settings: Make) -> None:
    server = FakeOpenAIServer().start()
    settings = _openai(make_settings, server, llm_max_retries=0)
    server.stop()
    error = _fails(_chat(settings), "connection to the language model", openai.APIConnectionError)
    assert "PAPERBOT_LLM_BASE_URL" in str(error)


def test_drop_in_the_middle_of_a_stream(make_settings: Make, server: FakeOpenAIServer) -> None:
    server.default_reply = "one two three four five six seven eight nine ten"
    server.enqueue_drop_midstream()
    server.enqueue_drop_midstream()
    model = _chat(_openai(make_settings, server))
    pieces: list[str] = []
    with pytest.raises(LLMError, match="gpt-test"), llm_errors("gpt-test"):
        pieces.extend(str(chunk.content) for chunk in model.stream("q"))
    assert "".join(pieces) != server.default_reply


def test_other_exceptions_pass_through() -> None:
    with pytest.raises(KeyError), llm_errors("gpt-test"):
        raise KeyError("not an API error")


# ---------------------------------------------------------------------- accounting
def test_estimate_cost(make_settings: Make) -> None:
    settings = make_settings()
    usage = Usage(1_000_000, 500_000)
    assert estimate_cost(settings, "gpt-4o-mini", usage) == pytest.approx(0.15 + 0.30)
    assert estimate_cost(settings, "unknown-model", usage) == 0.0
    custom = make_settings(llm_prices={"gpt-test": (1.0, 2.0)})
    assert estimate_cost(custom, "gpt-test", Usage(1000, 100)) == pytest.approx(0.0012)
    assert estimate_cost(custom, "gpt-test", Usage()) == 0.0


def test_usage_of_and_addition() -> None:
    message = AIMessage(
        content="x", usage_metadata={"input_tokens": 12, "output_tokens": 3, "total_tokens": 15}
    )
    assert usage_of(message) == Usage(12, 3)
    assert usage_of(AIMessage(content="x")) == Usage()
    assert usage_of(object()) == Usage()
    assert Usage(1, 2) + Usage(10, 20) == Usage(11, 22)


# ---------------------------------------------------------------------- the runner
def test_to_messages_maps_roles() -> None:
    messages = to_messages([("system", "S"), ("user", "U"), ("assistant", "A")])
    assert [(m.type, m.content) for m in messages] == [("system", "S"), ("human", "U"), ("ai", "A")]


def test_runner_without_a_model_is_unavailable(make_settings: Make) -> None:
    runner = LLMRunner(None, make_settings(llm_provider="extractive"))
    assert not runner.available and runner.model == "extractive"
    with pytest.raises(LLMError, match="extractively"):
        runner.invoke("topic", titles="- A")


def test_runner_invoke_renders_the_prompt_and_reports_usage(
    make_settings: Make, server: FakeOpenAIServer
) -> None:
    settings = _openai(make_settings, server, llm_prices={"gpt-test": (1.0, 2.0)})
    runner = LLMRunner(_chat(settings), settings)
    assert runner.available and runner.model == "gpt-test"
    reply = runner.invoke("topic", titles="- GVGEN\n- SweetDreamer")
    assert reply.text == "GVGEN generates 3D Gaussians from text."
    assert reply.usage.tokens_in > 0 and reply.usage.tokens_out == 6
    assert runner.cost(reply.usage) == estimate_cost(settings, "gpt-test", reply.usage) > 0
    messages = server.requests_to(CHAT_PATH)[-1].body["messages"]
    assert messages[0]["role"] == "system" and "- SweetDreamer" in messages[-1]["content"]


def test_runner_maps_errors_to_llm_error(make_settings: Make, server: FakeOpenAIServer) -> None:
    server.enqueue_error(400)
    runner = LLMRunner(_chat(_openai(make_settings, server)))
    with pytest.raises(LLMError, match="HTTP 400") as info:
        runner.invoke("topic", titles="- A")
    assert isinstance(info.value.__cause__, openai.BadRequestError)


def test_runner_batch_keeps_order_and_returns_per_item_errors(
    make_settings: Make, server: FakeOpenAIServer
) -> None:
    server.default_reply = lambda body: "About " + body["messages"][-1]["content"].split()[-3]
    server.enqueue_error(400)  # the first request fails, without a retry
    runner = LLMRunner(_chat(_openai(make_settings, server)), max_concurrency=1)
    replies = runner.batch("topic", [{"titles": f"- Paper{i}"} for i in range(4)])
    first, *rest = replies
    assert isinstance(first, LLMError) and "HTTP 400" in str(first)
    assert rest == [Reply(f"About Paper{i}", r.usage) for i, r in enumerate(rest, 1)]
    assert all(isinstance(r, Reply) and r.usage.tokens_out == 2 for r in rest)
    assert runner.batch("topic", []) == []


def test_runner_batch_raises_what_is_not_an_api_error(
    make_settings: Make, server: FakeOpenAIServer
) -> None:
    runner = LLMRunner(_chat(_openai(make_settings, server)))
    with pytest.raises(PromptError, match="missing values"):
        runner.batch("topic", [{"names": "- A"}])  # a bug is raised, not hidden as a fallback
    assert not server.requests_to(CHAT_PATH)


def test_runner_streams_pieces_then_the_reply(
    make_settings: Make, server: FakeOpenAIServer
) -> None:
    runner = LLMRunner(_chat(_openai(make_settings, server)))

    async def collect() -> list[str | Reply]:
        return [p async for p in runner.astream("topic", titles="- A")]

    *pieces, last = asyncio.run(collect())
    assert len(pieces) > 1 and all(isinstance(p, str) for p in pieces)
    assert isinstance(last, Reply) and last.text == "".join(str(p) for p in pieces)
    assert last.text == "GVGEN generates 3D Gaussians from text." and last.usage.tokens_out == 6


def test_runner_stream_dropped_midway_is_an_llm_error(
    make_settings: Make, server: FakeOpenAIServer
) -> None:
    server.default_reply = "one two three four five six seven eight nine ten"
    server.enqueue_drop_midstream()
    server.enqueue_drop_midstream()
    runner = LLMRunner(_chat(_openai(make_settings, server)))
    pieces: list[str | Reply] = []

    async def collect() -> None:
        async for piece in runner.astream("topic", titles="- A"):
            pieces.append(piece)

    with pytest.raises(LLMError, match="gpt-test"):
        asyncio.run(collect())
    assert not any(isinstance(p, Reply) for p in pieces)
