"""Errors of the answering layer (the corpus's errors live in retrieval.errors)."""

from __future__ import annotations

from retrieval import PaperbotError


class LLMError(PaperbotError):
    """The language model could not be reached or failed (timeout, rate limit, server error)."""
