"""Real abstracts for tests and benchmarks that need more than the 30-paper sample."""

from __future__ import annotations

import json
from pathlib import Path


def aclsum_records(splits: tuple[str, ...] = ("train", "val", "test")) -> list[dict[str, str]]:
    """The 250 ACL abstracts shipped by the `aclsum` package, as flat title/abstract records."""
    from aclsum import ACLSum

    records = []
    for split in splits:
        for doc in ACLSum(split):
            abstract = " ".join(doc.sentences["abstract"]).strip()
            if abstract:
                records.append({"id": doc.id, "title": doc.title, "abstract": abstract})
    return records


def write_jsonl(records: list[dict[str, str]], path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path
