"""Block Kit formatting as a Slack user sees it: no injected pings or links, Slack's limits kept.

Pure: domain objects in, (fallback text, blocks) out. No servers, no Slack client.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Iterator, Sequence
from datetime import date
from typing import Any

import pytest

from answers.digest import Digest, DigestPaper, TopicGroup
from answers.models import Answer, AnswerMode, Citation, SentenceCheck
from answers.summarize import Summary
from bot.slack import block_limits, blocks
from bot.slack.blocks import Block, Message
from retrieval.models import Chunk, Hit, Paper
from retrieval.normalize import make_paper

# Everything Slack would turn into a ping, a link or an entity if it reached mrkdwn raw.
EVIL = "Look <!channel> <!here> <@U123> <http://x|y> & <!subteam^S1> done"
RAW_MARKUP = ("<!channel>", "<!here>", "<@U123>", "<http://x|y>", "<!subteam")
SHARER = "U42SHARER"
HUGE = 10_000
ABSTRACT = "We study a problem carefully and report clear, reproducible results on benchmarks."

# A link token as `link()` emits it: an http(s) URL without spaces, pipes or angle brackets.
_TOKEN = re.compile(r"<([^<>]*)>")
_SAFE_LINK = re.compile(r"^https?://[^\s<>|]+\|[^<>|]*$")
_BARE_AMP = re.compile(r"&(?!amp;|lt;|gt;)")


# ---------------------------------------------------------------- builders of domain objects
def _paper(i: int, title: str | None = None, abstract: str = ABSTRACT) -> Paper:
    return make_paper(
        title=title or f"Paper number {i}",
        abstract=abstract,
        source="file",
        url=f"https://example.org/papers/{i}",
        published=date(2025, 5, 16),
        upvotes=i,
    )


def _hit(paper: Paper, passage: str = ABSTRACT) -> Hit:
    chunk = Chunk(f"{paper.paper_id}:0", paper.paper_id, 0, passage, 20, paper.title)
    return Hit(paper=paper, chunk=chunk, score=1.0)


def _citation(n: int, title: str = "Cited paper", quote: str = "A supporting quote.") -> Citation:
    return Citation(
        number=n,
        paper_id=f"p{n}",
        title=title,
        url=f"https://example.org/papers/{n}",
        quote=quote,
        chunk_ids=(f"p{n}:0",),
    )


def _answer(mode: AnswerMode, text: str = "An answer [1].", **kw: Any) -> Answer:
    return Answer(question="What is new?", text=text, mode=mode, **kw)


def _summary(text: str = "A short TL;DR.", note: str | None = None) -> Summary:
    return Summary(paper_id="p1", text=text, mode="extractive", model="extractive", note=note)


def _group(name: str, papers: Sequence[Paper], tldr: str = "What it does.") -> TopicGroup:
    return TopicGroup(
        name=name,
        papers=[DigestPaper(p, _summary(tldr), rank=i + 1) for i, p in enumerate(papers)],
    )


def _digest(
    groups: list[TopicGroup], overview: str = "Today in papers.", notes: Sequence[str] = ()
) -> Digest:
    return Digest(
        start=date(2025, 5, 16),
        end=date(2025, 5, 16),
        overview=overview,
        groups=groups,
        mode="extractive",
        model="extractive",
        paper_count=sum(len(g.papers) for g in groups),
        notes=list(notes),
    )


# ---------------------------------------------------------------- inspecting messages
def _texts(node: Any, kind: str) -> Iterator[str]:
    """Every text object of the given type ("mrkdwn" or "plain_text") anywhere in the blocks."""
    if isinstance(node, dict):
        if node.get("type") == kind and isinstance(node.get("text"), str):
            yield node["text"]
        for value in node.values():
            yield from _texts(value, kind)
    elif isinstance(node, list):
        for value in node:
            yield from _texts(value, kind)


def _elements(blks: list[Block], kind: str) -> list[dict[str, Any]]:
    return [e for b in blks if b["type"] == "actions" for e in b["elements"] if e["type"] == kind]


def _assert_harmless(message: Message, mentions: Sequence[str] = ()) -> None:
    """No raw mention, broadcast or foreign link in any mrkdwn text; `&` always escaped."""
    _, blks = message
    texts = list(_texts(blks, "mrkdwn"))
    assert texts
    for text in texts:
        for raw in RAW_MARKUP:
            assert raw not in text, text
        assert "<!" not in text, text
        assert _BARE_AMP.search(text) is None, text
        for token in _TOKEN.findall(text):
            if token.startswith("@"):
                assert token[1:] in mentions, f"unexpected mention <{token}> in {text!r}"
            else:
                assert _SAFE_LINK.match(token), f"unexpected markup <{token}> in {text!r}"
        allowed = sum(text.count(f"<@{m}>") for m in mentions)
        assert text.count("<@") == allowed, text


def _assert_within_limits(message: Message) -> None:
    text, blks = message
    assert block_limits.violations(text, blks) == []
    assert text.strip(), "every message needs fallback text for notifications"
    assert len(text) <= blocks.MAX_TEXT_CHARS
    assert 1 <= len(blks) <= blocks.MAX_BLOCKS
    json.dumps(blks)  # serialisable as the API sends it
    for block in blks:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= blocks.MAX_SECTION_CHARS
        elif block["type"] == "header":
            assert block["text"]["type"] == "plain_text"
            assert len(block["text"]["text"]) <= 150
        elif block["type"] == "context":
            assert 1 <= len(block["elements"]) <= 10
            for element in block["elements"]:
                assert len(element["text"]) <= blocks.MAX_SECTION_CHARS
        elif block["type"] == "actions":
            assert 1 <= len(block["elements"]) <= 25
            for element in block["elements"]:
                assert len(element["value"]) <= 2000
                assert len(element["text"]["text"]) <= 75
                assert len(element["action_id"]) <= 255


def _shown(fallback: str) -> str:
    """What Slack displays for a fallback text (it decodes &amp; &lt; &gt;)."""
    return html.unescape(fallback)


def _balanced_links(text: str) -> bool:
    """Escaped user text has no raw angle brackets, so the ones left must pair up as links."""
    depth = 0
    for ch in text:
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        if depth not in (0, 1):
            return False
    return depth == 0


# ---------------------------------------------------------------- escape and link
def test_escape_makes_mentions_links_and_entities_plain_text() -> None:
    assert blocks.escape(EVIL) == (
        "Look &lt;!channel&gt; &lt;!here&gt; &lt;@U123&gt; &lt;http://x|y&gt; &amp; "
        "&lt;!subteam^S1&gt; done"
    )
    assert blocks.escape("<") == "&lt;"  # `&` first: no double escaping
    assert blocks.escape("&lt;") == "&amp;lt;"  # a literal entity stays literal
    assert blocks.escape("plain text") == "plain text"


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_link_links_http_urls_with_an_escaped_label(scheme: str) -> None:
    url = f"{scheme}://arxiv.org/abs/2410.17243"
    assert blocks.link(url, "Title") == f"<{url}|Title>"
    assert blocks.link(url, "<!channel> & co") == f"<{url}|&lt;!channel&gt; &amp; co>"


@pytest.mark.parametrize(
    "url", [None, "", "javascript:alert(1)", "ftp://x.org/a", "slack://open", "arxiv.org/abs/1"]
)
def test_link_shows_other_urls_as_plain_escaped_text(url: str | None) -> None:
    assert blocks.link(url, "A <@U123> title") == "A &lt;@U123&gt; title"


@pytest.mark.parametrize(
    ("url", "label"),
    [
        ("https://ok.org/a", "a|b>c"),
        ("https://ok.org/a", "x> <!channel> |<@U1>"),
        ("https://ok.org/a|<!channel>", "label"),
        ("https://ok.org/a>b<c", "label"),
        ("https://ok.org/a b\nc", "label"),
        ("https://ok.org/?q=1&r=<@U1>|x>", "a|b"),
    ],
)
def test_link_cannot_be_broken_out_of(url: str, label: str) -> None:
    out = blocks.link(url, label)
    assert out.startswith("<") and out.endswith(">")
    inner = out[1:-1]
    assert "<" not in inner and ">" not in inner  # one token, nothing after it
    assert _SAFE_LINK.match(inner), out  # exactly one `|`: url and label cannot swap roles
    assert "<!" not in out and "<@" not in out


# ---------------------------------------------------------------- nothing injectable, anywhere
def _evil_paper(i: int) -> Paper:
    return _paper(i, title=f"Title {i} {EVIL}", abstract=f"{ABSTRACT} {EVIL}")


def _evil_answer(mode: AnswerMode) -> Answer:
    return _answer(
        mode,
        text=f"{EVIL}\nSecond line {EVIL} [1]",
        sentences=[
            SentenceCheck(f"Supported {EVIL}", (1,), 0.9, "supported"),
            SentenceCheck(f"Weak {EVIL}", (1,), 0.1, "unsupported"),
            SentenceCheck(f"Bare {EVIL}", (), None, "uncited"),
        ]
        if mode == "llm"
        else [],
        citations=[
            _citation(1, title=f"Cited {EVIL}", quote=f"Quote {EVIL}"),
            Citation(2, "p2", f"No url {EVIL}", None, EVIL, ()),
            Citation(3, "p3", f"Bad url {EVIL}", "javascript:alert(1)", EVIL, ()),
        ],
        flags=[f"Flag {EVIL}"],
        hits=[_hit(_evil_paper(i), EVIL) for i in range(1, 5)],
        model=f"model {EVIL}",
        tokens_in=10,
        tokens_out=5,
    )


EVIL_MESSAGES: dict[str, Callable[[], list[Message]]] = {
    "answer_llm": lambda: [blocks.answer_message(_evil_answer("llm"), "fb-1")],
    "answer_extractive": lambda: [blocks.answer_message(_evil_answer("extractive"), "fb-1")],
    "answer_refused": lambda: [blocks.answer_message(_evil_answer("refused"))],
    "search_results": lambda: [
        blocks.search_results(EVIL, [_hit(_evil_paper(i), EVIL) for i in range(3)])
    ],
    "search_results_empty": lambda: [blocks.search_results(EVIL, [])],
    "summary_message": lambda: [
        blocks.summary_message(_evil_paper(1), _summary(f"TLDR {EVIL}", note=f"Note {EVIL}"))
    ],
    "digest_parent": lambda: [
        blocks.digest_parent(
            _digest(
                [_group(f"Group {EVIL}", [_evil_paper(i) for i in range(5)], EVIL)],
                overview=f"Overview {EVIL}",
                notes=[f"Note {EVIL}"],
            )
        )
    ],
    "digest_group_replies": lambda: blocks.digest_group_replies(
        _group(f"Group {EVIL}", [_evil_paper(i) for i in range(5)], f"TLDR {EVIL}")
    ),
    "digest_ephemeral": lambda: [
        blocks.digest_ephemeral(
            _digest(
                [_group(f"Group {EVIL}", [_evil_paper(i) for i in range(5)], f"TLDR {EVIL}")],
                overview=f"Overview {EVIL}",
                notes=[f"Note {EVIL}"],
            )
        )
    ],
    "help_message": lambda: [blocks.help_message("/papers", f"Unknown command {EVIL}")],
    "shared_results": lambda: [
        blocks.shared_results(SHARER, EVIL, [_evil_paper(1), _evil_paper(2)])
    ],
    "subscriptions_message": lambda: [
        blocks.subscriptions_message("You are", [f"topic {EVIL}", EVIL])
    ],
    "notification_message": lambda: [
        blocks.notification_message(f"topic {EVIL}", [_evil_paper(1), _evil_paper(2)])
    ],
    "error_message": lambda: [blocks.error_message(f"Failed: {EVIL}")],
    "placeholder": lambda: [blocks.placeholder(f"Question {EVIL}")],
    "streaming": lambda: [blocks.streaming(f"Partial {EVIL}")],
    "plain": lambda: [blocks.plain(f"You are subscribed to “{EVIL}”.")],
}


# help_message is checked block by block below: its usage block has a bug of its own.
@pytest.mark.parametrize("name", sorted(set(EVIL_MESSAGES) - {"help_message"}))
def test_user_paper_and_llm_text_cannot_ping_or_inject_links(name: str) -> None:
    messages = EVIL_MESSAGES[name]()
    assert messages
    for message in messages:
        _assert_harmless(message, mentions=[SHARER] if name == "shared_results" else [])


def test_help_problem_text_cannot_ping_or_inject_links() -> None:
    text, blks = blocks.help_message("/papers", f"Unknown command {EVIL}")
    assert blks[0]["text"]["text"].startswith("⚠️ Unknown command Look &lt;!channel&gt;")
    _assert_harmless((text, blks[:1]))


def test_help_usage_placeholders_are_shown_literally() -> None:
    """Slack reads `<question>` as a control sequence even inside backticks."""
    _, blks = blocks.help_message("/papers")
    usage = blks[-1]["text"]["text"]
    assert "`/papers ask &lt;question&gt;`" in usage
    _assert_harmless(("help", blks))


def test_shared_results_mention_only_the_sharing_user() -> None:
    message = blocks.shared_results(SHARER, EVIL, [_evil_paper(1), _evil_paper(2)])
    _assert_harmless(message, mentions=[SHARER])
    assert message[1][0]["text"]["text"].startswith(f"<@{SHARER}> shared papers")
    with pytest.raises(AssertionError):  # and the check would catch anyone else
        _assert_harmless(message, mentions=[])


# Slack shows the top-level text in mobile push notifications and to screen readers, and
# parses it as mrkdwn, so a paper title with `<!channel>` there is as live as in a block.


@pytest.mark.parametrize("name", sorted(EVIL_MESSAGES))
def test_fallback_text_cannot_ping_or_inject_links(name: str) -> None:
    for text, _ in EVIL_MESSAGES[name]():
        for raw in RAW_MARKUP:
            assert raw not in text, text


# ---------------------------------------------------------------- Slack's limits
def _long_answer(mode: AnswerMode) -> Answer:
    return _answer(
        mode,
        text=("word " * (HUGE // 5)).strip(),
        citations=[
            _citation(n, title=f"Cited paper {n} " + "t" * 200, quote="q" * 1000)
            for n in range(1, 61)
        ],
        sentences=[
            SentenceCheck("A long sentence " + "s" * 200, (n,), 0.2, "unsupported")
            for n in range(1, 61)
        ],
        flags=[f"flag {n} " + "f" * 3000 for n in range(60)],
        hits=[_hit(_paper(i)) for i in range(60)],
        model="m" * 500,
        tokens_in=1,
    )


def _big_digest() -> Digest:
    groups = [_group("Huge group " + "g" * 300, [_paper(i) for i in range(200)], "x" * HUGE)]
    groups += [
        _group(f"Group {g} " + "n" * 300, [_paper(1000 + g * 10 + i) for i in range(6)])
        for g in range(29)
    ]
    return _digest(groups, overview="o" * HUGE, notes=["n" * HUGE] * 10)


LIMIT_MESSAGES: dict[str, Callable[[], list[Message]]] = {
    "answer_llm": lambda: [blocks.answer_message(_long_answer("llm"), "f" * 32)],
    "answer_extractive": lambda: [blocks.answer_message(_long_answer("extractive"), "f" * 32)],
    "answer_refused": lambda: [blocks.answer_message(_long_answer("refused"), "f" * 32)],
    "search_results": lambda: [
        blocks.search_results("q" * HUGE, [_hit(_paper(i), "p" * HUGE) for i in range(100)])
    ],
    "search_results_empty": lambda: [blocks.search_results("q" * HUGE, [])],
    "shared_results": lambda: [
        blocks.shared_results(SHARER, "q" * HUGE, [_paper(i, "t" * 500) for i in range(100)])
    ],
    "digest_parent": lambda: [blocks.digest_parent(_big_digest())],
    "digest_group_replies": lambda: [
        m for g in _big_digest().groups for m in blocks.digest_group_replies(g)
    ],
    "digest_ephemeral": lambda: [blocks.digest_ephemeral(_big_digest())],
    "notification_message": lambda: [
        blocks.notification_message("t" * HUGE, [_paper(i, "t" * 500) for i in range(100)])
    ],
    "placeholder": lambda: [blocks.placeholder("q" * HUGE)],
    "streaming": lambda: [blocks.streaming("&" * HUGE)],  # escaping grows the text 5x
    "feedback_thanks": lambda: [blocks.feedback_thanks("up"), blocks.feedback_thanks("down")],
}

UNBOUNDED_FALLBACK: dict[str, Callable[[], list[Message]]] = {
    "summary_message": lambda: [
        blocks.summary_message(_paper(1, "t" * 500), _summary("s" * HUGE, note="n" * HUGE))
    ],
    "help_message": lambda: [blocks.help_message("/papers", "p" * HUGE)],
    "subscriptions_message": lambda: [blocks.subscriptions_message("You are", ["t" * 200] * 100)],
    "error_message": lambda: [blocks.error_message("e" * HUGE)],
    "plain": lambda: [blocks.plain("p" * HUGE)],
}


@pytest.mark.parametrize("name", sorted(LIMIT_MESSAGES))
def test_huge_inputs_stay_within_slack_limits(name: str) -> None:
    messages = LIMIT_MESSAGES[name]()
    assert messages
    for message in messages:
        _assert_within_limits(message)


@pytest.mark.parametrize("name", sorted(UNBOUNDED_FALLBACK))
def test_huge_inputs_keep_blocks_within_slack_limits(name: str) -> None:
    """The blocks of these builders are fine; only their fallback text is unbounded."""
    for _, blks in UNBOUNDED_FALLBACK[name]():
        _assert_within_limits(("fallback", blks))


@pytest.mark.parametrize("name", sorted(UNBOUNDED_FALLBACK))
def test_huge_inputs_keep_fallback_text_within_slack_limits(name: str) -> None:
    for message in UNBOUNDED_FALLBACK[name]():
        _assert_within_limits(message)


def test_small_messages_have_fallback_text() -> None:
    messages = [
        blocks.answer_message(_answer("llm")),
        blocks.search_results("q", []),
        blocks.help_message("/papers"),
        blocks.subscriptions_message("You are", []),
        blocks.notification_message("topic", [_paper(1)]),
        blocks.error_message("oops"),
        blocks.placeholder("q"),
        blocks.streaming(""),
        blocks.summary_message(_paper(1), _summary()),
        blocks.digest_parent(_digest([_group("G", [_paper(1)])])),
    ]
    for message in messages:
        _assert_within_limits(message)


def test_a_long_paper_list_is_packed_never_cut() -> None:
    papers = [_paper(i) for i in range(100)]
    text, blks = blocks.notification_message("topic", papers)
    assert len(blks) < blocks.MAX_BLOCKS
    assert "more blocks not shown" not in json.dumps(blks)
    assert sorted(_links_in([(text, blks)])) == sorted(p.link for p in papers if p.link)
    assert blks[0]["text"]["text"] == "🔔 100 new papers on *topic*"
    assert "Paper number 0" in text


def test_truncated_sources_never_leave_a_half_link() -> None:
    """A cut at 3,000 characters must not land inside `<url|title>`."""
    for title_len in range(100, 400, 7):
        answer = _answer(
            "llm", citations=[_citation(n, title="t" * title_len, quote="q") for n in range(1, 40)]
        )
        _, blks = blocks.answer_message(answer)
        for text in _texts(blks, "mrkdwn"):
            assert _balanced_links(text), f"title_len={title_len}: …{text[-80:]!r}"


# ---------------------------------------------------------------- digests
def _links_in(messages: Sequence[Message]) -> list[str]:
    urls: list[str] = []
    for _, blks in messages:
        for text in _texts(blks, "mrkdwn"):
            urls += [t.partition("|")[0] for t in _TOKEN.findall(text)]
    return urls


def test_digest_group_reply_is_one_message_with_every_paper_once() -> None:
    papers = [_paper(i) for i in range(200)]
    messages = blocks.digest_group_replies(_group("Diffusion models", papers))
    assert len(messages) == 1, "one threaded reply per topic"
    for message in messages:
        _assert_within_limits(message)
        assert message[1][0] == blocks.header("Diffusion models")
        assert "more blocks not shown" not in json.dumps(message[1])
    urls = _links_in(messages)
    assert sorted(urls) == sorted(p.link for p in papers if p.link)
    assert len(set(urls)) == 200


def test_digest_group_reply_shows_title_link_upvotes_and_tldr() -> None:
    paper = _paper(7, title="Fast & small")
    [(text, blks)] = blocks.digest_group_replies(_group("Efficiency", [paper], "It is fast."))
    assert blks[1] == blocks.context("1 paper")
    assert blks[2]["text"]["text"] == (
        "*<https://example.org/papers/7|Fast &amp; small>*\n2025-05-16 · ▲ 7\nIt is fast."
    )
    assert "Fast & small" in _shown(text)


def test_digest_parent_lists_groups_with_counts_and_first_titles() -> None:
    digest = _digest(
        [_group("Agents", [_paper(i) for i in range(5)]), _group("Vision", [_paper(9)])],
        notes=["Overview is extractive: no LLM configured."],
    )
    text, blks = blocks.digest_parent(digest)
    assert blks[0] == blocks.header("📰 Paper digest · 2025-05-16")
    bodies = [t for b in blks for t in _texts(b, "mrkdwn")]
    assert (
        "*Topics* (one reply per topic in the thread below)\n"
        "• *Agents* — 5 papers\n• *Vision* — 1 paper"
    ) in bodies
    assert any("no LLM configured" in t for t in bodies)
    assert any(t.startswith("6 papers · 2 topics · extractive") for t in bodies)
    assert any("`/papers digest 2025-05-16 Agents`" in t for t in bodies)
    assert text.startswith("Paper digest 2025-05-16: Today in papers.")


def test_digest_ephemeral_contains_parent_and_groups_in_one_capped_message() -> None:
    digest = _digest([_group("Agents", [_paper(1)]), _group("Vision", [_paper(2)])])
    _, blks = blocks.digest_ephemeral(digest)
    assert [b["type"] for b in blks].count("divider") == 2
    assert set(_links_in([("", blks)])) == {
        "https://example.org/papers/1",
        "https://example.org/papers/2",
    }
    _, big = blocks.digest_ephemeral(_big_digest())
    assert len(big) < blocks.MAX_BLOCKS, "too big for one message: overview and topics only"
    assert "more blocks not shown" not in json.dumps(big)
    assert "divider" not in [b["type"] for b in big]
    assert "/papers digest 2025-05-16 Huge group" in json.dumps(big)


# ---------------------------------------------------------------- answers
def test_extractive_answer_is_rendered_as_quotes() -> None:
    answer = _answer("extractive", text="First quoted sentence [1].\nSecond one [2].")
    _, blks = blocks.answer_message(answer)
    assert blks[0]["text"]["text"] == "> First quoted sentence [1].\n> Second one [2]."
    assert any("no language model was used" in t for t in _texts(blks, "mrkdwn"))


def test_llm_answer_marks_weak_and_uncited_sentences() -> None:
    answer = _answer(
        "llm",
        text="Ignored when sentences exist.",
        sentences=[
            SentenceCheck("Backed claim [1].", (1,), 0.9, "supported"),
            SentenceCheck("Weak claim [1].", (1,), 0.1, "unsupported"),
            SentenceCheck("Unsourced claim.", (), None, "uncited"),
            SentenceCheck("Thanks for asking.", (), None, "no_claim"),
        ],
        model="gpt-test",
    )
    _, blks = blocks.answer_message(answer)
    body = blks[0]["text"]["text"]
    assert body == (
        "Backed claim [1]. Weak claim [1]. ⚠️ _weakly supported_ "
        "Unsourced claim. ⚠️ _no source_ Thanks for asking."
    )
    assert body.count("⚠️") == 2
    assert any("generated by gpt-test" in t for t in _texts(blks, "mrkdwn"))


def test_llm_answer_lists_numbered_sources_with_quotes() -> None:
    answer = _answer("llm", citations=[_citation(1, "First"), _citation(2, "Second", "Q2.")])
    _, blks = blocks.answer_message(answer)
    sources = blks[1]["text"]["text"]
    assert sources.startswith("*Sources*\n[1] <https://example.org/papers/1|First>")
    assert "[2] <https://example.org/papers/2|Second>\n      _“Q2.”_" in sources


def test_refused_answer_lists_the_closest_papers() -> None:
    answer = _answer(
        "refused",
        text="The indexed papers do not answer this.",
        hits=[_hit(_paper(i)) for i in range(1, 6)],
    )
    _, blks = blocks.answer_message(answer)
    closest = [t for t in _texts(blks, "mrkdwn") if t.startswith("*Closest papers in the index*")]
    assert len(closest) == 1
    assert closest[0].count("\n• ") == 3  # the three best, not all five
    assert "<https://example.org/papers/1|Paper number 1>" in closest[0]
    assert "Paper number 4" not in closest[0]
    assert any("Not in the indexed papers." in t for t in _texts(blks, "mrkdwn"))


def test_answered_questions_do_not_list_closest_papers() -> None:
    answer = _answer("llm", hits=[_hit(_paper(1))])
    _, blks = blocks.answer_message(answer)
    assert not any("Closest papers" in t for t in _texts(blks, "mrkdwn"))


def _feedback(blks: list[Block]) -> list[dict[str, Any]]:
    return [
        e
        for b in blks
        if b["type"] == "context_actions"
        for e in b["elements"]
        if e["type"] == "feedback_buttons"
    ]


def test_feedback_buttons_carry_the_vote_and_the_feedback_id() -> None:
    _, blks = blocks.answer_message(_answer("llm"), feedback_id="abc123")
    [element] = _feedback(blks)
    assert blks[-1]["type"] == "context_actions"
    assert element["action_id"] == blocks.FEEDBACK
    up, down = element["positive_button"]["value"], element["negative_button"]["value"]
    assert blocks.parse_feedback_value(up) == ("up", "abc123")
    assert blocks.parse_feedback_value(down) == ("down", "abc123")
    assert blocks.parse_feedback_value("sideways:abc") is None
    assert blocks.parse_feedback_value("up:") is None


def test_no_feedback_buttons_without_a_feedback_id() -> None:
    _, blks = blocks.answer_message(_answer("llm"))
    assert _feedback(blks) == [] and _elements(blks, "button") == []


def test_feedback_buttons_survive_a_long_answer() -> None:
    _, blks = blocks.answer_message(_long_answer("llm"), feedback_id="keep-me")
    [element] = _feedback(blks)
    assert element["positive_button"]["value"] == "up:keep-me"


def test_feedback_reason_prompt_asks_in_one_optional_line() -> None:
    text, blks = blocks.feedback_reason_prompt("abc123")
    assert "What was wrong?" in text
    [field] = [b for b in blks if b["type"] == "input"]
    assert field["block_id"] == blocks.FEEDBACK_REASON_BLOCK + "abc123"
    assert field["dispatch_action"] is True
    assert field["element"]["action_id"] == blocks.FEEDBACK_REASON
    assert block_limits.violations(text, blks) == []


def test_answer_fallback_contains_the_numbered_sources() -> None:
    answer = _answer(
        "llm",
        text="Diffusion is fast [1] and small [2].",
        citations=[
            _citation(1, "Fast diffusion"),
            Citation(2, "p2", "Small diffusion", None, "q", ()),
        ],
    )
    text, _ = blocks.answer_message(answer)
    assert text.splitlines() == [
        "Diffusion is fast [1] and small [2].",
        "[1] Fast diffusion https://example.org/papers/1",
        "[2] Small diffusion",
    ]


def test_answer_footer_shows_tokens_and_cost() -> None:
    answer = _answer("llm", model="gpt-test", tokens_in=100, tokens_out=20, cost_usd=0.0012)
    _, blks = blocks.answer_message(answer)
    assert blks[-1]["elements"][0]["text"].endswith("120 tokens ≈ $0.0012")


def test_answer_shows_at_most_five_flags() -> None:
    _, blks = blocks.answer_message(_answer("llm", flags=[f"flag {i}" for i in range(60)]))
    flags = [t for t in _texts(blks, "mrkdwn") if t.startswith("⚠️ flag")]
    assert flags == [f"⚠️ flag {i}" for i in range(5)]


# ---------------------------------------------------------------- search and sharing
def _share_button(blks: list[Block]) -> dict[str, Any] | None:
    buttons = [b for b in _elements(blks, "button") if b["action_id"] == blocks.SHARE_SEARCH]
    assert len(buttons) <= 1
    return buttons[0] if buttons else None


def test_search_results_list_papers_with_passage_and_share_button() -> None:
    hits = [_hit(_paper(i), f"Passage {i}.") for i in (1, 2)]
    text, blks = blocks.search_results("diffusion", hits)
    assert blks[0]["text"]["text"] == "*Papers for* “diffusion”"
    assert blks[1]["text"]["text"] == (
        "*<https://example.org/papers/1|Paper number 1>*\n2025-05-16 · ▲ 1\n_Passage 1._"
    )
    assert hits[0].paper.paper_id not in json.dumps(blks[1]), "no internal id is shown"
    button = _share_button(blks)
    assert button is not None
    assert json.loads(button["value"]) == {
        "q": "diffusion",
        "ids": [hits[0].paper.paper_id, hits[1].paper.paper_id],
    }
    assert text == "Papers for “diffusion”:\n• Paper number 1\n• Paper number 2"


def test_search_results_without_sharing_have_no_button() -> None:
    _, blks = blocks.search_results("q", [_hit(_paper(1))], shareable=False)
    assert _share_button(blks) is None


def test_empty_search_says_nothing_matched() -> None:
    text, blks = blocks.search_results("quantum cats", [])
    assert text == "No papers match “quantum cats”."
    assert _share_button(blks) is None


@pytest.mark.parametrize("query", ["q" * HUGE, "数" * HUGE, '"\\' * HUGE, "ok"])
@pytest.mark.parametrize("n_hits", [1, 8, 100])
def test_search_share_button_is_valid_or_absent(query: str, n_hits: int) -> None:
    hits = [_hit(_paper(i, title=f"Only a title {i}")) for i in range(n_hits)]
    _, blks = blocks.search_results(query, hits)
    _assert_within_limits(("fallback", blks))
    button = _share_button(blks)
    if n_hits <= 8 and query == "ok":
        assert button is not None  # the everyday case always has one
    if button is not None:
        value = json.loads(button["value"])
        assert len(button["value"]) <= 2000
        assert query.startswith(value["q"].rstrip("…"))
        assert value["ids"] == [h.paper.paper_id for h in hits]


def test_search_share_button_present_for_a_huge_ascii_query() -> None:
    hits = [_hit(_paper(i)) for i in range(8)]
    button = _share_button(blocks.search_results("q" * HUGE, hits)[1])
    assert button is not None
    assert len(json.loads(button["value"])["q"]) <= 300


def test_shared_results_name_the_sharer_and_list_papers() -> None:
    text, blks = blocks.shared_results(SHARER, "agents", [_paper(1), _paper(2)])
    assert blks[0]["text"]["text"] == f"<@{SHARER}> shared papers for “agents”"
    assert len(blks) == 3
    assert _share_button(blks) is None  # a shared list is not re-shared
    assert text == "Papers for “agents”:\n• Paper number 1\n• Paper number 2"


# ---------------------------------------------------------------- other messages
def test_summary_message_shows_title_link_tldr_and_note() -> None:
    paper = _paper(3, title="A paper")
    text, blks = blocks.summary_message(paper, _summary("It works.", note="Fell back."))
    assert blks[0]["text"]["text"] == (
        "*<https://example.org/papers/3|A paper>*\n2025-05-16 · ▲ 3\nIt works."
    )
    assert blks[1]["elements"][0]["text"] == "TL;DR · extractive"
    assert blks[2]["elements"][0]["text"] == "ℹ️ Fell back."
    assert text == "A paper: It works."


def test_help_message_shows_the_problem_first() -> None:
    text, blks = blocks.help_message("/papers", "Unknown command “foo”.")
    assert blks[0]["text"]["text"] == "⚠️ Unknown command “foo”."
    assert "`/papers ask " in blks[1]["text"]["text"]
    assert text.startswith("Unknown command “foo”.\n")
    _, plain_help = blocks.help_message("/papers")
    assert len(plain_help) == 1


def test_subscriptions_message_lists_topics_or_explains_how() -> None:
    text, blks = blocks.subscriptions_message("You are", ["agents", "rl & planning"])
    assert blks[0]["text"]["text"] == "You are subscribed to:\n• agents\n• rl &amp; planning"
    assert _shown(text) == "You are subscribed to: agents, rl & planning"
    empty_text, _ = blocks.subscriptions_message("You are", [])
    assert "no subscriptions yet" in empty_text


def test_notification_message_names_the_topic_and_papers() -> None:
    text, blks = blocks.notification_message("agents", [_paper(1)])
    assert blks[0]["text"]["text"] == "🔔 1 new paper on *agents*"
    assert "<https://example.org/papers/1|Paper number 1>" in blks[1]["text"]["text"]
    assert text == "New papers on agents: Paper number 1"


def test_placeholder_and_streaming_messages() -> None:
    text, blks = blocks.placeholder("what is new?")
    assert text == "🔎 Searching the papers for: what is new?"
    assert blks[0]["elements"][0]["text"] == "🔎 Searching the papers for: _what is new?_"
    text, blks = blocks.streaming("Partial answer")
    assert text == "Partial answer ▌"
    assert blks[0]["text"]["text"] == "Partial answer ▌"
