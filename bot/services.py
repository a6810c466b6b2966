"""Services: the domain objects the Slack listeners and the CLI may call, built once."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from retrieval import Corpus, RetrievalSettings

if TYPE_CHECKING:
    from retrieval.digest import DigestService
    from retrieval.qa import QAService
    from retrieval.state import StateStore
    from retrieval.summarize import Summarizer

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: RetrievalSettings
    corpus: Corpus
    qa: QAService
    summarizer: Summarizer
    digests: DigestService

    @property
    def state(self) -> StateStore:
        return self.corpus.state

    @classmethod
    def build(
        cls, settings: RetrievalSettings, *, corpus: Corpus | None = None, llm: Any = "settings"
    ) -> Services:
        """Everything from settings; `corpus` and `llm` may be injected (tests, benchmarks)."""
        from retrieval.digest import DigestService
        from retrieval.llm import build_chat_model, describe
        from retrieval.qa import QAService
        from retrieval.summarize import Summarizer

        corpus = corpus or Corpus(settings)
        model = build_chat_model(settings) if llm == "settings" else llm
        log.info("answers: %s", describe(settings) if llm == "settings" else "injected model")
        summarizer = Summarizer(corpus, model, settings)
        return cls(
            settings=settings,
            corpus=corpus,
            qa=QAService(corpus, model, settings),
            summarizer=summarizer,
            digests=DigestService(corpus, model, settings, summarizer=summarizer),
        )
