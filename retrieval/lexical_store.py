"""A BM25 field on disk as segments: what replicas on one host share, and how it follows the state.

Layout of a field's directory (``data_dir/bm25/chunks``, ``data_dir/bm25/papers``)::

    manifest.json        {"generation": g, "segments": [{"name": "seg-…", "deleted": "del-….npy"}]}
    seg-…/               one immutable segment (`lexical_segments.Segment`), memory-mapped
    del-….npy            the deleted rows of one segment (tombstones), replaced, never edited

Every file is written under a temporary name and renamed into place; the manifest is replaced
last, so a reader sees the old index or the new one. A process keeps its mapped files until
it reopens (a file removed while mapped stays readable). Updates take ``.lock`` (an advisory
file lock: one writer per data dir; readers never lock): new or changed documents become a
new segment, removed or replaced ones are tombstoned in their segment, and when a field has
more than ``max_segments`` segments the smallest are merged into one (dropping tombstoned
rows). Files no manifest names are removed under the lock.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.lexical import BM25Index, LexicalDoc, segment_of
from retrieval.lexical_segments import Segment, load_npy, merge

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = 1
SEGMENT_DOCS = 250_000  # documents per segment written at once (bounds a build's memory)
MAX_SEGMENTS = 8


class SegmentStore:
    """One field's segments under ``root``."""

    def __init__(
        self, root: Path, *, max_segments: int = MAX_SEGMENTS, segment_docs: int = SEGMENT_DOCS
    ) -> None:
        self.root = root
        self.max_segments = max_segments
        self.segment_docs = segment_docs

    # --- reading (any process, no lock) ---
    def open(self) -> BM25Index | None:
        """The index the manifest names, mapped; None when there is none or it is unreadable.
        Retried when a writer replaced the manifest and removed a segment in between."""
        for _ in range(5):
            manifest = self._manifest()
            if manifest is None:
                return None
            try:
                return self._open(manifest)
            except FileNotFoundError:
                continue  # replaced while opening: read the new manifest
            except (OSError, ValueError, KeyError) as exc:
                log.warning("BM25 segments in %s are unreadable (%s); rebuilt", self.root, exc)
                return None
        return None

    def _manifest(self) -> dict[str, Any] | None:
        try:
            manifest = json.loads((self.root / MANIFEST).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("BM25 manifest in %s is unreadable (%s); rebuilt", self.root, exc)
            return None
        if manifest.get("format") != FORMAT:
            return None
        return manifest

    def _open(self, manifest: dict[str, Any]) -> BM25Index:
        segments: list[Segment] = []
        deleted: list[np.ndarray | None] = []
        for entry in manifest["segments"]:
            seg = Segment.open(self.root / entry["name"])
            segments.append(seg)
            deleted.append(self._tombstones(entry.get("deleted"), len(seg)))
        return BM25Index(segments, int(manifest["generation"]), deleted)

    def _tombstones(self, name: str | None, n: int) -> np.ndarray | None:
        if not name:
            return None
        rows = load_npy(self.root / name)
        mask = np.zeros(n, dtype=bool)
        mask[rows] = True
        return mask

    # --- writing (under `lock`) ---
    @contextmanager
    def lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def rebuild(self, generation: int, docs: Iterable[LexicalDoc]) -> BM25Index:
        """A new index of ``docs``, replacing whatever the field held."""
        segments = [self._write(part) for part in _parts(docs, self.segment_docs)]
        return self._commit(generation, segments, [None] * len(segments))

    def apply(
        self,
        index: BM25Index,
        generation: int,
        removed: np.ndarray,
        added: Iterable[LexicalDoc],
    ) -> BM25Index:
        """``index`` without the ``removed`` ids and with ``added`` (an added id already in
        the index replaces it), as ``generation``. ``index`` must be what the manifest names."""
        old = self._manifest() or {"segments": []}
        files = {e["name"]: e.get("deleted") for e in old["segments"]}
        new = [self._write(part) for part in _parts(added, self.segment_docs)]
        gone = _concat([removed, *(s.ids for s in new)])
        segments: list[Segment] = []
        deleted: list[np.ndarray | None] = []
        reuse: dict[str, str] = {}
        for seg, dead in zip(index.segments, index.deleted, strict=True):
            rows = seg.locate(gone) if len(gone) else np.zeros(0, np.int64)
            rows = rows[rows >= 0]
            if len(rows) and (dead is None or not dead[rows].all()):
                dead = dead.copy() if dead is not None else np.zeros(len(seg), bool)
                dead[rows] = True
            elif dead is not None and files.get(seg.name):
                reuse[seg.name] = files[seg.name]  # unchanged tombstones: same file
            if dead is not None and dead.all():
                continue  # nothing live left: the segment is dropped
            segments.append(seg)
            deleted.append(dead)
        segments += new
        deleted += [None] * len(new)
        if len(segments) > self.max_segments:
            segments, deleted = self._merge_smallest(segments, deleted)
        return self._commit(generation, segments, deleted, reuse)

    def _merge_smallest(
        self, segments: list[Segment], deleted: list[np.ndarray | None]
    ) -> tuple[list[Segment], list[np.ndarray | None]]:
        live = [
            len(s) - (int(d.sum()) if d is not None else 0)
            for s, d in zip(segments, deleted, strict=True)
        ]
        count = len(segments) - self.max_segments // 2 + 1
        picked = sorted(sorted(range(len(segments)), key=live.__getitem__)[:count])
        merged = self._write_segment(
            merge([segments[i] for i in picked], [deleted[i] for i in picked])
        )
        first = picked[0]
        out_s: list[Segment] = []
        out_d: list[np.ndarray | None] = []
        for i, seg in enumerate(segments):
            if i == first:
                out_s.append(merged)
                out_d.append(None)
            elif i not in picked:
                out_s.append(seg)
                out_d.append(deleted[i])
        log.info("merged %d BM25 segments (%d documents) in %s", count, len(merged), self.root)
        return out_s, out_d

    def _write(self, docs: list[LexicalDoc]) -> Segment:
        return self._write_segment(segment_of(docs))

    def _write_segment(self, segment: Segment) -> Segment:
        self.root.mkdir(parents=True, exist_ok=True)
        return Segment.open(segment.write(self.root))

    def _commit(
        self,
        generation: int,
        segments: list[Segment],
        deleted: list[np.ndarray | None],
        reuse: dict[str, str] | None = None,
    ) -> BM25Index:
        """Write the tombstones that changed, then the manifest; drop unreferenced files."""
        entries = []
        for seg, dead in zip(segments, deleted, strict=True):
            name = (reuse or {}).get(seg.name) if dead is not None else None
            if dead is not None and name is None:
                name = f"del-{uuid.uuid4().hex[:12]}.npy"
                _atomic_save(self.root / name, np.flatnonzero(dead).astype(np.int32))
            entries.append({"name": seg.name, "deleted": name})
        manifest = {"format": FORMAT, "generation": generation, "segments": entries}
        self.root.mkdir(parents=True, exist_ok=True)  # a field of no documents wrote no segment
        tmp = self.root / f".{MANIFEST}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(manifest))
        os.replace(tmp, self.root / MANIFEST)
        self._collect(entries)
        return BM25Index(segments, generation, deleted)

    def _collect(self, entries: list[dict[str, Any]]) -> None:
        referenced = {e["name"] for e in entries} | {e["deleted"] for e in entries if e["deleted"]}
        referenced |= {MANIFEST, ".lock"}
        for path in self.root.iterdir():
            if path.name in referenced:
                continue
            try:
                if path.is_dir():
                    for child in path.iterdir():
                        child.unlink()
                    path.rmdir()
                else:
                    path.unlink()
            except OSError as exc:  # another process's leftovers: tried again next time
                log.debug("could not remove %s (%s)", path, exc)

    def size_bytes(self) -> int:
        if not self.root.exists():
            return 0
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())


def live_ids(index: BM25Index) -> np.ndarray:
    """The ids of the index's live documents (bytes), sorted."""
    parts = [
        np.asarray(s.ids) if d is None else np.asarray(s.ids)[~d]
        for s, d in zip(index.segments, index.deleted, strict=True)
    ]
    if not parts:
        return np.zeros(0, dtype="S1")
    width = max(p.dtype.itemsize for p in parts)
    return np.sort(np.concatenate([p.astype(f"S{width}") for p in parts]))


def _concat(arrays: list[np.ndarray]) -> np.ndarray:
    arrays = [np.asarray(a) for a in arrays if len(a)]
    if not arrays:
        return np.zeros(0, dtype="S1")
    width = max(a.dtype.itemsize for a in arrays)
    return np.concatenate([a.astype(f"S{width}") for a in arrays])


def _parts(docs: Iterable[LexicalDoc], size: int) -> Iterator[list[LexicalDoc]]:
    part: list[LexicalDoc] = []
    for doc in docs:
        part.append(doc)
        if len(part) >= size:
            yield part
            part = []
    if part:
        yield part


def _atomic_save(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        np.save(handle, array, allow_pickle=False)
    os.replace(tmp, path)
