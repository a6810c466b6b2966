"""Shared fixtures: settings on temp dirs, the bundled sample corpus, local servers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from answers.settings import AnswerSettings
from retrieval import Corpus, RetrievalSettings
from tests.support.chroma_server import ChromaServer
from tests.support.fakes import FakeEmbedder

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DIR = ROOT / "data" / "sample"


@pytest.fixture(autouse=True)
def _isolated_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """No test reads the developer's .env, PAPERBOT_* variables or ~/.config, ~/.local."""
    import os

    for key in list(os.environ):
        if key.startswith("PAPERBOT_") or key in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg-config")))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("xdg-data")))
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture(scope="session")
def tiktoken_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiktoken")


@pytest.fixture
def sample_page() -> Path:
    return SAMPLE_DIR / "daily_papers_page.txt"


@pytest.fixture
def sample_api_json() -> Path:
    return SAMPLE_DIR / "hf_daily_papers_api_sample.json"


@pytest.fixture
def dev_questions() -> Path:
    return SAMPLE_DIR / "dev_questions.jsonl"


@pytest.fixture
def make_settings(tmp_path: Path, tiktoken_dir: Path) -> Callable[..., RetrievalSettings]:
    def make(**overrides: Any) -> RetrievalSettings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "tiktoken_cache_dir": tiktoken_dir,
            "arxiv_delay_seconds": 0,
            "max_retries": 1,
        }
        values.update(overrides)
        return RetrievalSettings(_env_file=None, **values)  # type: ignore[call-arg]

    return make


@pytest.fixture
def make_answer_settings() -> Callable[..., AnswerSettings]:
    def make(**overrides: Any) -> AnswerSettings:
        values: dict[str, Any] = {"llm_max_retries": 1}
        values.update(overrides)
        return AnswerSettings(_env_file=None, **values)  # type: ignore[call-arg]

    return make


@pytest.fixture
def settings(make_settings: Callable[..., RetrievalSettings]) -> RetrievalSettings:
    return make_settings()


@pytest.fixture
def fake_embedder() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture
def fake_corpus(settings: RetrievalSettings, fake_embedder: FakeEmbedder) -> Iterator[Corpus]:
    """Embedded Chroma + SQLite on a temp dir, with the fast bag-of-words embedder."""
    corpus = Corpus(settings, embedder=fake_embedder)
    yield corpus
    corpus.close()


@pytest.fixture(scope="session")
def local_embedder() -> Any:
    """The real offline MiniLM model, loaded once per test session."""
    from retrieval.embeddings import LocalMiniLMEmbedder

    return LocalMiniLMEmbedder()


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    """A real `chroma run` on 127.0.0.1 for the whole session."""
    server = ChromaServer(tmp_path_factory.mktemp("chroma-server") / "db")
    server.start()
    yield server
    server.stop()
