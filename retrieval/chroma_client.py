"""Connections to Chroma: clients, embedded or server, and the handles the store reopens.

With `retrieval/store.py`, the only module that imports chromadb. Embedded Chroma caches one
System (and with it the in-memory HNSW index) per path for the whole process; a handle here
holds a System of its own, so a store can drop a stale view of the index and stop it safely.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from retrieval.errors import StoreUnavailableError
from retrieval.settings import RetrievalSettings

log = logging.getLogger(__name__)

SPACE = {"hnsw": {"space": "cosine"}}


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


def create_collection(
    client: Any, name: str, embedding_function: Any, metadata: dict[str, str]
) -> Any | None:
    """Create the collection with this metadata, or None when it exists already (creation is
    atomic in Chroma: of two hosts creating it at once, one gets None)."""
    from chromadb.errors import ChromaError

    try:
        return client.create_collection(
            name=name, metadata=metadata, embedding_function=embedding_function, configuration=SPACE
        )
    except ChromaError as exc:
        if "already exists" in str(exc):
            return None
        raise


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


def connect_server(settings: RetrievalSettings, where: str) -> tuple[Any, None]:
    import chromadb

    try:
        client = chromadb.HttpClient(
            host=settings.chroma_host or "",
            port=settings.chroma_port,
            ssl=settings.chroma_ssl,
            settings=chroma_settings(),
        )
    except Exception as exc:
        raise StoreUnavailableError(
            f"Could not connect to the Chroma server at {where}: {exc}. Start it with "
            "`chroma run --path DIR --port PORT` or unset PAPERBOT_CHROMA_HOST for "
            "embedded mode."
        ) from exc
    return client, None


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
