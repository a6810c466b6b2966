"""paperbot's domain: papers, chunks, the corpus (ingest + hybrid search) and its settings.

The public API the bot and the CLI use. Nothing here imports Slack, and importing this
package loads no model and opens no connection.
"""

from retrieval.corpus import Corpus
from retrieval.errors import (
    ConfigError,
    EmbeddingError,
    NotFoundError,
    PaperbotError,
    SourceError,
    StoreUnavailableError,
)
from retrieval.models import Chunk, Hit, IngestReport, Paper, RecordError
from retrieval.search import SearchFilters
from retrieval.settings import RetrievalSettings

__all__ = [
    "Chunk",
    "ConfigError",
    "Corpus",
    "EmbeddingError",
    "Hit",
    "IngestReport",
    "NotFoundError",
    "Paper",
    "PaperbotError",
    "RecordError",
    "RetrievalSettings",
    "SearchFilters",
    "SourceError",
    "StoreUnavailableError",
]
