"""The corpus: papers, chunks, ingest, hybrid search and its settings.

This module is the corpus's public API: `answers/` and `bot/` import from `retrieval` only,
never its submodules (tests/test_architecture.py enforces it). Nothing here imports the
answering layer or Slack. Names load lazily (PEP 562): ``from retrieval import PaperbotError``
imports only the errors module, so the CLI stays fast, and importing the package loads no
model and opens no connection.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> the module that defines it (a module's own name: the module itself)
_EXPORTS = {
    "arxiv_id_by_title": "retrieval.sources.arxiv",
    "bulk_embedder": "retrieval.embed_pool",
    "close_embedder": "retrieval.embed_pool",
    "open_arxiv_snapshot": "retrieval.sources.arxiv_snapshot",
    "SnapshotReader": "retrieval.sources.arxiv_snapshot",
    "Chunk": "retrieval.models",
    "CollectionOwnedError": "retrieval.store",
    "ConfigError": "retrieval.errors",
    "Corpus": "retrieval.corpus",
    "DATE_FIELDS": "retrieval.search",
    "DateField": "retrieval.models",
    "db": "retrieval.db",
    "EmbeddingError": "retrieval.errors",
    "Hit": "retrieval.models",
    "IngestReport": "retrieval.models",
    "Listing": "retrieval.models",
    "MANUAL_FEED": "retrieval.models",
    "MODES": "retrieval.search",
    "Mode": "retrieval.search",
    "NotFoundError": "retrieval.errors",
    "Paper": "retrieval.models",
    "PaperbotSettings": "retrieval.settings",
    "PaperbotError": "retrieval.errors",
    "QUESTION_WORDS": "retrieval.lexical",
    "RecordError": "retrieval.models",
    "Relevance": "retrieval.search",
    "RetrievalSettings": "retrieval.settings",
    "default_data_dir": "retrieval.settings",
    "STOPWORDS": "retrieval.lexical_terms",
    "SearchFilters": "retrieval.search",
    "unfound": "retrieval.search",
    "SourceError": "retrieval.errors",
    "StateAdmin": "retrieval.state_admin",
    "StateFileError": "retrieval.errors",
    "StoreRefusedError": "retrieval.errors",
    "StoreUnavailableError": "retrieval.errors",
    "clean_text": "retrieval.normalize",
    "env_file_path": "retrieval.settings",
    "feeds": "retrieval.feeds",
    "migrations": "retrieval.migrations",
    "name_terms": "retrieval.lexical",
    "redact": "retrieval.redaction",
    "refuse_emptied": "retrieval.state_files",
    "secret_values": "retrieval.redaction",
    "split_sentences": "retrieval.normalize",
    "title_key": "retrieval.normalize",
    "tokenize": "retrieval.lexical_terms",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'retrieval' has no attribute {name!r}")
    loaded = importlib.import_module(module)
    value = loaded if module.rsplit(".", 1)[-1] == name else getattr(loaded, name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from retrieval import db as db
    from retrieval import feeds as feeds
    from retrieval import migrations as migrations
    from retrieval.corpus import Corpus as Corpus
    from retrieval.embed_pool import bulk_embedder as bulk_embedder
    from retrieval.embed_pool import close_embedder as close_embedder
    from retrieval.errors import (
        ConfigError as ConfigError,
    )
    from retrieval.errors import (
        EmbeddingError as EmbeddingError,
    )
    from retrieval.errors import (
        NotFoundError as NotFoundError,
    )
    from retrieval.errors import (
        PaperbotError as PaperbotError,
    )
    from retrieval.errors import (
        SourceError as SourceError,
    )
    from retrieval.errors import (
        StateFileError as StateFileError,
    )
    from retrieval.errors import (
        StoreRefusedError as StoreRefusedError,
    )
    from retrieval.errors import (
        StoreUnavailableError as StoreUnavailableError,
    )
    from retrieval.lexical import QUESTION_WORDS as QUESTION_WORDS
    from retrieval.lexical import name_terms as name_terms
    from retrieval.lexical_terms import STOPWORDS as STOPWORDS
    from retrieval.lexical_terms import tokenize as tokenize
    from retrieval.models import (
        MANUAL_FEED as MANUAL_FEED,
    )
    from retrieval.models import (
        Chunk as Chunk,
    )
    from retrieval.models import (
        DateField as DateField,
    )
    from retrieval.models import (
        Hit as Hit,
    )
    from retrieval.models import (
        IngestReport as IngestReport,
    )
    from retrieval.models import (
        Listing as Listing,
    )
    from retrieval.models import (
        Paper as Paper,
    )
    from retrieval.models import (
        RecordError as RecordError,
    )
    from retrieval.normalize import (
        clean_text as clean_text,
    )
    from retrieval.normalize import (
        split_sentences as split_sentences,
    )
    from retrieval.normalize import (
        title_key as title_key,
    )
    from retrieval.redaction import redact as redact
    from retrieval.redaction import secret_values as secret_values
    from retrieval.search import (
        DATE_FIELDS as DATE_FIELDS,
    )
    from retrieval.search import (
        MODES as MODES,
    )
    from retrieval.search import (
        Mode as Mode,
    )
    from retrieval.search import (
        Relevance as Relevance,
    )
    from retrieval.search import (
        SearchFilters as SearchFilters,
    )
    from retrieval.search import unfound as unfound
    from retrieval.settings import PaperbotSettings as PaperbotSettings
    from retrieval.settings import RetrievalSettings as RetrievalSettings
    from retrieval.settings import default_data_dir as default_data_dir
    from retrieval.settings import env_file_path as env_file_path
    from retrieval.sources.arxiv import arxiv_id_by_title as arxiv_id_by_title
    from retrieval.sources.arxiv_snapshot import SnapshotReader as SnapshotReader
    from retrieval.sources.arxiv_snapshot import open_arxiv_snapshot as open_arxiv_snapshot
    from retrieval.state_admin import StateAdmin as StateAdmin
    from retrieval.state_files import refuse_emptied as refuse_emptied
    from retrieval.store import CollectionOwnedError as CollectionOwnedError
