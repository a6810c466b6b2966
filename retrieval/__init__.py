"""The corpus: papers, chunks, ingest, hybrid search and its settings.

This module is the corpus's public API: `answers/` and `bot/` import from `retrieval` only,
never its submodules (tests/test_architecture.py enforces it). Nothing here imports the
answering layer or Slack, and importing this package loads no model and opens no connection.
"""

from retrieval import feeds
from retrieval.corpus import Corpus
from retrieval.errors import (
    ConfigError,
    EmbeddingError,
    NotFoundError,
    PaperbotError,
    SourceError,
    StoreUnavailableError,
)
from retrieval.lexical import STOPWORDS, tokenize
from retrieval.models import Chunk, Hit, IngestReport, Paper, RecordError
from retrieval.normalize import clean_text, split_sentences, title_key
from retrieval.search import MODES, Mode, Relevance, SearchFilters
from retrieval.settings import RetrievalSettings

__all__ = [
    "MODES",
    "STOPWORDS",
    "Chunk",
    "ConfigError",
    "Corpus",
    "EmbeddingError",
    "Hit",
    "IngestReport",
    "Mode",
    "NotFoundError",
    "Paper",
    "PaperbotError",
    "RecordError",
    "Relevance",
    "RetrievalSettings",
    "SearchFilters",
    "SourceError",
    "StoreUnavailableError",
    "clean_text",
    "feeds",
    "split_sentences",
    "title_key",
    "tokenize",
]
