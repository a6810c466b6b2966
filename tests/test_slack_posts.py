"""Posts people want to read, within Slack's limits by design.

Every message paperbot builds — answers, search results, digests of 30 and of 300 papers,
notifications — is checked against Slack's documented Block Kit limits
(bot/slack/block_limits.py), and nothing is cut: no "…more blocks not shown". Every paper
line links somewhere real (arXiv abstract and PDF, the HF page) or says "no link", never
shows an internal title hash, names its first three authors, and carries the HF thumbnail
when there is one. A title-only paper gets its arXiv link by a title lookup (a local fake
arXiv here).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from datetime import time as dt_time
from pathlib import Path
from typing import Any

import pytest

from answers.digest import Digest
from answers.models import Answer, Citation, SentenceCheck
from bot.services import Services
from bot.slack import block_limits, blocks, paper_lines
from bot.slack.digest_posting import post_digest
from bot.slack.paper_links import ArxivLinks
from bot.slack.papers_command import run_command
from bot.slack.slash import Command
from retrieval import Corpus, Paper, RetrievalSettings, SourceError, arxiv_id_by_title
from retrieval.models import Chunk, Hit
from retrieval.normalize import make_paper
from retrieval.sources import load_path
from tests.support.feed_server import FeedServer, arxiv_atom

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample"
DAY = date(2025, 5, 16)
CUT = "more blocks not shown"
_LINK = re.compile(r"<(https?://[^|>]+)\|")
_HASH = re.compile(r"\bt:[0-9a-f]{16}\b")  # an internal title-hash id


# ---------------------------------------------------------------- data
def _sample_papers() -> list[Paper]:
    papers = [
        p
        for name in ("daily_papers_page.txt", "hf_daily_papers_api_sample.json")
        for p in load_path(SAMPLE / name, page_date=DAY)
        if isinstance(p, Paper)
    ]
    assert len(papers) >= 30
    return papers


def _three_hundred() -> list[Paper]:
    """300 papers of one day made from the sample: every third title-only (as the HF page
    text gives them), the others with an arXiv id, authors, upvotes and comments."""
    base = _sample_papers()
    papers = []
    for n in range(300):
        seed = base[n % len(base)]
        title = f"{seed.title} ({n // len(base) + 1})" if n >= len(base) else seed.title
        if n % 3 == 0:
            paper = make_paper(title=title, abstract=seed.abstract, source="hf_page", published=DAY)
        else:
            paper = make_paper(
                title=title,
                abstract=seed.abstract,
                source="hf_api",
                arxiv_id=f"2505.{10000 + n:05d}",
                authors=[f"Author {n}-{k}" for k in range(n % 6 + 1)],
                upvotes=n % 97,
                comments=n % 5,
                published=DAY,
            )
        papers.append(paper)
    return papers


@pytest.fixture
def services(fake_corpus: Corpus) -> Iterator[Services]:
    built = Services.build(fake_corpus.settings, corpus=fake_corpus, llm=None)
    yield built
    built.store.close()


def _digest_of(services: Services, papers: Sequence[Paper]) -> Digest:
    services.corpus.ingest(list(papers))
    digest = services.digests.build(DAY)
    assert digest.paper_count == len(papers)
    return digest


# ---------------------------------------------------------------- checking
def _check(message: blocks.Message) -> None:
    text, blks = message
    assert block_limits.violations(text, blks) == [], json.dumps(blks)[:2000]
    assert CUT not in json.dumps(blks)


def _visible_text(node: Any) -> str:
    """Every text a reader sees (text objects), not button values or ids."""
    if isinstance(node, dict):
        own = node["text"] if node.get("type") in ("mrkdwn", "plain_text") else ""
        return " ".join([own, *(_visible_text(v) for v in node.values())]).strip()
    if isinstance(node, list):
        return " ".join(_visible_text(v) for v in node).strip()
    return ""


class RecordingClient:
    """chat.postMessage, recorded (what digest_posting calls)."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []

    def chat_postMessage(self, **params: Any) -> dict[str, Any]:
        self.posts.append(params)
        return {"ok": True, "ts": f"1747390000.{len(self.posts):06d}"}


# ---------------------------------------------------------------- the validator itself
def test_block_limits_names_each_broken_limit() -> None:
    long = "x" * 3001
    cases = {
        "51 blocks": [blocks.context("a")] * 51,
        "section text": [{"type": "section", "text": {"type": "mrkdwn", "text": long}}],
        "header text": [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}],
        "context elements": [
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 11}
        ],
        "section fields": [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}],
        "section field": [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 2001}]}],
        "button text": [
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "action_id": "a",
                        "text": {"type": "plain_text", "text": "b" * 76},
                    }
                ],
            }
        ],
        "actions elements": [{"type": "actions", "elements": []}],
        "context_actions elements": [
            {"type": "context_actions", "elements": [blocks.feedback_block("x")["elements"][0]] * 6}
        ],
        "image_url": [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": "t"},
                "accessory": {"type": "image", "image_url": "ftp://x", "alt_text": "a"},
            }
        ],
    }
    for what, blks in cases.items():
        found = block_limits.violations("fallback", blks)
        assert found, what
        assert any(what.split()[-1] in line for line in found), (what, found)
    assert block_limits.violations("", [blocks.context("a")]) != []
    assert block_limits.violations("t" * 3901, [blocks.context("a")]) != []
    assert block_limits.violations("ok", [blocks.context("a"), blocks.feedback_block("x")]) == []


# ---------------------------------------------------------------- paper lines
def test_an_hf_paper_links_to_arxiv_pdf_and_hf_with_authors_votes_and_thumbnail() -> None:
    [paper] = [p for p in _sample_papers() if p.arxiv_id == "2410.17243"]
    _, [head, block, *_] = blocks.notification_message("contrastive loss", [paper])
    text = block["text"]["text"]
    assert "<https://arxiv.org/abs/2410.17243|arXiv 2410.17243>" in text
    assert "|PDF>" in text and "<https://huggingface.co/papers/2410.17243|HF>" in text
    assert "Zesen Cheng, Hang Zhang, Kehan Li et al." in text
    assert f"▲ {paper.upvotes}" in text
    assert block["accessory"] == {
        "type": "image",
        "image_url": "https://cdn-thumbnails.huggingface.co/social-thumbnails/papers/2410.17243.png",
        "alt_text": f"Thumbnail of {paper.title}",
    }
    assert head["text"]["text"] == "🔔 1 new paper on *contrastive loss*"


def test_the_hf_thumbnail_is_the_one_the_hf_api_publishes() -> None:
    """The URL paper_lines builds is the `thumbnail` field of the HF API sample."""
    raw = json.loads((SAMPLE / "hf_daily_papers_api_sample.json").read_text())
    published = {e["paper"]["id"]: e["thumbnail"] for e in raw if e.get("thumbnail")}
    assert published
    for paper in _sample_papers():
        if paper.arxiv_id in published:
            assert paper_lines.thumbnail(paper) == published[paper.arxiv_id]


def test_a_title_only_paper_says_no_link_and_never_shows_its_hash() -> None:
    papers = [p for p in _sample_papers() if p.paper_id.startswith("t:")]
    assert papers
    for message in (
        blocks.notification_message("splatting", papers[:3]),
        blocks.search_results("q", [_hit(p) for p in papers[:3]]),
        blocks.shared_results("U1", "q", papers[:3]),
        blocks.summary_message(papers[0], _summary()),
    ):
        _check(message)
        shown = _visible_text(message[1])
        assert _HASH.search(shown) is None, shown
        assert not any(p.paper_id in shown for p in papers)
        assert "_no link_" in shown


def test_authors_are_the_first_three_then_et_al() -> None:
    def named(n: int) -> Paper:
        return make_paper(
            title="T",
            abstract="An abstract long enough to keep.",
            authors=[f"A{i}" for i in range(n)],
            source="file",
        )

    assert paper_lines.authors(named(1)) == "A0"
    assert paper_lines.authors(named(3)) == "A0, A1, A2"
    assert paper_lines.authors(named(4)) == "A0, A1, A2 et al."


def test_counts_are_worded_in_correct_plurals() -> None:
    assert paper_lines.plural(1, "paper") == "1 paper"
    assert paper_lines.plural(0, "paper") == "0 papers"
    assert paper_lines.plural(1204, "paper") == "1,204 papers"
    assert paper_lines.plural(1, "new paper") == "1 new paper"


def _hit(paper: Paper) -> Hit:
    chunk = Chunk(f"{paper.paper_id}:0", paper.paper_id, 0, paper.abstract[:300], 20, paper.title)
    return Hit(paper=paper, chunk=chunk, score=1.0)


def _summary() -> Any:
    from answers.summarize import Summary

    return Summary(paper_id="p", text="**Fast** 3D.", mode="llm", model="m")


# ---------------------------------------------------------------- LLM markdown
def test_llm_markdown_reaches_slack_as_mrkdwn_with_escaping_kept() -> None:
    answer = Answer(
        question="q",
        text="**GVGEN** is fast <!channel> [1].",
        mode="llm",
        sentences=[SentenceCheck("**GVGEN** is _fast_ <!channel> [1].", (1,), 0.9, "supported")],
        citations=[Citation(1, "p1", "GVGEN", "https://arxiv.org/abs/2403.12957", "q", ())],
    )
    _, blks = blocks.answer_message(answer, "fb")
    body = blks[0]["text"]["text"]
    assert body.startswith("*GVGEN* is _fast_ &lt;!channel&gt; [1].")
    assert "**" not in body
    paper = _sample_papers()[0]
    _, summary_blocks = blocks.summary_message(paper, _summary())
    assert "*Fast* 3D." in summary_blocks[0]["text"]["text"]


# ---------------------------------------------------------------- answers and search
def test_a_huge_answer_continues_over_sections_instead_of_being_cut() -> None:
    sentences = [
        SentenceCheck(
            f"Sentence {n} says something specific about papers [1].", (1,), 0.9, "supported"
        )
        for n in range(400)
    ]
    answer = Answer(
        question="q",
        text=" ".join(s.text for s in sentences),
        mode="llm",
        sentences=sentences,
        citations=[
            Citation(n, f"p{n}", f"Paper {n}", f"https://arxiv.org/abs/2505.{n:05d}", "q" * 400, ())
            for n in range(1, 20)
        ],
    )
    message = blocks.answer_message(answer, "fb")
    _check(message)
    shown = " ".join(b["text"]["text"] for b in message[1] if b["type"] == "section")
    assert "Sentence 0 " in shown and "Sentence 399 " in shown
    assert all(f"arxiv.org/abs/2505.{n:05d}" in shown for n in range(1, 20))
    assert message[1][-1]["type"] == "context_actions"


def test_search_results_and_notifications_are_within_limits() -> None:
    papers = _three_hundred()
    _check(blocks.search_results("diffusion", [_hit(p) for p in papers[:8]]))
    for count in (1, 10, 100, 300):
        message = blocks.notification_message("diffusion models", papers[:count])
        _check(message)
        assert len(set(_LINK.findall(json.dumps(message[1])))) >= count * 2 // 3


# ---------------------------------------------------------------- digests
@pytest.mark.parametrize("size", [30, 300])
def test_a_digest_is_a_parent_and_one_reply_per_topic_within_limits(
    services: Services, size: int
) -> None:
    papers = _sample_papers()[:30] if size == 30 else _three_hundred()
    digest = _digest_of(services, papers)
    client = RecordingClient()
    result = post_digest(services, client, "C0DIGEST", DAY)
    assert result.status == "posted"
    parent, *replies = client.posts
    assert "thread_ts" not in parent
    assert all(r["thread_ts"] == result.ts for r in replies)
    assert len(replies) == len(digest.groups), "one reply per topic"
    for post in client.posts:
        _check((post["text"], post["blocks"]))
    parent_text = _visible_text(parent["blocks"])
    named = sum(not g.other for g in digest.groups)
    assert f"{size} papers · {named} topics" in parent_text
    assert parent["blocks"][-1]["elements"][0]["type"] == "feedback_buttons"
    for group, reply in zip(digest.groups, replies, strict=True):
        assert reply["blocks"][0]["text"]["text"] == group.name
        assert f"{group.name} · " not in reply["blocks"][0]["text"]["text"]
        count = blocks.plural(len(group.papers), "paper")
        assert f"*{blocks.escape(group.name)}* — {count}" in parent_text
    linked = [p for p in papers if p.link]
    shown = " ".join(_visible_text(r["blocks"]) for r in replies)
    for paper in linked:
        assert shown.count(f"*<{paper.link}|") == 1, paper.title  # its title, once
    assert "_no link_" in shown or size == 30
    assert not any(p.paper_id in shown for p in papers if p.paper_id.startswith("t:"))
    stored = services.store.get_answer(
        parent["blocks"][-1]["elements"][0]["positive_button"]["value"].split(":", 1)[1]
    )
    assert stored is not None and stored["mode"] == "digest"
    assert len(stored["citations"]) == size, "the digest's feedback keeps its papers"


def test_the_300_paper_digest_on_demand_shows_topics_and_opens_one(services: Services) -> None:
    digest = _digest_of(services, _three_hundred())
    command = Command("digest", day=DAY)
    whole = run_command(services, command, user_id="U1", channel_id="C1")
    _check(whole)
    assert "divider" not in [b["type"] for b in whole[1]], "too big: topics, not papers"
    biggest = max(digest.groups, key=lambda g: len(g.papers))
    assert f"/papers digest 2025-05-16 {digest.groups[0].name}" in _visible_text(whole[1])

    one = run_command(
        services, Command("digest", biggest.name.upper(), day=DAY), user_id="U1", channel_id="C1"
    )
    _check(one)
    assert one[1][0]["text"]["text"] == f"{biggest.name} · 2025-05-16"
    shown = _visible_text(one[1])
    assert all(f"{p.paper.link}|" in shown for p in biggest.papers if p.paper.link)

    missing = run_command(
        services, Command("digest", "no such topic", day=DAY), user_id="U1", channel_id="C1"
    )
    assert "No topic “no such topic”" in missing[0] and biggest.name in missing[0]


def test_the_30_paper_digest_on_demand_fits_whole(services: Services) -> None:
    digest = _digest_of(services, _sample_papers()[:30])
    message = blocks.digest_ephemeral(digest)
    _check(message)
    assert [b["type"] for b in message[1]].count("divider") == len(digest.groups)


def test_an_ask_command_answer_carries_feedback_buttons(services: Services) -> None:
    services.corpus.ingest(_sample_papers()[:30])
    text, blks = run_command(
        services,
        Command("ask", "Which paper generates 3D Gaussians from text?"),
        user_id="U1",
        channel_id="C1",
    )
    _check((text, blks))
    [element] = blks[-1]["elements"]
    vote = blocks.parse_feedback_value(element["negative_button"]["value"])
    assert vote is not None and services.store.get_answer(vote[1]) is not None


# ---------------------------------------------------------------- arXiv ids by title
@pytest.fixture
def arxiv() -> Iterator[FeedServer]:
    with FeedServer() as running:
        yield running


def test_arxiv_id_by_title_matches_the_title_not_the_first_hit(arxiv: FeedServer) -> None:
    wanted = make_paper(
        title="GVGEN: Text-to-3D Generation", abstract="An abstract about GVGEN.", source="file"
    )
    other = make_paper(
        title="GVGEN revisited", abstract="Another abstract about it.", source="file"
    )
    arxiv.enqueue("/api/query", 200, arxiv_atom([other, wanted], 12957, "2025-05-15T10:00:00Z"))
    found = arxiv_id_by_title(
        "gvgen - text to 3D generation", base_url=arxiv.url + "/api/query", timeout=5, retries=0
    )
    assert found == "2505.12958"
    [request] = arxiv.requests
    assert request.params["search_query"] == 'ti:"gvgen text to 3d generation"'

    url = arxiv.url + "/api/query"
    assert arxiv_id_by_title("GVGEN", base_url=url, timeout=5, retries=0) is None
    assert arxiv_id_by_title("  ", base_url=url, timeout=5, retries=0) is None
    arxiv.enqueue("/api/empty", 500, b"down")
    with pytest.raises(SourceError):
        arxiv_id_by_title("GVGEN", base_url=arxiv.url + "/api/empty", timeout=5, retries=0)


def test_a_title_only_paper_gets_its_arxiv_link_once_and_offline_says_no_link(
    arxiv: FeedServer, make_settings: Any
) -> None:
    [paper] = [p for p in _sample_papers() if p.title.startswith("GVGEN")]
    assert paper.paper_id.startswith("t:") and paper.link is None
    arxiv.enqueue("/api/query", 200, arxiv_atom([paper], 12957, "2024-03-19T10:00:00Z"))
    settings: RetrievalSettings = make_settings(arxiv_api_url=arxiv.url + "/api/query")
    links = ArxivLinks.from_settings(settings)
    [linked] = links.resolve([paper])
    assert linked.arxiv_id == "2505.12957"
    _, blks = blocks.notification_message("3D", [linked])
    assert "<https://arxiv.org/abs/2505.12957|arXiv 2505.12957>" in blks[1]["text"]["text"]
    links.resolve([paper])
    assert len(arxiv.requests) == 1, "the answer is remembered"

    offline = ArxivLinks.from_settings(make_settings(arxiv_api_url="http://127.0.0.1:9/api"))
    others = [p for p in _sample_papers() if p.paper_id.startswith("t:")][:5]
    assert offline.resolve(others) == others
    _, blks = blocks.notification_message("3D", offline.resolve(others))
    assert "_no link_" in blks[1]["text"]["text"]


def test_a_failed_lookup_stops_the_others_of_the_message() -> None:
    calls: list[str] = []

    def down(title: str) -> str | None:
        calls.append(title)
        raise SourceError("Could not fetch arXiv: connection refused after 1 attempt")

    papers = [p for p in _sample_papers() if p.paper_id.startswith("t:")][:5]
    assert ArxivLinks(down).resolve(papers) == papers
    assert len(calls) == 1


def test_a_posted_digest_links_title_only_papers_when_lookups_are_on(
    services: Services, arxiv: FeedServer, make_settings: Any
) -> None:
    papers = _sample_papers()[:30]
    title_only = [p for p in papers if p.paper_id.startswith("t:")]
    arxiv.enqueue("/api/query", 200, arxiv_atom(title_only[:1], 11111, "2025-05-15T10:00:00Z"))
    services.arxiv_links = ArxivLinks.from_settings(  # type: ignore[attr-defined]
        make_settings(arxiv_api_url=arxiv.url + "/api/query")
    )
    _digest_of(services, papers)
    client = RecordingClient()
    assert post_digest(services, client, "C0LINKS", DAY).status == "posted"
    shown = " ".join(json.dumps(p["blocks"]) for p in client.posts[1:])
    assert "https://arxiv.org/abs/2505.11111|" in shown


def test_a_notification_shows_every_new_paper_it_claims(services: Services) -> None:
    """Each paper is notified once; so every claimed paper must be in the message."""
    from bot.slack.notify import notify_subscribers
    from bot.slack.settings import SlackSettings

    services.store.subscribe("U0READER", "diffusion distillation", created_by="U0READER")
    papers = [
        make_paper(
            title=f"Diffusion distillation in {k + 1} steps, variant {k}",
            abstract=(
                f"We distill diffusion models into {k + 1}-step samplers. Diffusion "
                "distillation keeps image quality while sampling far faster."
            ),
            source="hf_api",
            arxiv_id=f"2505.{20000 + k:05d}",
            published=DAY,
        )
        for k in range(15)
    ]
    services.corpus.ingest(papers)
    client = RecordingClient()
    now = datetime.combine(DAY, dt_time(12), UTC).timestamp()  # the papers are news that day
    notified = notify_subscribers(
        services, client, settings=SlackSettings.model_construct(), now=now
    )
    assert notified == 1
    [post] = client.posts
    _check((post["text"], post["blocks"]))
    shown = _visible_text(post["blocks"])
    claimed = [p for p in papers if f"arxiv.org/abs/{p.arxiv_id}|arXiv" in shown]
    assert len(claimed) >= 11, "more than the old cap of 10"
    again = RecordingClient()
    notify_subscribers(services, again, settings=SlackSettings.model_construct(), now=now + 60)
    assert again.posts == [], "nothing twice"


def test_a_one_paper_digest_says_1_paper_in_slack_and_in_the_cli(
    services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.cli import render

    digest = _digest_of(services, _sample_papers()[:1])
    _, parent = blocks.digest_parent(digest)
    assert "1 paper · extractive" in _visible_text(parent)
    assert "1 papers" not in _visible_text(parent)
    render.print_digest(digest)
    out = capsys.readouterr().out
    assert "1 paper" in out and "1 papers" not in out


def test_arxiv_title_lookups_are_a_setting(make_settings: Any) -> None:
    from bot.services import Services
    from bot.slack.paper_links import ArxivLinks
    from tests.support.fakes import FakeEmbedder

    off = make_settings()
    on = make_settings(arxiv_title_lookup=True)
    for settings, expected in ((off, type(None)), (on, ArxivLinks)):
        corpus = Corpus(settings, embedder=FakeEmbedder())
        services = Services.build(settings, corpus=corpus, llm=None)
        assert isinstance(services.arxiv_links, expected)
        corpus.close()
