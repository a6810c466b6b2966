"""One careful HTTP GET for the live feeds: timeouts, retries with backoff, clear failures."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from retrieval.errors import SourceError
from retrieval.sources.tabular import DEFAULT_MAX_INPUT_BYTES, input_too_large

log = logging.getLogger(__name__)

USER_AGENT = "paperbot/0.1 (+https://github.com/paperbot)"
# A server asking us to wait longer than this is treated as asking too much: we wait the cap.
RETRY_AFTER_CAP_SECONDS = 60.0
MAX_BACKOFF_SECONDS = 30.0

Params = Mapping[str, str | int | float]


class _Retryable(Exception):
    """One attempt failed in a way worth retrying; carries the reason and the wait hint."""

    def __init__(self, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait = wait


def get_bytes(
    url: str,
    *,
    params: Params | None = None,
    timeout: float,
    retries: int,
    client: httpx.Client | None = None,
    backoff: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
    explain: Callable[[bytes], str | None] | None = None,
    max_bytes: int = DEFAULT_MAX_INPUT_BYTES,
) -> bytes:
    """GET ``url`` and return the body; retry connect errors, timeouts, 429 and 5xx.

    Other 4xx fail at once (asking again will not help). ``explain`` may turn an error body
    into a readable message (arXiv answers a bad query with a 400 and an Atom error feed).
    Raises SourceError after ``retries + 1`` failed attempts, and at once for a body larger
    than ``max_bytes`` (PAPERBOT_MAX_INPUT_BYTES), which is never read past the limit.
    """
    shown = _display_url(url)
    attempts = max(retries, 0) + 1
    own_client = client is None
    http = client or httpx.Client(timeout=timeout, follow_redirects=True)
    try:
        for attempt in range(1, attempts + 1):
            try:
                return _attempt(http, url, shown, params, timeout, explain, max_bytes)
            except _Retryable as failure:
                log.warning("GET %s failed (attempt %d/%d): %s", shown, attempt, attempts, failure)
                if attempt == attempts:
                    tries = f"{attempts} attempt" + ("s" if attempts > 1 else "")
                    raise SourceError(
                        f"Could not fetch {shown}: {failure.reason} after {tries}"
                    ) from None
                default_wait = min(backoff * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS)
                sleep(failure.wait if failure.wait is not None else default_wait)
    finally:
        if own_client:
            http.close()
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


def _attempt(
    http: httpx.Client,
    url: str,
    shown: str,
    params: Params | None,
    timeout: float,
    explain: Callable[[bytes], str | None] | None,
    max_bytes: int,
) -> bytes:
    try:
        with http.stream(
            "GET", url, params=params, timeout=timeout, headers={"User-Agent": USER_AGENT}
        ) as response:
            body = _capped_body(response, shown, max_bytes)
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        # A malformed URL will not get better by asking again.
        raise SourceError(f"Could not fetch {shown}: {exc}") from None
    except httpx.TimeoutException:
        raise _Retryable(f"timed out (limit {timeout:g} s)") from None
    except httpx.TransportError as exc:
        # Connection refused, DNS failure, reset: the message names the cause.
        raise _Retryable(
            f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        ) from None
    status = response.status_code
    log.debug("GET %s -> %d", shown, status)
    if status < 400:
        return body
    label = f"HTTP {status} {response.reason_phrase}".rstrip()
    if status == 429:
        raise _Retryable(label, _retry_after(response.headers.get("Retry-After")))
    if status >= 500:
        raise _Retryable(label)
    detail = explain(body) if explain else None
    raise SourceError(f"Could not fetch {shown}: {label}" + (f": {detail}" if detail else ""))


def _capped_body(response: httpx.Response, shown: str, max_bytes: int) -> bytes:
    """The body, read only up to ``max_bytes``: a larger one is a SourceError (a retry would
    get the same), whether its Content-Length says so up front or not."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise SourceError(input_too_large(shown, max_bytes))
    body = bytearray()
    for piece in response.iter_bytes():
        body += piece
        if len(body) > max_bytes:
            raise SourceError(input_too_large(shown, max_bytes))
    return bytes(body)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), capped; None if absent."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return min(max(seconds, 0.0), RETRY_AFTER_CAP_SECONDS)


def _display_url(url: str) -> str:
    """The URL as shown in logs and errors: without credentials (user:pass@) or query."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return url
    return str(parsed.copy_with(userinfo=b"", query=None, fragment=None))
