"""The project's exceptions: each message says what went wrong and what to do about it."""

from __future__ import annotations


class PaperbotError(Exception):
    """Base class: an error a user can act on (the CLI prints it without a traceback)."""


class ConfigError(PaperbotError):
    """A setting is missing or invalid."""


class SourceError(PaperbotError):
    """A whole source could not be read (missing file, dead URL, unparseable document)."""


class StoreUnavailableError(PaperbotError):
    """The vector store (embedded Chroma or a Chroma server) cannot be reached or opened."""


class StoreRefusedError(StoreUnavailableError):
    """A reachable Chroma server refused this configuration (its token, tenant or database):
    the message names the PAPERBOT_CHROMA_* setting to change, and nothing else fixes it."""


class EmbeddingError(PaperbotError):
    """The embedding model could not be loaded or the embedding endpoint failed."""


class NotFoundError(PaperbotError):
    """A paper id or other lookup key does not exist."""


class StateFileError(PaperbotError):
    """A SQLite file of the data dir (state.sqlite3, bot.sqlite3) is damaged, was emptied, or
    cannot be written; the message names the file and the way out."""
