"""Errors of the answering layer (the corpus's errors live in retrieval.errors)."""

from __future__ import annotations

from retrieval import PaperbotError


class LLMError(PaperbotError):
    """The language model could not be reached or failed (timeout, rate limit, server error)."""


class LLMDeadlineError(LLMError):
    """The answer's overall deadline passed before the model finished (retries included).

    ``partial`` is the text streamed before the deadline ("" when nothing arrived)."""

    def __init__(self, message: str, partial: str = "") -> None:
        super().__init__(message)
        self.partial = partial
