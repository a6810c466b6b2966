"""A secured or hosted Chroma server: the token (as `Authorization: Bearer` or
`X-Chroma-Token`), the tenant and the database, end to end against a real `chroma run`.

The open-source Chroma 1.x server has no authentication of its own (Chroma's docs secure it
with a proxy in front), so the token is checked by `AuthProxy`, a small proxy in front of the
session's `chroma run` that answers 401 to a request without the right header.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from retrieval import Corpus, Paper, RetrievalSettings
from retrieval.errors import StoreRefusedError, StoreUnavailableError
from retrieval.sources import page_text
from retrieval.store import VectorStore
from tests.support.chroma_server import AuthProxy, ChromaServer, free_port
from tests.support.cli import cli_env  # noqa: F401  (a fixture)
from tests.support.fakes import FakeEmbedder

pytestmark = pytest.mark.integration

TOKEN = "s3cret-Tok3n_for.tests"
QUERY = "identity-aware editing score distillation head avatars"


@pytest.fixture
def bearer_proxy(chroma_server: ChromaServer) -> Iterator[AuthProxy]:
    with AuthProxy(chroma_server.url, "Authorization", f"Bearer {TOKEN}") as proxy:
        yield proxy


def _papers(sample_page: Path) -> list[Paper]:
    records = page_text.parse(sample_page.read_bytes(), origin="s", page_date=date(2025, 5, 16))
    return [r for r in records if isinstance(r, Paper)]


def _settings(
    make_settings: Callable[..., RetrievalSettings],
    tmp_path: Path,
    host: str,
    port: int,
    **more: object,
) -> RetrievalSettings:
    return make_settings(
        data_dir=tmp_path / "data",
        chroma_host=host,
        chroma_port=port,
        chroma_collection=f"auth{free_port()}",
        **more,
    )


def test_the_token_is_sent_as_a_bearer_header_on_every_request(
    bearer_proxy: AuthProxy,
    make_settings: Callable[..., RetrievalSettings],
    tmp_path: Path,
    sample_page: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = _settings(
        make_settings, tmp_path, bearer_proxy.host, bearer_proxy.port, chroma_token=TOKEN
    )
    corpus = Corpus(settings, embedder=FakeEmbedder())
    try:
        papers = _papers(sample_page)
        with caplog.at_level(logging.DEBUG):
            corpus.ingest(papers[:10])
        assert caplog.records and not any(TOKEN in r.getMessage() for r in caplog.records)
        assert corpus.store.count() == corpus.state.count_chunks() > 0
        hits = corpus.search(papers[3].title, 1, mode="dense")
        assert hits and hits[0].paper.paper_id == papers[3].paper_id
    finally:
        corpus.close()
    assert bearer_proxy.refused == 0 and len(bearer_proxy.seen) > 5
    assert {h.get("authorization") for h in bearer_proxy.seen} == {f"Bearer {TOKEN}"}
    assert TOKEN not in repr(settings)  # a SecretStr: never printed or logged


def test_the_token_can_be_sent_as_x_chroma_token(
    chroma_server: ChromaServer, make_settings: Callable[..., RetrievalSettings], tmp_path: Path
) -> None:
    with AuthProxy(chroma_server.url, "X-Chroma-Token", TOKEN) as proxy:
        settings = _settings(
            make_settings,
            tmp_path,
            proxy.host,
            proxy.port,
            chroma_token=TOKEN,
            chroma_auth_header="X-Chroma-Token",
        )
        store = VectorStore.from_settings(settings, "fake", None)
        assert store.create_with_metadata({"k": "v"})
        assert store.metadata() == {"k": "v"}
        store.close()
        assert proxy.refused == 0
        assert {h.get("x-chroma-token") for h in proxy.seen} == {TOKEN}
        assert not any("authorization" in h for h in proxy.seen)


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        (None, "requires a token (HTTP 401). Fix: set PAPERBOT_CHROMA_TOKEN"),
        ("wrong-token", "refused the token in PAPERBOT_CHROMA_TOKEN (HTTP 401)"),
    ],
)
def test_a_missing_or_wrong_token_is_one_line_naming_the_setting(
    bearer_proxy: AuthProxy,
    make_settings: Callable[..., RetrievalSettings],
    tmp_path: Path,
    token: str | None,
    expected: str,
) -> None:
    settings = _settings(
        make_settings, tmp_path, bearer_proxy.host, bearer_proxy.port, chroma_token=token
    )
    corpus = Corpus(settings, embedder=FakeEmbedder())
    with pytest.raises(StoreRefusedError) as refused:  # a StoreUnavailableError of its own
        corpus.store.count()
    assert isinstance(refused.value, StoreUnavailableError)
    message = str(refused.value)
    assert expected in message and bearer_proxy.url_in(message)
    assert "\n" not in message and "wrong-token" not in message
    assert bearer_proxy.refused >= 1
    corpus.close()


def test_the_cli_says_which_setting_fixes_a_refused_token(
    bearer_proxy: AuthProxy,
    cli_env: dict[str, str],  # noqa: F811
) -> None:
    env = {
        **os.environ,
        **cli_env,
        "PAPERBOT_CHROMA_HOST": bearer_proxy.host,
        "PAPERBOT_CHROMA_PORT": str(bearer_proxy.port),
        "PAPERBOT_CHROMA_TOKEN": "not-the-token",
    }
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "search", "head avatars"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "not-the-token" not in done.stderr + done.stdout
    (error,) = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert "refused the token in PAPERBOT_CHROMA_TOKEN" in error  # one line, naming the fix


def test_two_teams_share_one_server_through_their_own_databases(
    chroma_server: ChromaServer,
    make_settings: Callable[..., RetrievalSettings],
    tmp_path: Path,
    sample_page: Path,
) -> None:
    import chromadb
    from chromadb.config import Settings

    database = f"team{free_port()}"
    admin = chromadb.AdminClient(
        Settings(
            chroma_api_impl="chromadb.api.fastapi.FastAPI",
            chroma_server_host=chroma_server.host,
            chroma_server_http_port=chroma_server.port,
            anonymized_telemetry=False,
        )
    )
    admin.create_database(database)
    papers = _papers(sample_page)
    collection = f"same{free_port()}"  # the same collection name in both databases
    common = {"chroma_host": chroma_server.host, "chroma_port": chroma_server.port}
    team_a = Corpus(
        make_settings(data_dir=tmp_path / "a", chroma_collection=collection, **common),
        embedder=FakeEmbedder(),
    )
    team_b = Corpus(
        make_settings(
            data_dir=tmp_path / "b",
            chroma_collection=collection,
            chroma_database=database,
            **common,
        ),
        embedder=FakeEmbedder(),
    )
    try:
        team_a.ingest(papers[:5])
        team_b.ingest(papers[5:12])  # no ownership refusal: another database, another collection
        assert team_a.store.name == team_b.store.name
        assert team_a.store.count() == team_a.state.count_chunks()
        assert team_b.store.count() == team_b.state.count_chunks()
        assert not team_a.store.ids() & team_b.store.ids()
        assert database in team_b.store.where
    finally:
        team_a.close()
        team_b.close()


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        ("chroma_database", "no_such_db", "no database 'no_such_db'"),
        ("chroma_tenant", "no_such_tenant", "no tenant 'no_such_tenant'"),
    ],
)
def test_a_missing_tenant_or_database_is_one_line_naming_the_setting(
    chroma_server: ChromaServer,
    make_settings: Callable[..., RetrievalSettings],
    tmp_path: Path,
    setting: str,
    value: str,
    expected: str,
) -> None:
    settings = _settings(
        make_settings, tmp_path, chroma_server.host, chroma_server.port, **{setting: value}
    )
    store = VectorStore.from_settings(settings, "fake", None)
    with pytest.raises(StoreUnavailableError) as refused:
        store.count()
    message = str(refused.value)
    assert expected in message and f"PAPERBOT_{setting.upper()}" in message
    assert "\n" not in message


def test_a_token_revoked_while_running_is_the_same_one_line_error(
    bearer_proxy: AuthProxy, make_settings: Callable[..., RetrievalSettings], tmp_path: Path
) -> None:
    settings = _settings(
        make_settings, tmp_path, bearer_proxy.host, bearer_proxy.port, chroma_token=TOKEN
    )
    store = VectorStore.from_settings(settings, "fake", None)
    assert store.create_with_metadata({"k": "v"}) and store.count() == 0
    bearer_proxy.value = "Bearer rotated-token"  # the server's token changed under a replica
    with pytest.raises(StoreUnavailableError) as refused:
        store.count()
    message = str(refused.value)
    assert message.startswith("Could not count vectors: The Chroma server at")
    assert "refused the token in PAPERBOT_CHROMA_TOKEN (HTTP 401)" in message
    assert "\n" not in message and TOKEN not in message
    store.close()


def test_doctor_gives_a_refused_token_no_other_fix(
    bearer_proxy: AuthProxy,
    make_settings: Callable[..., RetrievalSettings],
    make_answer_settings: Callable[..., Any],
    tmp_path: Path,
) -> None:
    """The refusal names PAPERBOT_CHROMA_TOKEN; "start the Chroma server" would mislead."""
    from bot.cli.doctor import run_checks
    from bot.slack.settings import SlackSettings

    settings = _settings(
        make_settings, tmp_path, bearer_proxy.host, bearer_proxy.port, chroma_token="nope-nope"
    )
    slack = SlackSettings(_env_file=None)  # type: ignore[call-arg]
    answer_settings = make_answer_settings(llm_provider="extractive")
    checks = {c.name: c for c in run_checks(settings, answer_settings, slack)}
    store = checks["vector store"]
    assert not store.ok and "StoreRefusedError" in store.detail
    assert "refused the token in PAPERBOT_CHROMA_TOKEN" in store.detail
    assert store.fix == "" and "nope-nope" not in store.detail
