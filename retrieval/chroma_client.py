"""Connections to Chroma: clients, embedded or server, and the handles the store reopens.

With `retrieval/store.py`, the only module that imports chromadb. Embedded Chroma caches one
System (and with it the in-memory HNSW index) per path for the whole process; a handle here
holds a System of its own, so a store can drop a stale view of the index and stop it safely.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrieval.errors import StoreRefusedError, StoreUnavailableError
from retrieval.settings import RetrievalSettings

log = logging.getLogger(__name__)

SPACE = {"hnsw": {"space": "cosine"}}  # the distance of every collection paperbot makes
DEFAULT_SPACE = ("default_tenant", "default_database")  # `chroma run`'s tenant and database
# What Chroma (1.x) used for a collection created with the space alone (before these settings).
CHROMA_DEFAULT_HNSW = {"max_neighbors": 16, "ef_construction": 100, "ef_search": 100}


@dataclass(frozen=True, slots=True)
class Hnsw:
    """HNSW parameters: ``m`` and ``ef_construction`` are fixed when a collection is created
    (changing them means rebuilding it); ``ef_search`` can be changed on an existing one."""

    m: int = RetrievalSettings.model_fields["hnsw_m"].default
    ef_construction: int = RetrievalSettings.model_fields["hnsw_ef_construction"].default
    ef_search: int = RetrievalSettings.model_fields["hnsw_ef_search"].default

    @classmethod
    def from_settings(cls, settings: RetrievalSettings) -> Hnsw:
        return cls(settings.hnsw_m, settings.hnsw_ef_construction, settings.hnsw_ef_search)

    @classmethod
    def of(cls, configuration: dict[str, Any] | None) -> Hnsw | None:
        """The parameters a collection's configuration (``configuration_json``) holds."""
        found = (configuration or {}).get("hnsw") or {}
        if not found:
            return None
        values = {**CHROMA_DEFAULT_HNSW, **found}
        return cls(
            int(values["max_neighbors"]), int(values["ef_construction"]), int(values["ef_search"])
        )

    def configuration(self) -> dict[str, Any]:
        """The configuration to create a collection with (cosine, as always)."""
        return {
            "hnsw": {
                **SPACE["hnsw"],
                "max_neighbors": self.m,
                "ef_construction": self.ef_construction,
                "ef_search": self.ef_search,
            }
        }

    def describe(self) -> str:
        return f"M={self.m}, ef_construction={self.ef_construction}, ef_search={self.ef_search}"


class Handle:
    """One connection: a client, its collection (opened on first use) and, in embedded mode,
    the chroma System that only this handle holds."""

    __slots__ = ("client", "closed", "collection", "retired", "system", "users")

    def __init__(self, client: Any, system: Any | None) -> None:
        self.client = client
        self.system = system
        self.collection: Any | None = None
        self.users = 0
        self.retired = False
        self.closed = False

    def close(self) -> None:
        try:
            if self.system is not None:
                self.system.stop()  # nobody else holds it: it was private from birth
            else:
                self.client.close()
        except Exception as exc:  # closing must never break the caller
            log.debug("closing a Chroma handle failed: %s", exc)


def get_collection(client: Any, name: str, embedding_function: Any) -> Any | None:
    """The collection, or None when it does not exist (never creates it)."""
    from chromadb.errors import NotFoundError as ChromaNotFound

    try:
        return client.get_collection(name=name, embedding_function=embedding_function)
    except ChromaNotFound:
        return None


@dataclass(frozen=True, slots=True)
class HnswStatus:
    """A collection's HNSW parameters against the settings (for `stats` and `doctor`)."""

    wanted: Hnsw
    actual: Hnsw | None  # None: the collection does not exist yet

    @property
    def rebuild_needed(self) -> bool:
        """M or ef_construction differ: only a rebuild (`paperbot state reindex`) applies them."""
        return self.actual is not None and (
            (self.actual.m, self.actual.ef_construction)
            != (self.wanted.m, self.wanted.ef_construction)
        )

    def describe(self) -> str:
        """One line: what the collection has and, when the settings differ, what to do."""
        if self.actual is None:
            return f"HNSW {self.wanted.describe()} (applied when the collection is created)"
        line = f"HNSW {self.actual.describe()}"
        if self.rebuild_needed:
            line += (
                f"; the settings ask for M={self.wanted.m}, ef_construction="
                f"{self.wanted.ef_construction}, which only a rebuild applies (`paperbot state "
                "reindex`): the collection keeps its own until then"
            )
        if self.actual.ef_search != self.wanted.ef_search:
            line += (
                f"; PAPERBOT_HNSW_EF_SEARCH={self.wanted.ef_search} is applied at the owner's "
                "next write (an ingest or feed poll)"
            )
        return line


def apply_ef_search(collection: Any, ef_search: int, label: str) -> bool:
    """Set an existing collection's ef_search (Chroma allows changing it in place); True when
    it changed. Only the collection's owner calls this, so a reader never changes a shared
    collection. M and ef_construction stay what the collection was built with: changing them
    needs a rebuild, which is never done silently."""
    actual = Hnsw.of(collection.configuration_json)
    if actual is None or actual.ef_search == ef_search:
        return False
    try:
        collection.modify(configuration={"hnsw": {"ef_search": ef_search}})
    except Exception as exc:  # an older server: searching still works with its own value
        log.warning("could not set ef_search on the Chroma collection %s: %s", label, exc)
        return False
    log.info("ef_search of the Chroma collection %s: %d -> %d", label, actual.ef_search, ef_search)
    return True


def create_collection(
    client: Any,
    name: str,
    embedding_function: Any,
    metadata: dict[str, str],
    hnsw: Hnsw | None = None,
) -> Any | None:
    """Create the collection with this metadata and these HNSW parameters, or None when it
    exists already (creation is atomic in Chroma: of two hosts creating it at once, one gets
    None)."""
    from chromadb.errors import ChromaError

    try:
        return client.create_collection(
            name=name,
            metadata=metadata,
            embedding_function=embedding_function,
            configuration=(hnsw or Hnsw()).configuration(),
        )
    except ChromaError as exc:
        if "already exists" in str(exc):
            return None
        raise


def register_function() -> None:
    """Tell chromadb the class behind the name "paperbot" in a collection's configuration.
    Chroma rebuilds a collection's embedding function from that name whenever it reads the
    configuration (opening the collection, changing its ef_search), but registers a class
    only when a process creates a collection with it: a process that opens an existing one
    got "Could not reconstruct embedding function paperbot" warnings, and its configuration
    without the function. Idempotent."""
    from chromadb.utils.embedding_functions import register_embedding_function

    from retrieval.chroma_function import ChromaEmbeddingFunction

    register_embedding_function(ChromaEmbeddingFunction)


# One lock for chroma's process-wide cache of Systems (chroma does not lock it itself).
_SYSTEMS_LOCK = threading.Lock()


def chroma_settings() -> Any:
    from chromadb.config import Settings as ChromaSettings

    return ChromaSettings(anonymized_telemetry=False)


def connect_embedded(path: Path) -> tuple[Any, Any]:
    """A PersistentClient with a chroma System of its own, loaded from disk now.

    chroma caches one System (and with it the in-memory HNSW index) per path for the whole
    process, so a new client would share the stale one. The cached System is detached before
    the client is made (its holders keep using it) and the new one right after, so no later
    client can share it either: whoever retires this client may stop its System.
    """
    import chromadb
    from chromadb.api.shared_system_client import SharedSystemClient

    register_function()
    if path.is_dir() and not _writable_tree(path):
        path = _read_only_copy(path)
    path.mkdir(parents=True, exist_ok=True)
    key = str(path)
    try:
        with _SYSTEMS_LOCK:
            SharedSystemClient._identifier_to_system.pop(key, None)
            SharedSystemClient._identifier_to_refcount.pop(key, None)
            client = chromadb.PersistentClient(path=key, settings=chroma_settings())
            system = SharedSystemClient._identifier_to_system.pop(key)
            SharedSystemClient._identifier_to_refcount.pop(key, None)
    except Exception as exc:
        raise StoreUnavailableError(
            f"Could not open the embedded Chroma index at {path}: {exc}. " + embedded_fix(path)
        ) from exc
    return client, system


def embedded_fix(path: Path) -> str:
    """The way out of an embedded index that cannot be opened (no Chroma server involved)."""
    return (
        f"Fix: move it aside (`mv {path} {path}.broken`) and run `paperbot state reindex`, "
        "which rebuilds it from the state and its embedding cache (nothing is embedded again)."
    )


def _writable_tree(path: Path) -> bool:
    """Whether this process may write the embedded index (Chroma writes on every open)."""
    return all(os.access(p, os.W_OK) for p in (path, *path.rglob("*")))


def _read_only_copy(path: Path) -> Path:
    """Chroma cannot open an index read-only (it writes its SQLite file on open): a data dir
    this user may only read is searched through a private copy of its index, removed at
    exit. Writes never reach it: the read-only state refuses them first."""
    copy = Path(tempfile.mkdtemp(prefix="paperbot-chroma-ro-")) / "chroma"
    log.info("%s is read-only for this user: searching a private copy (%s)", path, copy)
    shutil.copytree(path, copy)
    for item in (copy, *copy.rglob("*")):
        item.chmod(item.stat().st_mode | stat.S_IWUSR)
    atexit.register(shutil.rmtree, copy.parent, True)
    return copy


Connect = Callable[[], tuple[Any, Any | None]]
Explain = Callable[[BaseException], str | None]


def connector(settings: RetrievalSettings) -> tuple[Connect, str, Explain | None]:
    """How a store connects: the connect function (-> a client and the chroma System it alone
    holds, or None), where the index is (for messages) and, for a server, how to explain a
    refusal (token, tenant, database) in one line."""
    if not settings.chroma_host:
        where = str(settings.chroma_path)
        return functools.partial(connect_embedded, settings.chroma_path), where, None
    scheme = "https" if settings.chroma_ssl else "http"
    where = f"{scheme}://{settings.chroma_host}:{settings.chroma_port}"
    if (settings.chroma_tenant, settings.chroma_database) != DEFAULT_SPACE:
        where += f" ({settings.chroma_tenant}/{settings.chroma_database})"
    explain = functools.partial(server_refusal, settings=settings, where=where)
    return functools.partial(connect_server, settings, where), where, explain


def server_settings(settings: RetrievalSettings) -> Any:
    """Chroma client settings for a server: with PAPERBOT_CHROMA_TOKEN, Chroma's own token
    provider sends it on every request, as ``Authorization: Bearer <token>`` or as
    ``X-Chroma-Token: <token>`` (PAPERBOT_CHROMA_AUTH_HEADER)."""
    from chromadb.config import Settings as ChromaSettings

    if settings.chroma_token is None:
        return chroma_settings()
    return ChromaSettings(
        anonymized_telemetry=False,
        chroma_client_auth_provider="chromadb.auth.token_authn.TokenAuthClientProvider",
        chroma_client_auth_credentials=settings.chroma_token.get_secret_value(),
        chroma_auth_token_transport_header=settings.chroma_auth_header,
    )


def connect_server(settings: RetrievalSettings, where: str) -> tuple[Any, None]:
    """An HttpClient for the server's tenant and database (both checked now, as the token)."""
    import chromadb

    register_function()

    try:
        client = chromadb.HttpClient(
            host=settings.chroma_host or "",
            port=settings.chroma_port,
            ssl=settings.chroma_ssl,
            settings=server_settings(settings),
            tenant=settings.chroma_tenant,
            database=settings.chroma_database,
        )
    except Exception as exc:
        refusal = server_refusal(exc, settings, where)
        if refusal is not None:
            raise StoreRefusedError(refusal) from exc
        raise StoreUnavailableError(
            f"Could not connect to the Chroma server at {where}: {exc}. Start it with "
            "`chroma run --path DIR --port PORT` or unset PAPERBOT_CHROMA_HOST for "
            "embedded mode."
        ) from exc
    return client, None


def server_refusal(exc: BaseException, settings: RetrievalSettings, where: str) -> str | None:
    """A one-line message when a reachable server refused us: the token (HTTP 401/403, or a
    token the client cannot send), the tenant or the database; None for anything else. The
    token itself is never part of it."""
    status = http_status(exc)
    names = {type(e).__name__ for e in _chain(exc)}
    text = " ".join(str(e) for e in _chain(exc))
    header = settings.chroma_auth_header
    if status in (401, 403) or names & {"ChromaAuthError", "AuthorizationError"}:
        code = f" (HTTP {status})" if status else ""
        if settings.chroma_token is None:
            return (
                f"The Chroma server at {where} requires a token{code}. Fix: set "
                "PAPERBOT_CHROMA_TOKEN (sent as `Authorization: Bearer …`; set "
                "PAPERBOT_CHROMA_AUTH_HEADER=X-Chroma-Token for servers that read that header)."
            )
        return (
            f"The Chroma server at {where} refused the token in PAPERBOT_CHROMA_TOKEN{code}, "
            f"sent as {header}. Fix: set PAPERBOT_CHROMA_TOKEN to a token it accepts, or "
            "PAPERBOT_CHROMA_AUTH_HEADER to the header it reads (Authorization or "
            "X-Chroma-Token)."
        )
    if "Invalid token" in text:
        return (
            "PAPERBOT_CHROMA_TOKEN has characters a token cannot have (only ASCII letters, "
            "digits and punctuation). Fix: set PAPERBOT_CHROMA_TOKEN to the server's token."
        )
    missing = "NotFoundError" in names or status == 404
    if missing and "Tenant" in text:
        return (
            f"The Chroma server at {where} has no tenant {settings.chroma_tenant!r}. Fix: set "
            "PAPERBOT_CHROMA_TENANT to an existing tenant (default_tenant on `chroma run`), "
            "or create it on the server."
        )
    if missing and "Database" in text:
        return (
            f"The Chroma server at {where} has no database {settings.chroma_database!r} in "
            f"tenant {settings.chroma_tenant!r}. Fix: set PAPERBOT_CHROMA_DATABASE to an "
            "existing database (default_database on `chroma run`), or create it on the server."
        )
    return None


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of the response behind a chromadb error, when there was one."""
    import httpx

    for e in _chain(exc):
        if isinstance(e, httpx.HTTPStatusError):
            return int(e.response.status_code)
    return None


def is_connection_error(exc: BaseException) -> bool:
    import httpx

    names = {type(e).__name__ for e in _chain(exc)}
    return (
        any(isinstance(e, (httpx.TransportError, ConnectionError)) for e in _chain(exc))
        or bool(names & {"ConnectError", "ConnectTimeout", "ReadTimeout", "RemoteProtocolError"})
        or "Could not connect to tenant" in str(exc)
    )


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__
