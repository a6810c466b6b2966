"""LLM provider factory: an OpenAI-compatible chat model, or None for extractive mode.

`ChatOpenAI` talks to OpenAI or to any server with the same API (Ollama, vLLM, llama.cpp)
through ``base_url``. The openai client retries 429/5xx/timeouts with exponential backoff
(``max_retries``). Without a key or a base URL paperbot answers extractively, offline.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from answers.errors import LLMError
from answers.settings import AnswerSettings
from retrieval.errors import ConfigError

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

log = logging.getLogger(__name__)
_PLACEHOLDER_KEY = "not-needed"  # local OpenAI-compatible servers ignore the key


@dataclass(frozen=True, slots=True)
class Usage:
    tokens_in: int = 0
    tokens_out: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.tokens_in + other.tokens_in, self.tokens_out + other.tokens_out)


def build_chat_model(settings: AnswerSettings) -> BaseChatModel | None:
    """The configured chat model, or None when paperbot should answer extractively."""
    if settings.resolved_llm_provider == "extractive":
        return None
    key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
    if not key and not settings.llm_base_url:
        raise ConfigError(
            "PAPERBOT_LLM_PROVIDER=openai needs PAPERBOT_OPENAI_API_KEY (or PAPERBOT_LLM_API_KEY), "
            "or PAPERBOT_LLM_BASE_URL for a local OpenAI-compatible server."
        )
    import openai
    from langchain_openai import ChatOpenAI

    # No kept-alive async connections: each `asyncio.run` (one per streamed answer in the
    # Slack worker threads) has its own event loop, and a pooled connection from a closed
    # loop would fail the next stream with "Event loop is closed".
    limits = type(openai.DEFAULT_CONNECTION_LIMITS)(max_keepalive_connections=0)
    return ChatOpenAI(
        http_async_client=openai.DefaultAsyncHttpxClient(limits=limits),
        model=settings.llm_model,
        base_url=settings.llm_base_url,
        api_key=key or _PLACEHOLDER_KEY,  # type: ignore[arg-type]
        timeout=settings.llm_timeout,
        max_retries=settings.llm_max_retries,
        temperature=settings.llm_temperature,
        max_tokens=settings.llm_max_tokens,  # type: ignore[call-arg]
        stream_usage=True,
    )


def describe(settings: AnswerSettings) -> str:
    """One line for logs and `paperbot doctor`; never includes the key."""
    if settings.resolved_llm_provider == "extractive":
        return "extractive (no LLM configured: answers quote the abstracts)"
    where = settings.llm_base_url or "https://api.openai.com/v1"
    return f"{settings.llm_model} at {where}"


def model_name(model: BaseChatModel | None) -> str:
    if model is None:
        return "extractive"
    return str(getattr(model, "model_name", None) or getattr(model, "model", "llm"))


def estimate_cost(settings: AnswerSettings, model: str, usage: Usage) -> float:
    """USD, from the configured price table (0 for models it does not list)."""
    price_in, price_out = settings.llm_prices.get(model, (0.0, 0.0))
    return (usage.tokens_in * price_in + usage.tokens_out * price_out) / 1_000_000


def usage_of(message: Any) -> Usage:
    """Token counts from a LangChain AI message (or chunk) when the server reported them."""
    meta = getattr(message, "usage_metadata", None) or {}
    return Usage(int(meta.get("input_tokens", 0)), int(meta.get("output_tokens", 0)))


@contextmanager
def llm_errors(model: str) -> Iterator[None]:
    """Turn the openai client's exceptions into one LLMError with an actionable message."""
    import openai

    try:
        yield
    except openai.APITimeoutError as exc:
        raise LLMError(
            f"The language model ({model}) did not answer in time; try again, or raise "
            "PAPERBOT_LLM_TIMEOUT."
        ) from exc
    except openai.RateLimitError as exc:
        raise LLMError(
            f"The language model ({model}) is rate-limited even after retries; try again shortly."
        ) from exc
    except openai.AuthenticationError as exc:
        raise LLMError(
            f"The language model ({model}) rejected the API key; check PAPERBOT_OPENAI_API_KEY."
        ) from exc
    except openai.APIConnectionError as exc:
        raise LLMError(
            f"The connection to the language model ({model}) failed or dropped; check "
            "PAPERBOT_LLM_BASE_URL and that the server is running, then try again."
        ) from exc
    except openai.APIStatusError as exc:
        raise LLMError(
            f"The language model ({model}) failed with HTTP {exc.status_code}; try again later."
        ) from exc
    except openai.APIError as exc:  # e.g. the connection dropped in the middle of a stream
        raise LLMError(f"The language model ({model}) failed: {exc}; try again.") from exc
