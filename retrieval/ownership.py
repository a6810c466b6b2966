"""Who may write a Chroma collection: the one corpus state that owns it.

The model. A corpus state (`state.sqlite3`) gets a random id when it is created (an older
state gets one on its next open). A Chroma collection is owned by one state: its id is
stamped in the collection's metadata (`paperbot_owner`, with a label naming the host and
data dir), and every vector a state writes carries the writer's id too.

- A state claims a collection before its first write: a new collection is created with its
  stamp (creation is atomic, so of two hosts starting at once one wins), an existing one that
  is empty and unowned is stamped, and a legacy one (vectors but no stamp, from before owners
  existed) is adopted only when every vector in it is one of this state's chunks.
- A state that does not own the collection may search it but never writes to it: ingest,
  delete and repair refuse with a `CollectionOwnedError` that names the collection, where it
  is, who owns it and the fixes. Nothing is written to the state either.
- Repair never deletes vectors it did not write: `reconcile` removes an id the state does not
  know only when that vector's stamp is this state's own (or it has no stamp, i.e. it predates
  stamps in a collection this state owns).

So several hosts or data dirs pointed at one Chroma server never delete each other's
vectors; each gets a collection of its own (PAPERBOT_CHROMA_COLLECTION) to write to.

The identity is the state's id, not its location: a data dir that moves (or a container
whose hostname changes) keeps its collection, and the label follows it. A *copy* of a data
dir is the same state, so a copy must get a collection of its own.
"""

from __future__ import annotations

import logging
import re
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from retrieval.errors import PaperbotError, StateFileError
from retrieval.state import StateStore
from retrieval.store import (
    OWNER_KEY,
    OWNER_LABEL_KEY,
    CollectionOwnedError,
    Owner,
    VectorStore,
)

log = logging.getLogger(__name__)

STATE_ID_KEY = "state_id"  # in the state's meta table


def state_owner(state: StateStore, data_dir: Path) -> Owner:
    """This state as an owner: its id (created on first use) and a label for messages."""
    return Owner(state_id(state), f"{socket.gethostname()}:{data_dir.resolve()}")


def state_id(state: StateStore) -> str:
    """The state's random id, created once: two processes opening a new state at the same
    time agree on it (the check and the write are one transaction)."""
    found = state.get_meta(STATE_ID_KEY)
    if found:
        return found
    with state.transaction() as db:
        found = state.get_meta(STATE_ID_KEY)
        if not found:
            found = uuid.uuid4().hex
            state.set_meta(STATE_ID_KEY, found, db)
    return found


@dataclass(frozen=True, slots=True)
class Ownership:
    """What a collection's metadata says about its owner, seen from one state."""

    exists: bool
    owner_id: str | None
    owner_label: str | None
    mine: bool

    @property
    def foreign(self) -> bool:
        """Owned by another state: this one may only read it."""
        return self.owner_id is not None and not self.mine


def inspect(store: VectorStore, owner: Owner) -> Ownership:
    """Read the collection's owner stamp (never creates or stamps anything)."""
    meta = store.metadata()
    if meta is None:
        return Ownership(False, None, None, False)
    stamped = meta.get(OWNER_KEY)
    label = meta.get(OWNER_LABEL_KEY)
    return Ownership(
        True,
        str(stamped) if stamped is not None else None,
        str(label) if label is not None else None,
        stamped == owner.state_id,
    )


def claim(
    store: VectorStore, owner: Owner, state_chunk_ids: Callable[[], set[str]], prefix: str
) -> None:
    """Make sure ``owner`` may write the collection, stamping it when it may take it.

    Sets the store's writer (each vector written is stamped) or, when the collection belongs
    to another state, makes the store read-only and raises `CollectionOwnedError`.
    """
    stamp = {OWNER_KEY: owner.state_id, OWNER_LABEL_KEY: owner.label}
    meta = store.metadata()
    if meta is None and store.create_with_metadata(stamp):
        log.info(
            "created the Chroma collection %s at %s, owned by %s",
            store.name,
            store.where,
            owner.label,
        )
        return _writable(store, owner)
    meta = meta if meta is not None else (store.metadata() or {})
    stamped = meta.get(OWNER_KEY)
    if stamped == owner.state_id:
        if meta.get(OWNER_LABEL_KEY) != owner.label:  # moved (or a new container hostname)
            store.update_metadata({OWNER_LABEL_KEY: owner.label})
        return _writable(store, owner)
    if stamped is not None:
        label = str(meta.get(OWNER_LABEL_KEY) or f"state {stamped}")
        _refuse(store, _owned_message(store, owner, label, prefix))
    present = store.ids()
    unknown = len(present - state_chunk_ids()) if present else 0
    if unknown:
        _refuse(store, _legacy_message(store, owner, len(present), unknown, prefix))
    store.update_metadata(stamp)
    after = store.metadata() or {}
    if after.get(OWNER_KEY) != owner.state_id:  # another state stamped it in between
        label = str(after.get(OWNER_LABEL_KEY) or f"state {after.get(OWNER_KEY)}")
        _refuse(store, _owned_message(store, owner, label, prefix))
    if present:
        log.warning(
            "adopted the Chroma collection %s at %s (%d vectors from before collections had "
            "owners, all of them chunks of this data dir)",
            store.name,
            store.where,
            len(present),
        )
    return _writable(store, owner)


class LostStateError(CollectionOwnedError, StateFileError):
    """A state with no papers next to a collection this data dir wrote: the state was lost."""


def refuse_lost_state(
    state: StateStore, store: VectorStore, owner: Owner, *, force: bool = False
) -> None:
    """A state with no papers next to a collection this data dir wrote (stamped with its id,
    or with its label: an earlier state of the same data dir) was lost, not new: repairing
    against it would delete every vector and embed it all again. Refuse, saying what was
    found. ``force`` drops the collection. A collection of another data dir, or one from
    before stamps, is left to `claim`, which refuses it as usual."""
    vectors = store.count()
    if not vectors:
        return
    owned = inspect(store, owner)
    if not (owned.mine or (owned.owner_id and owned.owner_label == owner.label)):
        return
    if force:
        log.warning(
            "dropping the %d vectors of %s at %s (forced: the state is empty)",
            vectors,
            store.name,
            store.where,
        )
        store.drop()
        return
    raise LostStateError(
        f"Found {vectors:,} vectors in the collection {store.name!r} at {store.where}, "
        f"written by {'this state' if owned.mine else 'an earlier state of this data dir'}, "
        f"but 0 papers in the state {state.path}: state.sqlite3 has been replaced (or lost), and "
        "repairing against it would delete every vector. Nothing was changed. Fix: restore "
        "the state (`paperbot state restore BACKUP_DIR`), salvage it (`paperbot state "
        "rebuild`), or start over and embed everything again (`paperbot ingest --force …`)."
    )


def warn_if_foreign(store: VectorStore, owner: Owner) -> None:
    """Say (once per corpus, in its log) why search finds only this data dir's papers in a
    collection another data dir owns."""
    try:
        owned = inspect(store, owner)
    except PaperbotError:
        return
    if owned.foreign:
        log.warning(
            "the Chroma collection %s at %s belongs to another data dir (%s): this one (%s) "
            "searches it read-only and finds only papers in its own state",
            store.name,
            store.where,
            owned.owner_label,
            owner.label,
        )


def _writable(store: VectorStore, owner: Owner) -> None:
    store.writer = owner
    store.read_only = None


def _refuse(store: VectorStore, message: str) -> None:
    store.writer = None
    store.read_only = message
    raise CollectionOwnedError(message)


def _owned_message(store: VectorStore, owner: Owner, label: str, prefix: str) -> str:
    if label == owner.label:  # same host and data dir, another state id: the state was replaced
        return (
            f"The Chroma collection {store.name!r} at {store.where} was written by an earlier "
            f"state of this data dir ({owner.label}); state.sqlite3 has been replaced since, so "
            "its vectors cannot be matched and nothing was changed. Fix: restore the earlier "
            f"state.sqlite3, or set PAPERBOT_CHROMA_COLLECTION={_suggest(prefix)} and re-ingest "
            "into a new collection"
            + (f" (or delete {store.where} to rebuild it)." if store.embedded else ".")
        )
    return (
        f"The Chroma collection {store.name!r} at {store.where} belongs to another paperbot "
        f"data dir ({label}); this one ({owner.label}) may search it but never writes to it, so "
        "nothing was changed. Fix: give this data dir a collection of its own "
        f"(PAPERBOT_CHROMA_COLLECTION={_suggest(prefix)}), or ingest with the data dir that "
        "owns it."
    )


def _legacy_message(
    store: VectorStore, owner: Owner, present: int, unknown: int, prefix: str
) -> str:
    return (
        f"The Chroma collection {store.name!r} at {store.where} holds {present:,} vectors from "
        f"before collections had owners, and {unknown:,} of them are not chunks of this data "
        f"dir ({owner.label}), so it may be another data dir's and nothing was changed. Fix: "
        f"give this data dir a collection of its own (PAPERBOT_CHROMA_COLLECTION="
        f"{_suggest(prefix)}; it is rebuilt from the embedding cache), or run this from the "
        "data dir that wrote it."
    )


def _suggest(prefix: str) -> str:
    """A collection prefix for this host that PAPERBOT_CHROMA_COLLECTION accepts."""
    host = re.sub(r"[^a-zA-Z0-9._-]+", "-", socket.gethostname().split(".")[0]).strip("-._")
    return f"{prefix}-{host or 'host'}"[:41]
