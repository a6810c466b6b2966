"""The vector store: Chroma, embedded (PersistentClient) or a server (`chroma run`).

The only module that imports chromadb at run time: the collection wrapper, with
`ChromaEmbeddingFunction` (retrieval/chroma_function.py) attached to the collection so that
anyone who opens it through Chroma's own API embeds queries with the same model. Vectors are
computed by our embedder (with its cache) and passed in.

Freshness: `VectorStore.reopen` gives a running process a view of vectors another process
wrote (the corpus calls it when the state says the index changed). Ownership: the store
stamps vectors with the state that wrote them and refuses writes when told to be read-only;
the policy (who may write a collection) is `retrieval/ownership.py`'s.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.chroma_client import (
    Handle,
    Hnsw,
    HnswStatus,
    apply_ef_search,
    connector,
    create_collection,
    embedded_fix,
    get_collection,
    is_connection_error,
)
from retrieval.chroma_function import ChromaEmbeddingFunction
from retrieval.errors import PaperbotError, StoreRefusedError, StoreUnavailableError
from retrieval.settings import RetrievalSettings

__all__ = ["ChromaEmbeddingFunction", "ChunkMeta", "Owner", "VectorStore", "collection_name"]

log = logging.getLogger(__name__)

_ID_PAGE = 5000
_NO_ROWS: dict[str, list[Any]] = {"ids": [], "metadatas": []}  # `get` on a missing collection
# In the collection's metadata: the id of the corpus state that owns the collection, and a
# label saying where that state lives; in each vector's metadata: the state that wrote it.
OWNER_KEY = "paperbot_owner"
OWNER_LABEL_KEY = "paperbot_owner_label"


class CollectionOwnedError(PaperbotError):
    """A write to a Chroma collection that belongs to another corpus state was refused."""


@dataclass(frozen=True, slots=True)
class Owner:
    """A corpus state as a collection owner: its random id and, for messages, where it is."""

    state_id: str
    label: str


@dataclass(frozen=True, slots=True)
class ChunkMeta:
    """What the vector index keeps beside each vector, for filtering."""

    paper_id: str
    published: date | None
    source: str

    def as_metadata(self) -> dict[str, str | int]:
        stamp = int(self.published.strftime("%Y%m%d")) if self.published else 0
        return {"paper_id": self.paper_id, "published": stamp, "source": self.source}


def collection_name(prefix: str, model_id: str) -> str:
    """One collection per embedding model: vectors of different models never mix."""
    slug = re.sub(r"[^a-zA-Z0-9._-]+", "-", model_id).strip("-._")
    return f"{prefix}__{slug}"[:63]


class VectorStore:
    """A Chroma collection of chunk vectors with paper metadata.

    Thread-safe, and reopenable while in use: every call runs on the current *handle* (a
    client and its collection); `reopen` retires the handle and the next call connects afresh.
    A call already running on a retired handle finishes on it; the handle is closed (in
    embedded mode, its chroma System is stopped, freeing the in-memory index) when its last
    call returns.

    Ownership (see `retrieval/ownership.py`): `writer` stamps every vector written with the
    owning state's id; `read_only` (a message) makes every write refuse.
    """

    def __init__(
        self,
        connect: Callable[[], tuple[Any, Any | None]],
        name: str,
        embedding_function: Any,
        where: str,
        *,
        embedded: bool = False,
        hnsw: Hnsw | None = None,
        explain: Callable[[BaseException], str | None] | None = None,
    ) -> None:
        self._connect = connect  # -> (client, the chroma System it alone holds, or None)
        self.hnsw = hnsw or Hnsw()  # for a collection this store creates; ef_search also later
        self._explain = explain  # a server's refusal (token, tenant, database) as one line
        self._ef_search_applied = False
        self.name = name
        self.where = where  # human-readable location, for messages
        self.embedded = embedded
        self._ef = embedding_function
        self._lock = threading.Lock()
        self._handle: Handle | None = None
        self.writer: Owner | None = None
        self.read_only: str | None = None
        self.writes = 0  # write calls so far (the corpus tells readers the index changed)
        self.reopens = 0

    @classmethod
    def from_settings(
        cls, settings: RetrievalSettings, model_id: str, embedding_function: Any
    ) -> VectorStore:
        connect, where, explain = connector(settings)
        name = collection_name(settings.chroma_collection, model_id)
        return cls(
            connect,
            name,
            embedding_function,
            where,
            embedded=not settings.chroma_host,
            hnsw=Hnsw.from_settings(settings),
            explain=explain,
        )

    # --- handles: open lazily, reopen safely under concurrent calls ---
    @property
    def collection(self) -> Any:
        """The current chroma collection (for tests and Chroma's own API)."""
        handle = self._acquire()
        try:
            return self._open(handle)
        finally:
            self._release(handle)

    def reopen(self) -> None:
        """See the index as it is now.

        Embedded Chroma keeps its index in memory per client, so another process's writes
        stay invisible to a client opened before them: the next call opens a fresh client.
        A server holds the index itself: the client stays, and the next call only fetches
        the collection again (which picks up a collection dropped and recreated meanwhile).
        """
        with self._lock:
            self.reopens += 1
            old = self._handle
            if old is None:
                return
            if not self.embedded:
                old.collection = None  # calls in flight keep the collection they hold
                return
            self._handle = None
        self._retire(old)

    def close(self) -> None:
        """Release the connection (a later call reconnects)."""
        with self._lock:
            old, self._handle = self._handle, None
        if old is not None:
            self._retire(old)

    def _acquire(self) -> Handle:
        with self._lock:
            if self._handle is None:
                self._handle = Handle(*self._call("connect", self._connect))
            handle = self._handle
            handle.users += 1
            return handle

    def _release(self, handle: Handle) -> None:
        with self._lock:
            handle.users -= 1
            close = handle.retired and handle.users == 0 and not handle.closed
            handle.closed = handle.closed or close
        if close:
            handle.close()

    def _retire(self, handle: Handle) -> None:
        with self._lock:
            handle.retired = True
            close = handle.users == 0 and not handle.closed
            handle.closed = handle.closed or close
        if close:
            handle.close()

    def _run(self, what: str, method: str, *, missing: Any = None, **kwargs: Any) -> Any:
        """Call a method of the collection on the current handle. Reads (``missing`` given:
        what to return when the collection does not exist) never create the collection;
        writes create it (a corpus has claimed it first, creating it with its stamp)."""
        handle = self._acquire()
        try:
            collection = self._open(handle, create=missing is None)
            if collection is None:
                return missing
            try:
                return self._call(what, getattr(collection, method), **kwargs)
            except StoreUnavailableError:
                handle.collection = None  # reopen after the server comes back
                raise
        finally:
            self._release(handle)

    def _open(self, handle: Handle, *, create: bool = True) -> Any | None:
        if handle.collection is None and not create:
            handle.collection = self._call("open the collection", self._get, handle.client)
        elif handle.collection is None:
            handle.collection = self._call(
                "open the collection",
                handle.client.get_or_create_collection,
                name=self.name,
                embedding_function=self._ef,
                configuration=self.hnsw.configuration(),  # only used if it must be created
            )
        if create and self.writer is not None and not self._ef_search_applied:
            handle.collection = self._apply_ef_search(handle.client, handle.collection)
        return handle.collection

    def _apply_ef_search(self, client: Any, collection: Any) -> Any:
        """The settings' ef_search, once per store and by the owner only (see
        `apply_ef_search`); the collection as Chroma has it afterwards."""
        self._ef_search_applied = True
        if apply_ef_search(collection, self.hnsw.ef_search, f"{self.name} at {self.where}"):
            return self._get(client) or collection
        return collection

    def hnsw_status(self) -> HnswStatus:
        """The collection's HNSW parameters against the settings (reading creates nothing)."""
        found = self._use_client("read the collection", self._get)
        actual = None if found is None else Hnsw.of(found.configuration_json)
        return HnswStatus(self.hnsw, actual)

    # --- vectors ---
    def count(self) -> int:
        return int(self._run("count vectors", "count", missing=0))

    def ids(self) -> set[str]:
        return set(self.iter_ids())

    def iter_ids(self) -> Iterator[str]:
        offset = 0
        while True:
            page = self._run(
                "list ids", "get", missing=_NO_ROWS, include=[], limit=_ID_PAGE, offset=offset
            )
            yield from page["ids"]
            if len(page["ids"]) < _ID_PAGE:
                return
            offset += _ID_PAGE

    def chunk_papers(self) -> dict[str, str]:
        """Each vector's id with the paper id in its metadata (what survives of the papers
        when the state is lost: Chroma holds no chunk text)."""
        found: dict[str, str] = {}
        offset = 0
        while True:
            page = self._run(
                "list vectors",
                "get",
                missing=_NO_ROWS,
                include=["metadatas"],
                limit=_ID_PAGE,
                offset=offset,
            )
            for vid, meta in zip(page["ids"], page["metadatas"] or [], strict=False):
                found[vid] = str((meta or {}).get("paper_id", ""))
            if len(page["ids"]) < _ID_PAGE:
                return found
            offset += _ID_PAGE

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, metas: Sequence[ChunkMeta]) -> None:
        """Write vectors, each stamped with the writer's state id (when the store has one)."""
        if not ids:
            return
        self._check_writable()
        stamp: dict[str, str | int] = {OWNER_KEY: self.writer.state_id} if self.writer else {}
        step = self._batch_size()
        for start in range(0, len(ids), step):
            end = start + step
            self.writes += 1
            self._run(
                "write vectors",
                "upsert",
                ids=list(ids[start:end]),
                embeddings=vectors[start:end],
                metadatas=[m.as_metadata() | stamp for m in metas[start:end]],
            )

    def delete(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        self._check_writable()
        step = self._batch_size()
        for start in range(0, len(ids), step):
            self.writes += 1
            self._run("delete vectors", "delete", ids=list(ids[start : start + step]))

    def stamps(self, ids: Sequence[str]) -> dict[str, str | None]:
        """Which state wrote each of these vectors (None: no stamp, written before stamps
        existed); ids not in the collection are left out."""
        found: dict[str, str | None] = {}
        for start in range(0, len(ids), _ID_PAGE):
            batch = list(ids[start : start + _ID_PAGE])
            page = self._run(
                "read vector owners", "get", missing=_NO_ROWS, ids=batch, include=["metadatas"]
            )
            for vid, meta in zip(page["ids"], page["metadatas"] or [], strict=False):
                owner = (meta or {}).get(OWNER_KEY)
                found[vid] = str(owner) if owner is not None else None
        return found

    def query(
        self,
        vector: np.ndarray,
        n: int,
        *,
        since: date | None = None,
        until: date | None = None,
        sources: Sequence[str] | None = None,
    ) -> list[tuple[str, float]]:
        """Nearest chunks as (chunk id, cosine similarity), best first."""
        result = self._run(
            "search vectors",
            "query",
            missing={"ids": [[]], "distances": [[]]},
            query_embeddings=[np.asarray(vector, dtype=np.float32)],
            n_results=n,
            where=_where(since, until, sources),
            include=["distances"],
        )
        ids = result["ids"][0] if result["ids"] else []
        distances = result["distances"][0] if result["distances"] else []
        return [(i, 1.0 - float(d)) for i, d in zip(ids, distances, strict=True)]

    def drop(self) -> None:
        self._check_writable()
        self.writes += 1
        self._use_client("drop the collection", lambda client: client.delete_collection(self.name))
        self._forget_collection()

    # --- the collection's own metadata (who owns it) ---
    def metadata(self) -> dict[str, Any] | None:
        """The collection's metadata as Chroma has it now ({} when it has none), or None
        when the collection does not exist yet. Reading never creates it."""
        found = self._use_client("read the collection", self._get)
        return None if found is None else dict(found.metadata or {})

    def create_with_metadata(self, metadata: dict[str, str]) -> bool:
        """Create the collection with this metadata, atomically: False when it exists
        already (someone created it first), whatever its metadata."""
        made = self._use_client(
            "create the collection",
            lambda client: create_collection(client, self.name, self._ef, metadata, self.hnsw),
        )
        return made is not None

    def update_metadata(self, updates: dict[str, str]) -> None:
        """Merge keys into the collection's metadata as Chroma has it now (Chroma's `modify`
        replaces the metadata whole)."""

        def merge(client: Any) -> None:
            fresh = self._get(client)
            if fresh is not None:
                fresh.modify(metadata={**(fresh.metadata or {}), **updates})

        self._use_client("stamp the collection", merge)
        self._forget_collection()  # the cached collection model has the old metadata

    def _get(self, client: Any) -> Any | None:
        return get_collection(client, self.name, self._ef)

    def _use_client(self, what: str, fn: Callable[[Any], Any]) -> Any:
        """Run ``fn(client)`` on the current handle without opening the collection."""
        handle = self._acquire()
        try:
            return self._call(what, fn, handle.client)
        finally:
            self._release(handle)

    def _forget_collection(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.collection = None

    def _check_writable(self) -> None:
        if self.read_only:
            raise CollectionOwnedError(self.read_only)

    def _batch_size(self) -> int:
        try:
            size = self._use_client("read the batch size", lambda c: c.get_max_batch_size())
            return max(1, min(int(size), 4000))
        except StoreUnavailableError:
            raise
        except Exception:  # older servers do not report it
            return 1000

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (StoreUnavailableError, CollectionOwnedError):
            raise
        except Exception as exc:
            refusal = self._explain(exc) if self._explain is not None else None
            if refusal is not None:
                raise StoreRefusedError(f"Could not {what}: {refusal}") from exc
            if is_connection_error(exc) and self.embedded:
                raise StoreUnavailableError(
                    f"Could not {what}: the embedded Chroma index at {self.where} cannot be "
                    f"used ({exc}). " + embedded_fix(Path(self.where))
                ) from exc
            if is_connection_error(exc):
                raise StoreUnavailableError(
                    f"Could not {what}: the Chroma server at {self.where} is not reachable "
                    f"({exc}). "
                    "Start it (`chroma run`) or check PAPERBOT_CHROMA_HOST/PAPERBOT_CHROMA_PORT."
                ) from exc
            raise


def _where(
    since: date | None, until: date | None, sources: Sequence[str] | None
) -> dict[str, Any] | None:
    clauses: list[dict[str, Any]] = []
    if since:
        clauses.append({"published": {"$gte": int(since.strftime("%Y%m%d"))}})
    if until:
        clauses.append({"published": {"$lte": int(until.strftime("%Y%m%d"))}})
    if sources:
        clauses.append({"source": {"$in": list(sources)}})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}
