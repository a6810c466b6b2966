"""Daily digests: selection, ranking, grouping and naming, overview (LLM, map-reduce and
extractive), topic filter, empty days, JSON round trip."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from answers.digest import OTHER_NAME, TOPIC_NAMESPACE, Digest, DigestService, rank_papers
from answers.digest_data import clean_topic_name, pack_blocks
from answers.llm import build_chat_model
from answers.settings import AnswerSettings
from answers.summarize import Summarizer
from retrieval import Corpus, Paper, RetrievalSettings
from retrieval.normalize import make_paper
from retrieval.sources import page_text
from tests.support.fakes import FakeEmbedder
from tests.support.openai_server import CHAT_PATH, FakeOpenAIServer

DAY = date(2025, 5, 16)
TEXT_TO_3D = ("GVGEN", "SweetDreamer", "HeadSculpt")


def _sample(path: Path) -> list[Any]:
    return list(page_text.parse(path.read_bytes(), origin=path.name, page_date=DAY))


def _short(title: str) -> str:
    return title.split(":")[0]


def _role_of(body: dict[str, Any]) -> str:
    """Which prompt a chat request came from, by its system message."""
    system = body["messages"][0]["content"]
    if system.startswith("You write TL;DRs"):
        return "tldr"
    if system.startswith("You name groups"):
        return "topic"
    assert system.startswith("You write the opening paragraph of a daily research digest")
    return "digest"


def _reply(body: dict[str, Any]) -> str:
    role = _role_of(body)
    if role == "tldr":
        title = body["messages"][-1]["content"].split("\n", 1)[0].removeprefix("Title: ")
        return f"TL;DR: {_short(title)} does one thing well."
    if role == "topic":  # named after the group's first paper, as the model was asked
        first = body["messages"][-1]["content"].split("\n- ", 1)[1].split("\n", 1)[0]
        return f'"Topic of {_short(first)}."'
    return "Overview: A scripted overview of the day."


@pytest.fixture(scope="module")
def real_corpus(
    tmp_path_factory: pytest.TempPathFactory, tiktoken_dir: Path, local_embedder: Any
) -> Iterator[Corpus]:
    """The 30-paper sample embedded with the real MiniLM model, ingested once per module."""
    settings = RetrievalSettings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path_factory.mktemp("digest-real"),
        tiktoken_cache_dir=tiktoken_dir,
        # One chunk per abstract (MiniLM reads 256 tokens of it) halves the embedding time.
        chunk_tokens=400,
    )
    corpus = Corpus(settings, embedder=local_embedder)
    corpus.ingest(
        _sample(Path(__file__).resolve().parent.parent / "data/sample/daily_papers_page.txt")
    )
    yield corpus
    corpus.close()


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(default_reply=_reply) as srv:
        yield srv


@pytest.fixture
def llm_settings(
    make_answer_settings: Callable[..., AnswerSettings], server: FakeOpenAIServer
) -> AnswerSettings:
    return make_answer_settings(
        llm_base_url=server.base_url, llm_provider="openai", llm_model="gpt-test", llm_max_retries=0
    )


@pytest.fixture
def llm_corpus(settings: RetrievalSettings, sample_page: Path) -> Iterator[Corpus]:
    corpus = Corpus(settings, embedder=FakeEmbedder())
    corpus.ingest(_sample(sample_page))
    yield corpus
    corpus.close()


def _llm_service(corpus: Corpus, settings: AnswerSettings) -> DigestService:
    return DigestService(corpus, build_chat_model(settings), settings)


def _requests(server: FakeOpenAIServer, role: str) -> list[Any]:
    return [r for r in server.requests_to(CHAT_PATH) if _role_of(r.body) == role]


# --------------------------------------------------------------------------- extractive
def test_extractive_digest_of_the_sample_day(real_corpus: Corpus) -> None:
    # Lexical TL;DR scoring saves ~7 s of sentence embedding; the digest logic is the same
    # (the dense path is covered in test_summarize with the fake embedder).
    summarizer = Summarizer(real_corpus, None, dense_extractive=False)
    digest = DigestService(real_corpus, None, summarizer=summarizer).build(DAY)

    assert digest.mode == "extractive" and digest.model == "extractive"
    assert digest.paper_count == digest.total_papers == 30
    ids = [p.paper.paper_id for p in digest.papers]
    assert len(ids) == len(set(ids)) == 30  # every paper exactly once
    assert [p.rank for p in digest.papers] == list(range(1, 31))
    topics = [g for g in digest.groups if not g.other]
    assert 3 <= len(topics) <= 6
    assert all(g.name and g.name != OTHER_NAME and len(g.papers) >= 2 for g in topics)
    assert len({g.name for g in digest.groups}) == len(digest.groups)
    assert all(p.tldr.text and p.tldr.mode == "extractive" for p in digest.papers)

    # The text-to-3D papers form one topic.
    group_of = {_short(p.paper.title): g.name for g in digest.groups for p in g.papers}
    assert len({group_of[name] for name in TEXT_TO_3D}) == 1
    three_d = next(g for g in digest.groups if g.name == group_of["GVGEN"])
    assert not three_d.other and "3D" in three_d.name

    # The overview states real facts.
    assert digest.overview.startswith("30 papers were listed on 2025-05-16")
    assert all(f"{g.name} ({len(g.papers)})" in digest.overview for g in topics)


def test_topic_filter_keeps_matching_papers(real_corpus: Corpus) -> None:
    service = DigestService(
        real_corpus, None, summarizer=Summarizer(real_corpus, None, dense_extractive=False)
    )
    moe = service.build(DAY, topic="mixture of experts")
    titles = {_short(p.paper.title) for p in moe.papers}
    assert {"FSMoE", "Tutel", "DynMoLE"} <= titles
    assert not titles & set(TEXT_TO_3D)
    assert moe.topic == "mixture of experts" and moe.total_papers == 30

    none = service.build(DAY, topic="quantum chemistry of soils")
    assert none.groups == [] and none.paper_count == 0
    assert (
        none.overview == "None of the 30 papers for 2025-05-16 match “quantum chemistry of soils”."
    )


# --------------------------------------------------------------------------- selection
def _dated(title: str, day: date, upvotes: int | None) -> Paper:
    abstract = f"We study {title.lower()} with a new method. Results improve on baselines."
    return make_paper(
        title=title, abstract=abstract, source="hf_api", published=day, upvotes=upvotes
    )


def test_ranking_by_upvotes_then_recency_and_the_window(fake_corpus: Corpus) -> None:
    fake_corpus.ingest(
        [
            _dated("Alpha routing", date(2025, 5, 14), 5),
            _dated("Beta retrieval", date(2025, 5, 15), None),
            _dated("Gamma diffusion", date(2025, 5, 14), 40),
            _dated("Delta pruning", date(2025, 5, 15), 12),
            _dated("Epsilon agents", date(2025, 5, 16), None),
            _dated("Zeta outside", date(2025, 5, 20), 99),
        ]
    )
    service = DigestService(fake_corpus, None)
    digest = service.build(date(2025, 5, 14), date(2025, 5, 16))
    order = [p.paper.title.split()[0] for p in digest.papers]
    assert order == ["Gamma", "Delta", "Alpha", "Epsilon", "Beta"]
    assert "The most upvoted is “Gamma diffusion” (40 upvotes)" in digest.overview
    assert digest.period == "2025-05-14 to 2025-05-16"

    capped = service.build(date(2025, 5, 14), date(2025, 5, 16), max_papers=2)
    assert [p.paper.title.split()[0] for p in capped.papers] == ["Gamma", "Delta"]
    assert capped.paper_count == 2 and capped.total_papers == 5
    assert capped.notes == ["Showing the top 2 of 5 papers."]


def test_rank_papers_puts_missing_upvotes_and_dates_last() -> None:
    papers = [
        _dated("B", date(2025, 5, 1), None),
        _dated("A", date(2025, 5, 2), None),
        make_paper(title="C undated", abstract="An abstract long enough here.", source="file"),
        _dated("D", date(2025, 4, 1), 1),
    ]
    assert [p.title[0] for p in rank_papers(papers)] == ["D", "A", "B", "C"]


def test_empty_day_and_invalid_range(fake_corpus: Corpus) -> None:
    service = DigestService(fake_corpus, None)
    empty = service.build(date(2025, 5, 17))
    assert empty.groups == [] and empty.paper_count == 0 and empty.papers == []
    assert empty.overview == "No papers were ingested for 2025-05-17."
    with pytest.raises(ValueError, match="starts on 2025-05-17, after it ends on 2025-05-16"):
        service.build(date(2025, 5, 17), date(2025, 5, 16))
    with pytest.raises(ValueError, match="max_papers"):
        service.build(DAY, max_papers=0)


# --------------------------------------------------------------------------- LLM
def test_llm_digest_names_groups_writes_overview_and_caches(
    llm_settings: AnswerSettings, llm_corpus: Corpus, server: FakeOpenAIServer
) -> None:
    digest = _llm_service(llm_corpus, llm_settings).build(DAY)

    assert digest.mode == "llm" and digest.model == "gpt-test"
    assert digest.overview == "A scripted overview of the day."
    assert not digest.map_reduce and len(_requests(server, "digest")) == 1
    assert {p.tldr.text for p in digest.papers if _short(p.paper.title) == "GVGEN"} == {
        "GVGEN does one thing well."
    }
    topics = [g for g in digest.groups if not g.other]
    assert topics and topics[0].name.startswith("Topic of ")
    for group in topics:  # the model's names, cleaned: each passed the check
        assert group.name == clean_topic_name(f"Topic of {_short(group.papers[0].paper.title)}")
    assert not digest.notes
    names = [g.name for g in topics]
    assert len(set(names)) == len(names)  # repeats are numbered
    assert len(_requests(server, "topic")) == len(topics)
    assert len(_requests(server, "tldr")) == 30
    assert digest.tokens_in > 0 and digest.tokens_out > 0

    # The overview prompt carries every paper's title and TL;DR.
    prompt = _requests(server, "digest")[0].body["messages"][-1]["content"]
    assert all(p.paper.title in prompt and p.tldr.text in prompt for p in digest.papers)

    # Again: TL;DRs and topic names come from the cache; only the overview is asked for.
    before = len(server.requests_to(CHAT_PATH))
    again = _llm_service(llm_corpus, llm_settings).build(DAY)
    assert len(server.requests_to(CHAT_PATH)) == before + 1
    assert all(p.tldr.cached for p in again.papers)
    assert [g.name for g in again.groups] == [g.name for g in digest.groups]
    assert llm_corpus.state.cache_count(TOPIC_NAMESPACE) == len(topics)


def test_map_reduce_when_the_groups_exceed_the_context(
    llm_settings: AnswerSettings, llm_corpus: Corpus, server: FakeOpenAIServer
) -> None:
    tight = llm_settings.model_copy(update={"llm_context_tokens": 200})
    digest = DigestService(llm_corpus, build_chat_model(tight), tight).build(DAY)

    calls = _requests(server, "digest")
    assert digest.map_reduce and len(calls) > 2  # map calls, then the reduce
    assert digest.mode == "llm" and digest.overview == "A scripted overview of the day."
    # The map calls together cover every paper; each fits the budget.
    mapped = "\n".join(c.body["messages"][-1]["content"] for c in calls[:-1])
    assert all(p.paper.title in mapped for p in digest.papers)
    codec = llm_corpus.codec
    groups_of = [c.body["messages"][-1]["content"].split("\n\n", 1)[1] for c in calls[:-1]]
    assert all(len(codec.encode(g.rsplit("\n\nOverview:", 1)[0])) <= 200 for g in groups_of)
    # The reduce call sees the per-group paragraphs, not the papers.
    final = calls[-1].body["messages"][-1]["content"]
    assert "A scripted overview of the day." in final and "does one thing well" not in final


def test_overview_failure_falls_back_to_extractive_with_a_note(
    llm_settings: AnswerSettings, llm_corpus: Corpus, server: FakeOpenAIServer
) -> None:
    _llm_service(llm_corpus, llm_settings).build(DAY)  # fills the TL;DR and topic caches
    server.enqueue_error(500, path=CHAT_PATH)  # the next request is the overview
    digest = _llm_service(llm_corpus, llm_settings).build(DAY)
    assert digest.mode == "extractive" and digest.model == "extractive"
    assert digest.overview.startswith("30 papers were listed on 2025-05-16")
    assert any("HTTP 500" in n and "overview" in n for n in digest.notes)
    assert all(p.tldr.mode == "llm" for p in digest.papers)


# --------------------------------------------------------------------------- output
def test_digest_json_round_trip(llm_corpus: Corpus) -> None:
    digest = DigestService(llm_corpus, None).build(DAY, max_papers=12)
    data = json.loads(digest.to_json())
    assert data["start"] == "2025-05-16" and data["paper_count"] == 12
    first = data["groups"][0]["papers"][0]
    assert {"rank", "paper", "tldr"} <= first.keys() and first["tldr"]["text"]
    assert Digest.from_json(digest.to_json()) == digest


def test_helpers_clean_names_and_pack_blocks() -> None:
    assert clean_topic_name('Topic label: "Text-to-3D Generation."\nextra') == (
        "Text-to-3D Generation"
    )
    assert clean_topic_name("**Efficient LLM Training Systems At Very Large Scale**") == (
        "Efficient LLM Training Systems At Very"
    )
    chars = len  # a stand-in token counter
    blocks = ["## A\n- one two\n- three four", "## B\n- five"]
    assert pack_blocks(blocks, 100, chars) == [blocks]
    assert pack_blocks(blocks, 30, chars) == [[blocks[0]], [blocks[1]]]
    # A block alone over budget is split between its lines, its heading repeated.
    assert pack_blocks(blocks, 20, chars) == [
        ["## A\n- one two"],
        ["## A\n- three four"],
        ["## B\n- five"],
    ]


def test_services_share_one_runner(fake_corpus: Corpus) -> None:
    service = DigestService(fake_corpus, None)
    assert service.summarizer.runner is service.runner and not service.runner.available
    assert Summarizer(fake_corpus, None, runner=service.runner).runner is service.runner
