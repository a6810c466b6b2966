"""AnswerSettings: the language model and how answers, TL;DRs and digests are written.

Each field maps to ``PAPERBOT_<FIELD>`` (e.g. ``PAPERBOT_LLM_MODEL``), like the corpus's
`RetrievalSettings`; both read the same environment and `.env` (found as `PaperbotSettings`
documents), and every variable is listed in `.env.example`. The chat key and server fall back to the OpenAI-compatible endpoint the corpus
uses for embeddings (``PAPERBOT_OPENAI_API_KEY`` / ``PAPERBOT_OPENAI_BASE_URL``), so one key
serves both. Which papers are relevant enough to answer from is the corpus's rule
(`retrieval.search.Relevance`), not a setting of this class.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, SecretStr

from retrieval import PaperbotSettings

DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
}


class AnswerSettings(PaperbotSettings):
    llm_provider: Literal["auto", "openai", "extractive"] = Field(
        default="auto",
        description="auto = openai when an API key or base URL is set, else extractive (offline).",
    )
    llm_model: str = Field(default="gpt-4o-mini", description="Chat model name.")
    llm_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("PAPERBOT_LLM_BASE_URL", "PAPERBOT_OPENAI_BASE_URL"),
        description="OpenAI-compatible chat server; default PAPERBOT_OPENAI_BASE_URL.",
    )
    llm_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("PAPERBOT_LLM_API_KEY", "PAPERBOT_OPENAI_API_KEY"),
        description="Chat API key; default PAPERBOT_OPENAI_API_KEY.",
    )
    llm_max_retries: int = Field(
        default=3,
        ge=0,
        le=10,
        validation_alias=AliasChoices("PAPERBOT_LLM_MAX_RETRIES", "PAPERBOT_MAX_RETRIES"),
        description="Retries of a chat request on 429/5xx/timeouts; default PAPERBOT_MAX_RETRIES.",
    )
    llm_temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    llm_max_tokens: int = Field(default=600, ge=16, le=16_000, description="Answer length cap.")
    llm_timeout: float = Field(default=60.0, gt=0, description="Seconds per LLM request.")
    llm_context_tokens: int = Field(
        default=2500, ge=200, description="Token budget for the numbered sources in a prompt."
    )
    llm_max_sources: int = Field(default=8, ge=1, le=50, description="Most sources per answer.")
    answer_max_sentences: int = Field(default=6, ge=1, le=30)
    llm_prices: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: dict(DEFAULT_PRICES),
        description="USD per million (input, output) tokens, as JSON; unknown models cost 0.",
    )
    support_threshold: float = Field(
        default=0.30, ge=0.0, le=1.0, description="Cited sentences below this support are flagged."
    )
    verify_policy: Literal["strict", "annotate", "off"] = Field(
        default="strict",
        description=(
            "What happens to an answer sentence the claim verifier cannot support: strict = "
            "removed (nothing left: the model is asked once more, then an extractive answer); "
            "annotate = kept, visibly marked; off = only flagged."
        ),
    )
    answer_deadline_seconds: float = Field(
        default=45.0,
        gt=0,
        le=600,
        description=(
            "One deadline per answer across the follow-up rewrite, retries, streaming and the "
            "second attempt; when it passes, the verified part or an extractive answer is shown."
        ),
    )

    @property
    def resolved_llm_provider(self) -> Literal["openai", "extractive"]:
        if self.llm_provider == "auto":
            return "openai" if (self.llm_api_key or self.llm_base_url) else "extractive"
        return self.llm_provider
