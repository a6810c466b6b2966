"""Large input files read streaming: plain, gzip or a zip of one file, with the position for
progress and resuming, and an identity that survives a copy (size + hash of the first MiB).

For bulk files such as arXiv's metadata snapshot (several GB); feed files go through
`load_path` and its size cap instead.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from retrieval.errors import SourceError

_IDENTITY_BYTES = 1024 * 1024


class Stream(Protocol):
    def readline(self, size: int = -1, /) -> bytes: ...
    def seek(self, offset: int, whence: int = 0, /) -> int: ...
    def tell(self) -> int: ...


@dataclass
class OpenedFile:
    stream: Stream  # the uncompressed text
    raw: IO[bytes] | None  # the file underneath, for progress (None: the stream itself)
    total: int  # what progress counts to
    closers: list[Any]

    last: int = 0  # the position when it was last read (kept once the file is closed)

    def progress(self) -> int:
        with contextlib.suppress(OSError, ValueError):  # closed: where it stopped
            self.last = (self.raw or self.stream).tell()
        return self.last

    def close(self) -> None:
        self.progress()  # the final position, for the progress line that follows
        for item in reversed(self.closers):
            item.close()


def identity(path: Path) -> tuple[int, str]:
    """(size, "size:sha256 of the first MiB"): the same file content keeps its identity when
    copied or touched; a new snapshot download gets a new one."""
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise SourceError(f"{path} is not a regular file; give the snapshot file")
        with path.open("rb") as handle:
            head = handle.read(_IDENTITY_BYTES)
    except FileNotFoundError:
        raise SourceError(f"{path}: no such file") from None
    except OSError as exc:
        raise SourceError(f"Cannot read {path}: {exc.strerror or exc}") from None
    return size, f"{size}:{hashlib.sha256(head).hexdigest()[:24]}"


def open_bulk(path: Path, size: int) -> OpenedFile:
    try:
        raw = path.open("rb", buffering=1 << 20)
    except OSError as exc:
        raise SourceError(f"Cannot read {path}: {exc.strerror or exc}") from None
    magic = raw.read(4)
    raw.seek(0)
    try:
        if magic[:2] == b"\x1f\x8b":
            stream = gzip.GzipFile(fileobj=raw, mode="rb")
            return OpenedFile(stream, raw, size, [raw, stream])
        if magic == b"PK\x03\x04":
            archive = zipfile.ZipFile(raw)
            members = [m for m in archive.infolist() if not m.is_dir()]
            if len(members) != 1:
                raise SourceError(
                    f"{path} holds {len(members)} files; give the snapshot's .json (or a .zip "
                    "of it alone)"
                )
            member = archive.open(members[0])
            return OpenedFile(member, None, members[0].file_size, [raw, archive, member])
    except (OSError, zipfile.BadZipFile) as exc:
        raw.close()
        raise SourceError(f"Cannot read {path}: {exc}") from None
    except BaseException:
        raw.close()
        raise
    return OpenedFile(raw, None, size, [raw])


def seek_to(handle: Stream, offset: int, origin: str) -> None:
    """To a stored offset (compressed streams seek by reading forward, at their own speed)."""
    try:
        handle.seek(offset)
    except (OSError, ValueError) as exc:
        raise SourceError(f"Cannot resume {origin} at byte {offset}: {exc}") from None
