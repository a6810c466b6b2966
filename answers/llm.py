"""The language model: the provider factory and the one runner every LLM call goes through.

`ChatOpenAI` talks to OpenAI or to any server with the same API (Ollama, vLLM, llama.cpp)
through ``base_url``. The openai client retries 429/5xx/timeouts with exponential backoff
(``max_retries``). Without a key or a base URL paperbot answers extractively, offline.

`LLMRunner` turns a prompt name into an LCEL chain (template | chat model) and runs it once,
as a batch (per-item errors) or streamed; every openai failure becomes an `LLMError` with an
actionable message, and every reply carries its token usage. QA, TL;DRs and digests use it.

A call given ``timeout`` (what is left of an answer's deadline) ends when it passes, whatever
the client is doing (a request, a back-off before a retry, a slow stream): the request is
cancelled and `LLMDeadlineError` raised, with the text streamed so far. The per-request
``PAPERBOT_LLM_TIMEOUT`` and the client's retries still apply inside that bound.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from answers.errors import LLMDeadlineError, LLMError
from answers.settings import AnswerSettings
from prompts import load
from retrieval import ConfigError

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.runnables import Runnable

    from retrieval import Corpus

log = logging.getLogger(__name__)
T = TypeVar("T")
_PLACEHOLDER_KEY = "not-needed"  # local OpenAI-compatible servers ignore the key
BATCH_CONCURRENCY = 4  # parallel requests in LLMRunner.batch; small, to stay under rate limits


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
    from langchain.chat_models import init_chat_model

    # No kept-alive async connections: each `asyncio.run` (one per streamed answer in the
    # Slack worker threads) has its own event loop, and a pooled connection from a closed
    # loop would fail the next stream with "Event loop is closed".
    limits = type(openai.DEFAULT_CONNECTION_LIMITS)(max_keepalive_connections=0)
    # LangChain's provider-neutral factory (langchain-openai's ChatOpenAI for "openai").
    return init_chat_model(
        settings.llm_model,
        model_provider="openai",
        http_async_client=openai.DefaultAsyncHttpxClient(limits=limits),
        base_url=settings.llm_base_url,
        api_key=key or _PLACEHOLDER_KEY,
        timeout=settings.llm_timeout,
        max_retries=settings.llm_max_retries,
        temperature=settings.llm_temperature,
        max_tokens=settings.llm_max_tokens,
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


def as_llm_error(error: BaseException, model: str) -> LLMError:
    """An exception returned by ``Runnable.batch(return_exceptions=True)`` as an LLMError.

    Anything that is not an API failure (a bug) is raised, not hidden behind a fallback.
    """
    if isinstance(error, LLMError):
        return error
    try:
        with llm_errors(model):
            raise error
    except LLMError as converted:
        return converted


def to_messages(rendered: Sequence[tuple[str, str]]) -> list[Any]:
    """(role, text) pairs from `Prompt.render` as LangChain chat messages."""
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    kinds = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}
    return [kinds[role](content=text) for role, text in rendered]


# ---------------------------------------------------------------------- the runner
@dataclass(frozen=True, slots=True)
class Reply:
    """A model's reply: its text and the tokens it cost."""

    text: str
    usage: Usage = Usage()


class LLMRunner:
    """Runs the prompt templates of `prompts/` on the chat model (None = no LLM: `available`
    is False and the callers answer extractively).

    A prompt's chain is ``RunnableLambda(render the template) | chat model``, built once per
    prompt name. Variables are the template's placeholders, as strings.
    """

    def __init__(
        self,
        chat_model: BaseChatModel | None,
        settings: AnswerSettings | None = None,
        *,
        max_concurrency: int = BATCH_CONCURRENCY,
    ) -> None:
        self.chat_model = chat_model
        self.settings = settings or AnswerSettings()
        self.model = model_name(chat_model)  # the name in notes, cache keys and answers
        self.max_concurrency = max_concurrency
        self._chains: dict[str, Runnable[Mapping[str, str], Any]] = {}

    @property
    def available(self) -> bool:
        return self.chat_model is not None

    def chain(self, prompt_name: str) -> Runnable[Mapping[str, str], Any]:
        """The LCEL chain of a prompt: its variables in, the model's message out."""
        if self.chat_model is None:
            raise LLMError("No language model is configured; paperbot answers extractively.")
        chain = self._chains.get(prompt_name)
        if chain is None:
            from langchain_core.runnables import RunnableLambda

            prompt = load(prompt_name)

            def render(variables: Mapping[str, str]) -> list[Any]:
                return to_messages(prompt.render(**variables))

            chain = RunnableLambda(render) | self.chat_model
            self._chains[prompt_name] = chain
        return chain

    def invoke(self, prompt_name: str, *, timeout: float | None = None, **variables: str) -> Reply:
        """One call; raises LLMError when the model fails, LLMDeadlineError when ``timeout``
        seconds (retries included) pass first."""
        chain = self.chain(prompt_name)
        if timeout is None:
            with llm_errors(self.model):
                message = chain.invoke(variables)
            return Reply(str(message.content), usage_of(message))
        if timeout <= 0:
            raise self.deadline_error()
        with llm_errors(self.model):
            try:
                message = _run_within(lambda: chain.ainvoke(variables), timeout)
            except TimeoutError:
                raise self.deadline_error() from None
        return Reply(str(message.content), usage_of(message))

    def deadline_error(self, partial: str = "") -> LLMDeadlineError:
        seconds = self.settings.answer_deadline_seconds
        return LLMDeadlineError(
            f"The language model ({self.model}) did not finish within the {seconds:g} s answer "
            "deadline (PAPERBOT_ANSWER_DEADLINE_SECONDS).",
            partial,
        )

    def batch(
        self, prompt_name: str, inputs: Sequence[Mapping[str, str]]
    ) -> list[Reply | LLMError]:
        """One call per input, ``max_concurrency`` at a time, in the order of ``inputs``; a
        failed call is its LLMError in the list, so the others still count."""
        if not inputs:
            return []
        outputs = self.chain(prompt_name).batch(
            list(inputs), config={"max_concurrency": self.max_concurrency}, return_exceptions=True
        )
        return [
            as_llm_error(out, self.model)
            if isinstance(out, BaseException)
            else Reply(str(out.content), usage_of(out))
            for out in outputs
        ]

    async def astream(
        self, prompt_name: str, *, timeout: float | None = None, **variables: str
    ) -> AsyncIterator[str | Reply]:
        """The reply's text pieces as they are generated, then the whole `Reply` (always
        last, with the usage the server reported). A failure at any point, including a
        stream dropped midway, raises LLMError; ``timeout`` seconds after the call (the
        consumer's time between pieces included) LLMDeadlineError, with the text so far."""
        chain = self.chain(prompt_name)
        parts: list[str] = []
        usage = Usage()
        end = None if timeout is None else time.monotonic() + timeout
        stream = chain.astream(variables).__aiter__()
        try:
            with llm_errors(self.model):
                while True:
                    left = None if end is None else end - time.monotonic()
                    if left is not None and left <= 0:
                        raise self.deadline_error("".join(parts))
                    try:
                        chunk = await asyncio.wait_for(anext(stream), left)
                    except StopAsyncIteration:
                        break
                    except TimeoutError:
                        raise self.deadline_error("".join(parts)) from None
                    usage = usage + usage_of(chunk)
                    if chunk.content:
                        parts.append(str(chunk.content))
                        yield str(chunk.content)
        finally:
            await _close(stream)
        yield Reply("".join(parts), usage)

    def cost(self, usage: Usage) -> float:
        """USD for ``usage`` on this model, from the configured price table."""
        return estimate_cost(self.settings, self.model, usage)


def _run_within(make: Callable[[], Awaitable[T]], seconds: float) -> T:
    """Await ``make()`` on an event loop of its own, cancelled after ``seconds``
    (TimeoutError). From inside a running loop, the loop of its own runs in a helper thread."""

    async def bounded() -> T:
        return await asyncio.wait_for(make(), seconds)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(bounded())
    with ThreadPoolExecutor(1, thread_name_prefix="llm-deadline") as pool:
        return pool.submit(asyncio.run, bounded()).result()


async def _close(stream: Any) -> None:
    """Close an abandoned stream (its HTTP response); a stream broken by a cancellation may
    fail to close, which changes nothing for the caller."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:
            log.debug("closing an abandoned LLM stream failed", exc_info=True)


class LLMService:
    """What QAService, Summarizer and DigestService share: the corpus, the answer settings,
    and the runner every LLM call goes through. ``llm`` None means extractive mode; a given
    ``runner`` (one shared between services, with its chains) takes the place of ``llm``."""

    def __init__(
        self,
        corpus: Corpus,
        llm: BaseChatModel | None,
        settings: AnswerSettings | None = None,
        *,
        runner: LLMRunner | None = None,
    ) -> None:
        self.corpus = corpus
        self.runner = runner or LLMRunner(llm, settings)
        self.settings = settings or self.runner.settings
        self.llm = self.runner.chat_model
        self.model = self.runner.model  # the model's name, or "extractive"
