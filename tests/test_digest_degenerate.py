"""A digest and TL;DRs written by a degenerate model (the fake OpenAI-compatible server
scripted as the small model of issue 11 behaved): a looping overview, topic names that echo
the prompt, a TL;DR that invents a method name, one that invents a number, one that echoes
the prompt. Each is replaced by its extractive version, and the reason shows in the digest's
notes, its JSON, the Slack blocks and the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from answers.digest import DigestService
from answers.llm import build_chat_model
from answers.settings import AnswerSettings
from bot.slack import blocks
from retrieval import Corpus, Paper, RetrievalSettings
from retrieval.sources import page_text
from tests.support.fakes import FakeEmbedder
from tests.support.openai_server import CHAT_PATH, FakeOpenAIServer

DAY = date(2025, 5, 16)
LOOP = "Today brings many new papers on diffusion models."
BAD_TLDRS = {  # short title -> what the model wrote, and what the note must say
    "MoS": (
        "Mismatch of Shards (MoS) shares LoRA parameters across layers, saving about 8x "
        "parameters.",
        "names “Mismatch of Shards”, which the abstract does not mention",
    ),
    "GVGEN": (
        "GVGEN generates 3D Gaussian volumes from text within 10 seconds.",
        "gives the number “10”, which the abstract does not give",
    ),
    "Tutel": (
        "Title: Tutel Abstract: Tutel adapts mixture-of-experts training.",
        "echoes the prompt (“Title:”)",
    ),
}


def _short(title: str) -> str:
    return title.split(":")[0]


def degenerate_model(body: dict[str, Any]) -> str:
    """The small model: loops in the overview, echoes the topic prompt, and writes a bad
    TL;DR for the papers of BAD_TLDRS (a fair one for the rest)."""
    system = body["messages"][0]["content"]
    user = body["messages"][-1]["content"]
    if system.startswith("You write TL;DRs"):
        short = _short(user.split("\n", 1)[0].removeprefix("Title: "))
        return BAD_TLDRS[short][0] if short in BAD_TLDRS else f"{short} is summarised fairly."
    if system.startswith("You name groups"):
        return "Papers in the group:\n" + user.split("\n", 1)[1]
    return " ".join([LOOP] * 68)  # 544 words, one sentence


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(default_reply=degenerate_model) as srv:
        yield srv


@pytest.fixture
def llm_settings(
    make_answer_settings: Callable[..., AnswerSettings], server: FakeOpenAIServer
) -> AnswerSettings:
    return make_answer_settings(
        llm_base_url=server.base_url, llm_provider="openai", llm_model="gpt-test", llm_max_retries=0
    )


@pytest.fixture
def corpus(settings: RetrievalSettings, sample_page: Path) -> Iterator[Corpus]:
    corpus = Corpus(settings, embedder=FakeEmbedder())
    records = page_text.parse(sample_page.read_bytes(), origin=sample_page.name, page_date=DAY)
    corpus.ingest([r for r in records if isinstance(r, Paper)])
    yield corpus
    corpus.close()


def _chat_roles(server: FakeOpenAIServer) -> list[str]:
    roles = []
    for request in server.requests_to(CHAT_PATH):
        system = request.body["messages"][0]["content"]
        roles.append(
            "tldr"
            if system.startswith("You write TL;DRs")
            else "topic"
            if system.startswith("You name groups")
            else "digest"
        )
    return roles


def test_a_degenerate_models_digest_is_replaced_by_the_extractive_one_with_notes(
    llm_settings: AnswerSettings, corpus: Corpus, server: FakeOpenAIServer
) -> None:
    digest = DigestService(corpus, build_chat_model(llm_settings), llm_settings).build(DAY)
    extractive = DigestService(corpus, None).build(DAY)

    # The looping overview is not shown: the overview is assembled from the papers.
    assert digest.mode == "extractive" and digest.model == "extractive"
    assert LOOP not in digest.overview
    assert digest.overview.startswith("30 papers were listed on 2025-05-16")
    overview_note = (
        f"The overview by gpt-test repeats the sentence “{LOOP}” 68 times; it is assembled "
        "from the papers instead."
    )
    # Topic names that echo the prompt are not shown: the groups keep their extractive names.
    topics = [g for g in digest.groups if not g.other]
    assert topics and [g.name for g in topics] == [g.name for g in extractive.groups if not g.other]
    assert not any("group" in g.name.casefold() for g in digest.groups)
    names_note = (
        f"{len(topics)} topic names by gpt-test were replaced by the groups' terms: "
        "“Papers in the group:” is copied from the prompt."
    )
    # Bad TL;DRs are extractive with the reason; the fair ones stay the model's.
    tldrs = {_short(p.paper.title): p.tldr for p in digest.papers}
    for short, (bad, why) in BAD_TLDRS.items():
        tldr = tldrs[short]
        assert tldr.mode == "extractive" and tldr.text != bad
        assert tldr.note == (f"The TL;DR by gpt-test {why}; showing an extractive TL;DR instead.")
    assert "Mixture of Shards (MoS)" in tldrs["MoS"].text  # quoted from the abstract
    assert all(t.mode == "llm" and t.note is None for s, t in tldrs.items() if s not in BAD_TLDRS)
    first = next(p.tldr for p in digest.papers if p.tldr.note)  # in rank order
    tldr_note = f"3 TL;DR(s) are extractive: {first.note}"
    assert digest.notes == [tldr_note, names_note, overview_note]

    # The CLI's --json output (Digest.to_json) carries every note.
    data = json.loads(digest.to_json())
    assert data["notes"] == digest.notes and data["mode"] == "extractive"
    by_short = {_short(p["paper"]["title"]): p["tldr"] for g in data["groups"] for p in g["papers"]}
    assert "Mismatch of Shards" in by_short["MoS"]["note"]
    # The Slack parent message shows them, as the TL;DR message does.
    _, parent = blocks.digest_parent(digest)
    shown = [b["elements"][0]["text"] for b in parent if b["type"] == "context"]
    assert all(any(note[:40] in text for text in shown) for note in digest.notes)
    mos = next(p for p in digest.papers if _short(p.paper.title) == "MoS")
    _, summary_blocks = blocks.summary_message(mos.paper, mos.tldr)
    assert any("Mismatch of Shards" in str(b) for b in summary_blocks)

    # Built again: the replaced TL;DRs and the model's names come from the cache and are
    # checked again (no TL;DR or topic request); only the overview is asked for, and
    # rejected again.
    before = len(server.requests_to(CHAT_PATH))
    again = DigestService(corpus, build_chat_model(llm_settings), llm_settings).build(DAY)
    assert _chat_roles(server)[before:] == ["digest"]
    assert again.notes == digest.notes and again.mode == "extractive"
    assert [g.name for g in again.groups] == [g.name for g in digest.groups]


def test_the_cli_shows_the_replacements(
    server: FakeOpenAIServer,
    tmp_path: Path,
    tiktoken_dir: Path,
    sample_page: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`paperbot digest --json` and `paperbot summarize` against the degenerate model (the
    fake server also serves the embeddings, so no model file is loaded)."""
    from bot.cli.main import app

    env = {
        "PAPERBOT_DATA_DIR": str(tmp_path / "data"),
        "PAPERBOT_TIKTOKEN_CACHE_DIR": str(tiktoken_dir),
        "PAPERBOT_OPENAI_BASE_URL": server.base_url,
        "PAPERBOT_EMBEDDING_PROVIDER": "openai",
        "PAPERBOT_EMBEDDING_MODEL": "embed-test",
        "PAPERBOT_LLM_MODEL": "gpt-test",
        "PAPERBOT_LLM_MAX_RETRIES": "0",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    runner = CliRunner()
    ingested = runner.invoke(app, ["ingest", str(sample_page), "--date", "2025-05-16"])
    assert ingested.exit_code == 0, ingested.output

    shown = runner.invoke(app, ["digest", "--date", "2025-05-16", "--json"])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    assert data["mode"] == "extractive" and LOOP not in data["overview"]
    assert any("repeats the sentence" in n for n in data["notes"])
    assert any("“Papers in the group:” is copied from the prompt" in n for n in data["notes"])

    title = "MoS: Unleashing Parameter Efficiency of Low-Rank Adaptation with Mixture of Shards"
    summary = runner.invoke(app, ["summarize", title])
    assert summary.exit_code == 0, summary.output
    text = " ".join(summary.output.split())
    assert "Mismatch of Shards" in text and "not mention" in text and "extractive" in text
    assert "demonstrate approximately 8x parameter savings" in text  # quoted from the abstract
