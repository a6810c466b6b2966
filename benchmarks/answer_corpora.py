"""The indexes the issue-11 benchmarks share: built once under benchmarks/.work/answers/, reused.

- ``mixed``: the 30 sample papers + the 250 ACLSum abstracts (the dev questions' corpus grown
  with many unrelated papers);
- ``acl``: the 250 ACLSum abstracts alone (one domain: the single-domain unanswerable set).

An index is reused when its marker file names the same papers; ``--fresh`` rebuilds it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.common import (
    SAMPLE_DATE,
    SAMPLE_PAGE,
    WORK,
    acl_docs,
    fresh_dir,
    log,
    make_settings,
    write_jsonl,
)
from retrieval import Corpus
from retrieval.sources import load_path

ANSWERS_WORK = WORK / "answers"
CORPORA = ("mixed", "acl", "sample")


def corpus_dir(name: str, embedder: Any, *, fresh: bool = False) -> Path:
    """The data dir of corpus ``name`` (one of CORPORA), indexed with ``embedder``."""
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; choose one of {', '.join(CORPORA)}")
    data_dir = ANSWERS_WORK / name
    marker = data_dir / "corpus.json"
    docs = acl_docs() if name in ("mixed", "acl") else ()
    wanted = {"acl": len(docs), "sample": name in ("mixed", "sample")}
    if not fresh and marker.exists() and json.loads(marker.read_text()) == wanted:
        return data_dir
    log(f"indexing corpus {name!r} under {data_dir}")
    fresh_dir(data_dir)
    corpus = Corpus(make_settings(data_dir), embedder=embedder)
    if docs:
        jsonl = write_jsonl(
            [{"title": d.title, "abstract": d.abstract} for d in docs],
            ANSWERS_WORK / "aclsum.jsonl",
        )
        corpus.ingest(load_path(jsonl))
    if wanted["sample"]:
        corpus.ingest(load_path(SAMPLE_PAGE, page_date=SAMPLE_DATE))
    corpus.close()
    marker.write_text(json.dumps(wanted))
    return data_dir
