"""`paperbot state` and `doctor`'s data check with PAPERBOT_DATABASE_URL (a real PostgreSQL):
check reports both schemas, backup/restore/rebuild refuse in one line naming `pg_dump` /
`pg_restore`, and no output ever shows the database password; an unreachable database is
one line naming the fix."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from bot.slack import store_schema
from bot.slack.store import BotStore
from retrieval import RetrievalSettings, StateAdmin, StateFileError
from retrieval.state import StateStore
from tests.support.chroma_server import free_port
from tests.support.cli import cli_env
from tests.support.cli import run_cli as _run
from tests.support.postgres import PostgresServer, postgres_server

__all__ = ["cli_env", "postgres_server"]  # fixtures

PASSWORD = "s3cret-Pa55word-xyz"


@pytest.fixture
def url_with_password(postgres_server: PostgresServer) -> str:
    """A database URL whose user has a password (the server trusts local logins, so the
    password only has to stay out of every output)."""
    import psycopg

    url = postgres_server.new_database()
    user = f"u_{urlsplit(url).path.strip('/')}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {user} LOGIN PASSWORD '{PASSWORD}'")
        conn.execute(f"GRANT ALL ON DATABASE {urlsplit(url).path.strip('/')} TO {user}")
        conn.execute(f"ALTER DATABASE {urlsplit(url).path.strip('/')} OWNER TO {user}")
    parts = urlsplit(url)
    netloc = f"{user}:{PASSWORD}@{parts.hostname}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def test_state_commands_on_postgres_say_what_works_and_hide_the_password(
    cli_env: dict[str, str], url_with_password: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAPERBOT_DATABASE_URL", url_with_password)
    settings = RetrievalSettings()
    StateStore.from_settings(settings).close()
    with BotStore.from_settings(settings) as store:
        assert store.first_time("k") and store.backend == "postgres"
        assert PASSWORD not in store.location
    code, out = _run("state", "check", "--json")
    assert code == 0, out
    report = json.loads(out)
    corpus, bot = report["files"]["state.sqlite3"], report["files"]["bot.sqlite3"]
    assert (corpus["schema_version"], bot["schema_version"]) == (3, store_schema.SCHEMA_VERSION)
    assert bot["rows"]["seen_keys"] == 1 and corpus["rows"]["papers"] == 0
    assert "schema paperbot_bot" in bot["path"] and bot["size"] > 0
    for command, fix in (("backup", "pg_dump"), ("restore", "pg_restore"), ("rebuild", "pg")):
        args = ("state", command, "/tmp/x") if command == "restore" else ("state", command)
        code, out = _run(*args, "--json")
        assert code == 1, out
        error = json.loads(out)["error"]
        assert fix in error and "PostgreSQL" in error and "\n" not in error
        assert PASSWORD not in out
    code, out = _run("config", "show")
    assert code == 0 and PASSWORD not in out
    code, out = _run("state", "check")
    assert code == 0 and PASSWORD not in out and f"schema v{store_schema.SCHEMA_VERSION}" in out


def test_an_unreachable_database_is_one_line_naming_the_fix(tmp_path: Path) -> None:
    url = f"postgresql://paperbot:{PASSWORD}@127.0.0.1:{free_port()}/paperbot"
    with pytest.raises(StateFileError) as raised:
        StateStore(tmp_path / "state.sqlite3", database_url=url)
    message = str(raised.value)
    assert "PAPERBOT_DATABASE_URL" in message and "\n" not in message
    assert PASSWORD not in message and "127.0.0.1" in message
    settings = RetrievalSettings(data_dir=tmp_path, database_url=url)  # type: ignore[arg-type]
    report = StateAdmin(settings).check()
    assert not report["ok"] and PASSWORD not in json.dumps(report)


def test_a_user_who_may_not_create_the_tables_gets_one_line(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    import psycopg

    url = postgres_server.new_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE reader_{urlsplit(url).path.strip('/')} LOGIN")
    parts = urlsplit(url)
    reader = f"reader_{parts.path.strip('/')}@{parts.hostname}:{parts.port}"
    reader_url = urlunsplit((parts.scheme, reader, parts.path, "", ""))
    for open_store in (
        lambda: StateStore(tmp_path / "state.sqlite3", database_url=reader_url),
        lambda: BotStore(tmp_path / "bot.sqlite3", database_url=reader_url).open(),
    ):
        with pytest.raises(StateFileError) as raised:
            open_store()
        message = str(raised.value)
        assert "may create tables" in message and "\n" not in message, message


def test_reindex_and_doctor_work_end_to_end_on_postgres(
    cli_env: dict[str, str],
    url_with_password: str,
    sample_page: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The state in PostgreSQL, the vectors in embedded Chroma: a lost vector index is rebuilt
    by `state reindex` from the database's embedding cache, and doctor says all is in step."""
    monkeypatch.setenv("PAPERBOT_DATABASE_URL", url_with_password)
    data_dir = Path(cli_env["PAPERBOT_DATA_DIR"])
    code, out = _run("ingest", str(sample_page), "--json")
    assert code == 0, out
    assert not (data_dir / "state.sqlite3").exists()  # the state went to the database
    chroma = data_dir / "chroma"
    chroma.rename(chroma.with_name("chroma.lost"))

    code, out = _run("state", "reindex", "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["added"] == report["vectors"] > 0 and report["bm25_chunks"] == report["vectors"]
    assert PASSWORD not in out

    code, out = _run("doctor")
    assert PASSWORD not in out
    lines = {line[7:].partition(": ")[0]: line for line in out.splitlines() if line[:1] == "["}
    for name in ("data files", "clock", "vector store", "index"):
        assert lines[name].startswith("[PASS]"), lines[name]
    assert "PostgreSQL" in lines["data files"] and "30 papers" in lines["index"]
    assert "the database's clock" in lines["clock"]


def test_doctor_fails_a_host_whose_clock_is_off_from_the_database(
    cli_env: dict[str, str], postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Leases compare replicas' clocks: a host a minute off would take others' jobs early."""
    monkeypatch.setenv("PAPERBOT_DATABASE_URL", postgres_server.new_database())
    monkeypatch.setattr("retrieval.state._now", lambda: time.time() + 61.0)
    state = StateStore.from_settings(RetrievalSettings())
    skew = state.clock_skew()
    state.close()
    assert skew is not None and -62.0 < skew < -60.0
    code, out = _run("doctor")
    assert code == 1
    (line,) = [x for x in out.splitlines() if x.startswith("[FAIL] clock")]
    assert "ahead of the database's clock" in line and "under 5 s" in line
    assert "NTP" in out
