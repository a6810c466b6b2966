"""The one composition module: builds every service the Slack app and the CLI call.

`paperbot ask`, `paperbot chat` and the Slack listeners all answer through the `QAService`
built here, so a question gets the same answer wherever it is asked. Every dependency (the
corpus, the chat model, the bot's store) may be injected instead, which is how tests and
benchmarks swap in local servers. Building services loads no model and opens no connection:
the corpus builds its parts on first use, and so does the bot's store (data_dir/bot.sqlite3).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from answers.settings import AnswerSettings
from bot.slack.store import BotStore
from retrieval import Corpus, RetrievalSettings

if TYPE_CHECKING:
    from answers.digest import DigestService
    from answers.qa import QAService
    from answers.summarize import Summarizer

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: RetrievalSettings
    answer_settings: AnswerSettings
    corpus: Corpus
    qa: QAService
    summarizer: Summarizer
    digests: DigestService
    store: BotStore
    # the durable answer queue (bot/slack/answer_queue.py `AnswerQueue`), made with the Slack
    # app (typed Any: bot/slack imports this module)
    answer_queue: Any = None
    # bot/slack/paper_links.py `ArxivLinks` when PAPERBOT_ARXIV_TITLE_LOOKUP is on, else None
    arxiv_links: Any = None

    def warm_up(self) -> None:
        """Open the bot's store and load the model and the indexes now (`paperbot serve`, the
        ASGI app), so a newer data dir is refused at startup, the first question is not the
        slow one, and /readyz reports the model loaded. From then on the BM25 weights of
        frequent terms are kept computed (`Corpus.keep_lexical_warm`)."""
        self.store.open()
        log.info("loading the embedding model and the indexes")
        self.corpus.repair_if_needed()
        self.corpus.keep_lexical_warm()
        self.corpus.search("warm up", 1)

    def queue_stats(self) -> dict[str, Any] | None:
        """The answer queue's depth for /readyz: {queued, running, oldest_age_seconds,
        workers}; None before the Slack app made the queue."""
        if self.answer_queue is None:
            return None
        stats: dict[str, Any] = self.answer_queue.stats()
        return stats

    @classmethod
    def build(
        cls,
        settings: RetrievalSettings,
        answer_settings: AnswerSettings | None = None,
        *,
        corpus: Corpus | None = None,
        llm: Any = "settings",
        store: BotStore | None = None,
    ) -> Services:
        """Everything from settings; `corpus`, `llm` and `store` may be injected (tests,
        benchmarks). The store defaults to PAPERBOT_DATABASE_URL, else the bot's file in
        `settings.data_dir`."""
        from answers.digest import DigestService
        from answers.llm import build_chat_model, describe
        from answers.qa import QAService
        from answers.summarize import Summarizer

        answer_settings = answer_settings or AnswerSettings()
        corpus = corpus or Corpus(settings)
        model = build_chat_model(answer_settings) if llm == "settings" else llm
        log.info(
            "answers: %s", describe(answer_settings) if llm == "settings" else "injected model"
        )
        summarizer = Summarizer(corpus, model, answer_settings)
        return cls(
            settings=settings,
            answer_settings=answer_settings,
            corpus=corpus,
            qa=QAService(corpus, model, answer_settings),
            summarizer=summarizer,
            digests=DigestService(corpus, model, answer_settings, summarizer=summarizer),
            store=store or BotStore.from_settings(settings),
            arxiv_links=_arxiv_links(settings),
        )


def _arxiv_links(settings: RetrievalSettings) -> Any:
    if not settings.arxiv_title_lookup:
        return None
    from bot.slack.paper_links import ArxivLinks

    return ArxivLinks.from_settings(settings)
