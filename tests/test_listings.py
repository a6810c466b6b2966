"""The feed day as a first-class date: each paper keeps when each feed listed it, apart from
its publication date, and digests, date filters, `papers list`, search and subscriptions go
by the listing day (publication date still available with `by="published"`).

The HF API sample is the case from the issue: HF listed both papers on 2024-10-25 (the
entries' `publishedAt`), their arXiv dates (`paper.publishedAt`) are 2024-10-21/22; a digest
for 2024-10-25 came out empty before listings existed.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from answers.digest import DigestService
from bot.cli.main import app
from bot.services import Services
from bot.slack.notify import notify_subscribers
from bot.slack.papers_command import latest_day
from retrieval import Corpus, Paper, RecordError, RetrievalSettings, SearchFilters
from retrieval import search as search_module
from retrieval.migrations import migrate, schema_version
from retrieval.normalize import make_paper
from retrieval.sources import arxiv, hf_api, load_path, page_text, tabular
from retrieval.state import StateStore
from retrieval.state_schema import MIGRATIONS
from tests.support.fakes import FakeEmbedder
from tests.support.feed_server import FeedServer

HF_DAY = date(2024, 10, 25)  # the day HF listed the sample's papers
ARXIV_DAYS = {"2410.17243": date(2024, 10, 22), "2410.16251": date(2024, 10, 21)}
PAGE_DAY = date(2025, 5, 16)
LEGACY_FIXTURE = Path(__file__).resolve().parent / "fixtures" / "legacy_state_v0.sql"
PAYLOADS = Path(__file__).resolve().parent / "payloads"
ABSTRACT = (
    "We propose a tile-based computation strategy for contrastive loss. "
    "It avoids full materialization of the similarity matrix. "
    "Experiments show batch sizes of millions on a few GPUs."
)


class Clock:
    """A controllable UNIX clock for when listings are first seen."""

    def __init__(self, now: float = 1_730_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def corpus(settings: RetrievalSettings, clock: Clock) -> Iterator[Corpus]:
    corpus = Corpus(
        settings, state=StateStore(settings.state_path, clock=clock), embedder=FakeEmbedder()
    )
    yield corpus
    corpus.close()


def _hf(sample_api_json: Path) -> list[Paper | RecordError]:
    return list(hf_api.parse(sample_api_json.read_bytes(), origin="hf"))


def _arxiv_paper(**extra: Any) -> Paper:
    return make_paper(
        title="Breaking the Memory Barrier",
        abstract=ABSTRACT,
        source="arxiv",
        arxiv_id="2410.17243v1",
        published=date(2024, 10, 22),
        **extra,
    )


def _ids(papers: list[Paper]) -> set[str]:
    return {p.paper_id for p in papers}


# ------------------------------------------------------------------ sources carry the day
def test_hf_api_entries_carry_the_listing_day_apart_from_the_arxiv_date(
    sample_api_json: Path,
) -> None:
    records = _hf(sample_api_json)
    assert [(p.paper_id, p.published, p.listed) for p in records if isinstance(p, Paper)] == [
        ("2410.17243", ARXIV_DAYS["2410.17243"], HF_DAY),
        ("2410.16251", ARXIV_DAYS["2410.16251"], HF_DAY),
    ]
    entries = json.loads(sample_api_json.read_text())
    del entries[0]["publishedAt"]
    first, second = hf_api.parse(json.dumps(entries), origin="hf", day=date(2024, 10, 26))
    assert isinstance(first, Paper) and first.listed == date(2024, 10, 26), "the fetched day"
    assert isinstance(second, Paper) and second.listed == HF_DAY, "the entry's own day wins"
    entries[1]["publishedAt"] = "2024-10-24T23:30:00-02:00"  # 2024-10-25 01:30 UTC
    _, utc = hf_api.parse(json.dumps(entries), origin="hf")
    assert isinstance(utc, Paper) and utc.listed == HF_DAY


def test_page_text_tabular_and_arxiv_listing_days(sample_page: Path, tmp_path: Path) -> None:
    page = [
        r
        for r in page_text.parse(sample_page.read_bytes(), origin="page", page_date=PAGE_DAY)
        if isinstance(r, Paper)
    ]
    assert page and all(p.listed == p.published == PAGE_DAY for p in page)

    rows = [
        {"title": "Listed paper", "abstract": ABSTRACT, "listed": "2024-10-25"},
        {"title": "Unlisted paper", "abstract": ABSTRACT, "published": "2024-10-20"},
        {"title": "Bad listing", "abstract": ABSTRACT, "listed": "next week"},
    ]
    listed, unlisted, bad = tabular.parse_jsonl("\n".join(map(json.dumps, rows)), origin="f")
    assert isinstance(listed, Paper) and listed.listed == HF_DAY and listed.published is None
    assert isinstance(unlisted, Paper) and unlisted.listed is None
    assert isinstance(bad, RecordError) and "listed" in bad.reason
    csv_file = tmp_path / "papers.csv"
    csv_file.write_text(f'title,abstract,listed\nA CSV paper,"{ABSTRACT}",2024-10-25\n')
    [from_csv] = load_path(csv_file)
    assert isinstance(from_csv, Paper) and from_csv.listed == HF_DAY

    atom = (PAYLOADS / "arxiv_two_entries.xml").read_bytes()
    assert all(isinstance(p, Paper) and p.listed is None for p in arxiv.parse(atom, origin="a"))


# ------------------------------------------------------------------ the case
def test_the_hf_day_digest_holds_the_papers_hf_listed_that_day(
    corpus: Corpus, sample_api_json: Path
) -> None:
    report = corpus.ingest(_hf(sample_api_json), feed="hf")
    assert len(report.new) == 2 and report.listings_added == 2

    digests = DigestService(corpus, llm=None)
    digest = digests.build(HF_DAY)
    assert digest.paper_count == 2, digest.overview
    assert _ids(corpus.papers(since=HF_DAY)) == set(ARXIV_DAYS)
    assert corpus.latest_day() == HF_DAY
    assert [(p.published, p.listed) for p in corpus.papers(since=HF_DAY, until=HF_DAY)] == [
        (ARXIV_DAYS["2410.17243"], HF_DAY),
        (ARXIV_DAYS["2410.16251"], HF_DAY),
    ]
    # the publication date is still there: the old answers
    assert digests.build(HF_DAY, by="published").paper_count == 0
    assert digests.build(date(2024, 10, 21), date(2024, 10, 22), by="published").paper_count == 2
    assert corpus.papers(since=HF_DAY, by="published") == []
    assert corpus.latest_day("published") == date(2024, 10, 22)
    assert [(x.feed, x.day) for x in corpus.listings(paper_ids=["2410.17243"])] == [("hf", HF_DAY)]


def test_reingest_is_idempotent_and_a_listing_alone_changes_no_chunk(
    corpus: Corpus, sample_api_json: Path, clock: Clock
) -> None:
    corpus.ingest(_hf(sample_api_json), feed="hf")
    listings, generation = corpus.listings(), corpus.state.generation
    embedded = corpus.embedder.texts_embedded  # type: ignore[attr-defined]

    clock.now += 3600
    again = corpus.ingest(_hf(sample_api_json), feed="hf")
    assert len(again.unchanged) == 2 and again.listings_added == 0
    assert corpus.listings() == listings, "first_seen_at kept"

    # the same papers, listed by the HF feed on the next day as well (a new listing only)
    entries = json.loads(sample_api_json.read_text())
    for entry in entries:
        entry["publishedAt"] = "2024-10-26T08:00:00.000Z"
    report = corpus.ingest(hf_api.parse(json.dumps(entries), origin="hf"), feed="hf")
    assert len(report.unchanged) == 2 and report.listings_added == 2
    assert corpus.state.generation == generation, "no chunk changed: no index rebuild"
    assert corpus.embedder.texts_embedded == embedded  # type: ignore[attr-defined]
    assert len(corpus.listings()) == 4
    assert {p.listed for p in corpus.papers()} == {HF_DAY}, "the first day stays"


def test_two_feeds_two_days_keep_both_listings_and_the_earlier_day_counts(
    corpus: Corpus, clock: Clock
) -> None:
    late, early = date(2024, 10, 25), date(2024, 10, 23)
    corpus.ingest([_arxiv_paper()], feed="hf", listed=late)
    assert corpus.paper("2410.17243").listed == late
    clock.now += 60
    report = corpus.ingest([_arxiv_paper()], feed="arxiv:cs.LG", listed=early)
    assert report.unchanged == ["2410.17243"] and report.listings_added == 1
    assert [(x.feed, x.day) for x in corpus.listings(paper_ids=["2410.17243"])] == [
        ("arxiv:cs.LG", early),
        ("hf", late),
    ]
    assert corpus.paper("2410.17243").listed == early
    # a paper belongs to the digest of the day a feed first listed it: once, not twice
    assert _ids(corpus.papers(since=early, until=early)) == {"2410.17243"}
    assert corpus.papers(since=late, until=late) == []
    assert [x.paper_id for x in corpus.listings(feed="hf", since=late, until=late)] == [
        "2410.17243"
    ]


def test_listing_days_come_from_the_record_else_the_ingest_else_none(corpus: Corpus) -> None:
    own = _arxiv_paper(listed=date(2024, 10, 24))
    other = make_paper(
        title="Another paper", abstract=ABSTRACT + " Again.", source="file", published=HF_DAY
    )
    report = corpus.ingest([own, other], listed=date(2024, 10, 30))
    assert report.listings_added == 2
    assert {(x.paper_id, x.feed, x.day) for x in corpus.listings()} == {
        ("2410.17243", "manual", date(2024, 10, 24)),
        (other.paper_id, "manual", date(2024, 10, 30)),
    }
    third = make_paper(
        title="A third paper", abstract=ABSTRACT + " Third.", source="file", published=HF_DAY
    )
    assert corpus.ingest([third]).listings_added == 0, "no day known: no listing"
    assert corpus.paper(third.paper_id).listed is None
    # never listed: picked by its publication date
    assert third.paper_id in _ids(corpus.papers(since=HF_DAY, until=HF_DAY))


def test_an_unlisted_paper_listed_later_moves_to_that_day_at_once(corpus: Corpus) -> None:
    """E.g. a paper a cron job fetched from arXiv, then featured on HF: the listing alone
    makes it part of the HF day in `papers`, the digest and search filters, at once and
    without rebuilding an index."""
    corpus.ingest([_arxiv_paper()])
    filters = SearchFilters(since=HF_DAY, until=HF_DAY)
    assert corpus.search("contrastive loss", 5, filters=filters) == []  # the searcher is built
    assert corpus.papers(since=HF_DAY) == []
    generation, bm25 = corpus.state.generation, corpus.lexical_index()

    report = corpus.ingest([_arxiv_paper()], feed="hf", listed=HF_DAY)
    assert report.unchanged == ["2410.17243"] and report.listings_added == 1
    assert corpus.state.generation == generation and corpus.lexical_index() is bm25
    assert corpus.paper("2410.17243").listed == HF_DAY
    assert _ids(corpus.papers(since=HF_DAY)) == {"2410.17243"}
    assert DigestService(corpus, llm=None).build(HF_DAY).paper_count == 1
    hits = corpus.search("contrastive loss", 5, filters=filters)
    assert [h.paper.paper_id for h in hits] == ["2410.17243"]
    assert hits[0].paper.listed == HF_DAY


def test_a_title_only_record_lists_its_arxiv_twin_and_a_merge_keeps_listings(
    corpus: Corpus,
) -> None:
    title_only = make_paper(
        title="Breaking the Memory Barrier", abstract=ABSTRACT, source="hf_page", listed=PAGE_DAY
    )
    corpus.ingest([title_only], feed="hf-page")
    assert corpus.paper(title_only.paper_id).listed == PAGE_DAY
    # the arXiv record replaces the title-hash paper and takes over its listing
    report = corpus.ingest([_arxiv_paper()], feed="arxiv", listed=date(2025, 5, 19))
    assert report.new == ["2410.17243"]
    merged = corpus.paper("2410.17243")
    assert merged.paper_id == "2410.17243" and merged.listed == PAGE_DAY
    assert {(x.feed, x.day) for x in corpus.listings(paper_ids=["2410.17243"])} == {
        ("hf-page", PAGE_DAY),
        ("arxiv", date(2025, 5, 19)),
    }
    # a title-only record of a paper stored under its arXiv id lists that paper
    again = make_paper(
        title="Breaking the Memory Barrier", abstract=ABSTRACT, source="hf_page", listed=PAGE_DAY
    )
    later = again.model_copy(update={"listed": date(2025, 5, 20)})
    report = corpus.ingest([later], feed="hf-page")
    assert report.skipped and report.listings_added == 1
    assert date(2025, 5, 20) in {x.day for x in corpus.listings(paper_ids=["2410.17243"])}


def test_deleting_a_paper_deletes_its_listings(corpus: Corpus, sample_api_json: Path) -> None:
    corpus.ingest(_hf(sample_api_json), feed="hf")
    corpus.delete(["2410.17243"])
    assert [x.paper_id for x in corpus.listings()] == ["2410.16251"]


# ------------------------------------------------------------------ search filters
@pytest.mark.parametrize("mode", ["hybrid", "dense", "lexical"])
@pytest.mark.parametrize("exact_limit", [search_module.EXACT_DENSE_LIMIT, 0])
def test_search_date_filters_go_by_listing_day(
    corpus: Corpus,
    sample_api_json: Path,
    sample_page: Path,
    mode: Any,
    exact_limit: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """exact_limit 0 takes the large-window path (nearest neighbours from Chroma, filtered)."""
    monkeypatch.setattr(search_module, "EXACT_DENSE_LIMIT", exact_limit)
    corpus.ingest(page_text.parse(sample_page.read_bytes(), origin="p", page_date=PAGE_DAY))
    corpus.ingest(_hf(sample_api_json), feed="hf")
    query = "knowledge editing hallucinations"

    def found(**filters: Any) -> list[str]:
        hits = corpus.search(query, 5, mode=mode, filters=SearchFilters(**filters))
        return [h.paper.paper_id for h in hits]

    assert found()[:1] == ["2410.16251"]
    assert found(since=HF_DAY, until=HF_DAY)[:1] == ["2410.16251"]
    assert set(found(since=HF_DAY, until=HF_DAY)) <= set(ARXIV_DAYS)
    assert "2410.16251" not in found(since=PAGE_DAY)
    assert found(since=PAGE_DAY) and set(found(since=PAGE_DAY)).isdisjoint(ARXIV_DAYS)
    assert found(since=date(2024, 10, 21), until=date(2024, 10, 21)) == []
    published = found(since=date(2024, 10, 21), until=date(2024, 10, 21), by="published")
    assert published == ["2410.16251"]
    assert found(since=HF_DAY, until=HF_DAY, by="published") == []
    assert found(since=HF_DAY, until=HF_DAY, sources=("hf_page",)) == []
    assert found(since=HF_DAY, until=HF_DAY, sources=("hf_api",))[:1] == ["2410.16251"]
    with pytest.raises(ValueError, match="by must be"):
        SearchFilters(since=HF_DAY, by="announced")  # type: ignore[arg-type]


# ------------------------------------------------------------------ migrations
def test_a_v0_data_dir_keeps_every_paper_in_its_old_days_digest(
    make_settings: Callable[..., RetrievalSettings],
) -> None:
    settings = make_settings()
    settings.data_dir.mkdir(parents=True)
    with sqlite3.connect(settings.state_path) as db:
        db.executescript(LEGACY_FIXTURE.read_text(encoding="utf-8"))
    db.close()
    corpus = Corpus(settings, embedder=FakeEmbedder())
    try:
        papers = corpus.papers()
        assert len(papers) == 2 and all(p.source == "hf_page" for p in papers)
        # the page's date was the day HF listed them: it became their listing
        assert {(x.feed, x.day) for x in corpus.listings()} == {("manual", PAGE_DAY)}
        assert all(p.listed == p.published == PAGE_DAY for p in papers)
        digest = DigestService(corpus, llm=None).build(PAGE_DAY)
        assert digest.paper_count == 2
        assert corpus.latest_day() == PAGE_DAY
    finally:
        corpus.close()
    with sqlite3.connect(settings.state_path) as db:
        assert schema_version(db) == len(MIGRATIONS) == 3
    db.close()


def test_a_v2_data_dir_with_api_arxiv_and_file_papers_keeps_their_days(
    settings: RetrievalSettings,
) -> None:
    """Papers of other sources carry publication dates, not listing days: they get no made-up
    listing, stay on their old day (by publication date) until a feed lists them."""
    settings.data_dir.mkdir(parents=True)
    db = sqlite3.connect(settings.state_path, isolation_level=None)
    migrate(db, MIGRATIONS[:2], settings.state_path)
    days = {"hf_api": date(2024, 10, 21), "arxiv": date(2024, 10, 22), "hf_page": PAGE_DAY}
    for number, (source, day) in enumerate(days.items()):
        db.execute(
            "INSERT INTO papers(paper_id, title, title_key, abstract, authors, published, "
            "source, categories, content_hash, ingested_at, changed_at) "
            "VALUES (?, ?, ?, ?, '[]', ?, ?, '[]', ?, 1.0, 1.0)",
            (f"p{number}", f"T{number}", f"t{number}", ABSTRACT, day.isoformat(), source, "h"),
        )
    db.close()

    state = StateStore(settings.state_path)
    try:
        assert [(x.paper_id, x.day) for x in state.listings()] == [("p2", PAGE_DAY)]
        for number, (_source, day) in enumerate(days.items()):
            assert [p.paper_id for p in state.list_papers(since=day, until=day)] == [f"p{number}"]
        assert state.get_paper("p0").listed is None  # type: ignore[union-attr]
        state.add_listings([("p0", "hf", HF_DAY)])
        assert state.get_paper("p0").listed == HF_DAY  # type: ignore[union-attr]
        assert [p.paper_id for p in state.list_papers(since=HF_DAY, until=HF_DAY)] == ["p0"]
    finally:
        state.close()


# ------------------------------------------------------------------ the bot
class RecordingClient:
    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []

    def chat_postMessage(self, **params: Any) -> dict[str, Any]:
        self.posts.append(params)
        return {"ok": True, "ts": f"1.{len(self.posts):06d}"}


def test_subscriptions_notify_a_paper_when_a_feed_first_lists_it(
    corpus: Corpus, settings: RetrievalSettings, clock: Clock
) -> None:
    services = Services.build(settings, corpus=corpus, llm=None)
    client = RecordingClient()
    try:
        services.store.subscribe("U1", "contrastive loss", created_by="U1")
        corpus.ingest([_arxiv_paper()])  # fetched by hand long ago, never listed: notified
        assert notify_subscribers(services, client, now=clock.now + 1) == 1
        clock.now += 10
        corpus.ingest([_arxiv_paper()], feed="hf", listed=HF_DAY)  # now a feed lists it
        arrived = corpus.papers_arrived_since(clock.now - 5)
        assert [p.paper_id for p in arrived] == ["2410.17243"]
        assert notify_subscribers(services, client, now=clock.now + 1) == 0, "once per paper"
        clock.now += 10
        services.store.subscribe("U2", "contrastive loss", created_by="U2")
        corpus.ingest([_arxiv_paper()], feed="arxiv", listed=date(2024, 10, 26))
        assert corpus.papers_arrived_since(clock.now - 5) == [], "a second feed: not news"
        assert notify_subscribers(services, client, now=clock.now + 1) == 0
        assert [p["channel"] for p in client.posts] == ["U1"]
    finally:
        services.store.close()


def test_a_backfill_of_past_years_notifies_nobody(
    corpus: Corpus, settings: RetrievalSettings, clock: Clock
) -> None:
    """`ingest --arxiv-snapshot` lists years of papers today: history, not news. Before, the
    next tick of `serve` would have sent subscribers every matching paper of the backfill."""
    services = Services.build(settings, corpus=corpus, llm=None)
    client = RecordingClient()
    today = datetime.fromtimestamp(clock.now, UTC).date()  # 2024-10-27, HF_DAY is 2 days back
    try:
        services.store.subscribe("U1", "contrastive loss", created_by="U1")
        old = make_paper(
            title="Contrastive loss for memory-bounded training",
            abstract=ABSTRACT,
            source="arxiv",
            arxiv_id="2210.00001v1",
            published=today - timedelta(days=700),
        )
        corpus.ingest([old], feed="arxiv-snapshot", listed=today - timedelta(days=699))
        assert notify_subscribers(services, client, now=clock.now + 1) == 0
        clock.now += 10
        corpus.ingest([_arxiv_paper()], feed="hf", listed=HF_DAY)  # this week's: news
        assert notify_subscribers(services, client, now=clock.now + 1) == 1
        assert "2210.00001" not in str(client.posts) and "2410.17243" in str(client.posts)
    finally:
        services.store.close()


def test_papers_digest_defaults_to_the_latest_listing_day(
    corpus: Corpus, settings: RetrievalSettings, sample_api_json: Path
) -> None:
    services = Services.build(settings, corpus=corpus, llm=None)
    try:
        assert latest_day(services) == date.today()  # empty index
        corpus.ingest(_hf(sample_api_json), feed="hf")
        assert latest_day(services) == HF_DAY
    finally:
        services.store.close()


# ------------------------------------------------------------------ the CLI
@pytest.fixture
def cli_env(tmp_path: Path, tiktoken_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PAPERBOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PAPERBOT_TIKTOKEN_CACHE_DIR", str(tiktoken_dir))
    return tmp_path


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout if "--json" in args else result.output


@pytest.mark.integration
def test_cli_lists_digests_and_searches_by_listing_day(
    cli_env: Path, sample_api_json: Path
) -> None:
    code, out = _run("ingest", str(sample_api_json))
    assert code == 0, out

    code, out = _run("papers", "list", "--since", "2024-10-25", "--json")
    assert code == 0 and {p["paper_id"] for p in json.loads(out)} == set(ARXIV_DAYS)
    assert {p["listed"] for p in json.loads(out)} == {"2024-10-25"}
    code, out = _run("papers", "list", "--since", "2024-10-25", "--by", "published", "--json")
    assert code == 0 and json.loads(out) == []

    code, out = _run("digest", "--json")  # the latest listing day
    digest = json.loads(out)
    assert code == 0 and digest["start"] == "2024-10-25" and digest["paper_count"] == 2
    code, out = _run("digest", "--date", "2024-10-25", "--by", "published", "--json")
    assert code == 0 and json.loads(out)["paper_count"] == 0

    query = ["search", "knowledge editing hallucinations", "--json"]
    code, out = _run(*query, "--since", "2024-10-25", "--until", "2024-10-25")
    assert code == 0 and json.loads(out)[0]["paper"]["paper_id"] == "2410.16251"
    code, out = _run(*query, "--since", "2024-10-25", "--by", "published")
    assert code == 0 and json.loads(out) == []
    code, out = _run("papers", "list", "--by", "announced")
    assert code != 0 and "listed, published" in out


@pytest.mark.integration
def test_cli_ingest_records_the_given_feed_and_day(cli_env: Path, tmp_path: Path) -> None:
    feed_file = tmp_path / "cs_lg.jsonl"
    feed_file.write_text(
        json.dumps({"title": "A paper", "abstract": ABSTRACT, "published": "2024-10-20"}) + "\n"
    )
    code, out = _run("ingest", str(feed_file), "--feed", "arxiv-cs.LG", "--listed", "2024-10-23")
    assert code == 0, out
    code, out = _run("papers", "list", "--since", "2024-10-23", "--json")
    [paper] = json.loads(out)
    assert paper["listed"] == "2024-10-23" and paper["published"] == "2024-10-20"
    with sqlite3.connect(cli_env / "data" / "state.sqlite3") as db:
        assert db.execute("SELECT feed, day FROM listings").fetchall() == [
            ("arxiv-cs.LG", "2024-10-23")
        ]
    db.close()
    code, out = _run("papers", "show", paper["paper_id"], "--json")
    assert code == 0 and json.loads(out)["listings"] == [
        {"feed": "arxiv-cs.LG", "day": "2024-10-23"}
    ]
    code, out = _run("papers", "show", paper["paper_id"])
    assert code == 0 and "2024-10-23 by arxiv-cs.LG" in out


@pytest.mark.integration
def test_cli_hf_date_is_the_listing_day_of_entries_without_their_own(
    cli_env: Path, sample_api_json: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entries = json.loads(sample_api_json.read_text())
    del entries[0]["publishedAt"]
    with FeedServer() as server:
        monkeypatch.setenv("PAPERBOT_HF_API_URL", server.url + "/api/daily_papers")
        server.enqueue("/api/daily_papers", 200, json.dumps(entries))
        code, out = _run("ingest", "--hf-date", "2024-10-26")
    assert code == 0, out
    code, out = _run("papers", "list", "--json")
    assert {p["paper_id"]: p["listed"] for p in json.loads(out)} == {
        "2410.17243": "2024-10-26",  # no entry date: the day the list was fetched for
        "2410.16251": "2024-10-25",  # the entry's own date
    }
