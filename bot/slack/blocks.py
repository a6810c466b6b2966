"""Pure Block Kit formatting: domain objects in, (fallback text, blocks) out.

Everything that comes from users, papers or the LLM is escaped (`escape`, or `to_mrkdwn`
for the model's Markdown, which converts bold, italics, lists, links and code and escapes the
rest), so an abstract or an answer containing `<!channel>`, `<@U123>` or `<http://evil|click>`
can never ping anyone or inject markup.

Messages fit Slack's limits by design (bot/slack/block_limits.py checks them in the tests):
long texts are split over several sections, long paper lists are packed several papers to a
section, and a digest is a parent message (overview, topics with counts) with one threaded
reply per topic; `/papers digest <day> <topic>` shows one topic. `_cap` (at most 50 blocks,
the last saying what was left out) is only a safety net for inputs no real corpus produces.

Size: every message the bot posts, so the escaping and the limits have one home; how a paper
reads (links, authors, thumbnail, packing) is in bot/slack/paper_lines.py.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

from answers.verify import REMOVED_FLAG
from bot.slack import paper_lines
from bot.slack.mrkdwn import to_mrkdwn
from bot.slack.paper_lines import escape, link, plural

if TYPE_CHECKING:
    from answers.digest import Digest, TopicGroup
    from answers.models import Answer
    from answers.summarize import Summary
    from retrieval import Hit, Paper

__all__ = ["escape", "link", "plural"]

Block = dict[str, Any]
Message = tuple[str, list[Block]]

MAX_BLOCKS = 50
MAX_SECTION_CHARS = 3000
MAX_TEXT_CHARS = 3900  # fallback text: Slack truncates long top-level text
MAX_BODY_SECTIONS = 8  # an answer or an overview longer than 24,000 characters is cut
FEEDBACK = "feedback"  # the feedback_buttons element (values "up:<id>" / "down:<id>")
FEEDBACK_UP = "feedback_up"  # the buttons of answers posted before the feedback element
FEEDBACK_DOWN = "feedback_down"
FEEDBACK_REASON = "feedback_reason"  # the "what was wrong?" input after a 👎
FEEDBACK_REASON_BLOCK = "feedback_reason:"  # + the answer id
MAX_REASON_CHARS = 500
SHARE_SEARCH = "share_search"
_STATUS_MARK = {"unsupported": " ⚠️ _weakly supported_", "uncited": " ⚠️ _no source_"}
_TLDR_CHARS = 600


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _truncate_mrkdwn(text: str, limit: int) -> str:
    """Truncate without leaving half a link: escaped user text has no raw < or >, so a '<'
    after the last '>' can only be an unfinished link of ours."""
    cut = truncate(text, limit)
    if cut is not text and cut.rfind("<") > cut.rfind(">"):
        cut = cut[: cut.rfind("<")].rstrip() + "…"
    return cut


def _fallback(text: str) -> str:
    """The top-level text (notifications, screen readers) is mrkdwn too: escape and cap it."""
    return truncate(escape(text), MAX_TEXT_CHARS)


def section(mrkdwn: str, accessory: Block | None = None) -> Block:
    block: Block = {
        "type": "section",
        "text": {"type": "mrkdwn", "text": _truncate_mrkdwn(mrkdwn, MAX_SECTION_CHARS)},
    }
    if accessory:
        block["accessory"] = accessory
    return block


def sections(lines: Sequence[str], limit: int = MAX_BODY_SECTIONS, sep: str = "\n") -> list[Block]:
    """Lines of mrkdwn (joined by ``sep``) over as few sections as they need (at most
    ``limit``), never split inside a line."""
    packed = paper_lines.pack(lines, MAX_SECTION_CHARS, _truncate_mrkdwn, sep)
    return [section(text) for text in packed[:limit] if text.strip()]


def context(mrkdwn: str) -> Block:
    return {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": _truncate_mrkdwn(mrkdwn, 2000)}],
    }


def header(text: str) -> Block:
    return {"type": "header", "text": {"type": "plain_text", "text": truncate(text, 150)}}


def _cap(blocks: list[Block]) -> list[Block]:
    """At most 50 blocks; the last one says how many were left out."""
    if len(blocks) <= MAX_BLOCKS:
        return blocks
    kept = blocks[: MAX_BLOCKS - 1]
    return [*kept, context(f"…{len(blocks) - len(kept)} more blocks not shown")]


# ---------------------------------------------------------------- answers
def placeholder(question: str) -> Message:
    text = f"🔎 Searching the papers for: {truncate(question, 200)}"
    return _fallback(text), [
        context(f"🔎 Searching the papers for: _{escape(truncate(question, 200))}_")
    ]


def streaming(partial: str) -> Message:
    text = truncate(partial, MAX_SECTION_CHARS - 2) + " ▌"
    return _fallback(text), [section(to_mrkdwn(text))]


def answer_message(answer: Answer, feedback_id: str | None = None) -> Message:
    pieces, sep = _answer_body(answer)
    blocks: list[Block] = sections(pieces, sep=sep)
    if answer.citations:
        lines = ["*Sources*", *(_source_line(c) for c in answer.citations)]
        blocks += sections(lines, limit=MAX_BLOCKS // 3)
    if answer.suggestions:
        lines = [f"• {link(h.paper.link, h.paper.title)}" for h in answer.suggestions]
        blocks += sections(["*Closest papers in the index*", *lines], limit=2)
    flags = answer.flags
    if answer.removed:  # the verifier took these out; Slack says how many, never what
        removed = plural(len(answer.removed), "unverified sentence")
        blocks.append(context(f"⚠️ {removed} removed from the model's answer"))
        flags = [f for f in flags if not f.startswith(REMOVED_FLAG)]
    for flag in flags[:5]:
        blocks.append(context(f"⚠️ {escape(flag)}"))
    blocks.append(context(escape(_footer(answer))))
    if feedback_id:
        blocks.append(feedback_block(feedback_id))
    return _fallback(_answer_fallback(answer)), _cap(blocks)


def _answer_body(answer: Answer) -> tuple[list[str], str]:
    """The answer as mrkdwn pieces and what joins them (sentences: a space; lines: a
    newline); long answers continue in the next section instead of being cut."""
    if answer.mode == "llm" and answer.sentences:
        marked = [to_mrkdwn(s.text) + _STATUS_MARK.get(s.status, "") for s in answer.sentences]
        return marked, " "
    if answer.mode == "extractive":
        return [f"> {escape(line)}" for line in answer.text.splitlines()] or [""], "\n"
    text = to_mrkdwn(answer.text) if answer.mode == "llm" else escape(answer.text)
    return text.split("\n"), "\n"


def _source_line(c: Any) -> str:
    quote_text = escape(truncate(c.quote, 300))
    return f"[{c.number}] {link(c.url, c.title)}\n      _“{quote_text}”_"


def _footer(answer: Answer) -> str:
    parts = [answer.label]
    if answer.tokens_in or answer.tokens_out:
        tokens = plural(answer.tokens_in + answer.tokens_out, "token")
        parts.append(f"{tokens} ≈ ${answer.cost_usd:.4f}")
    return " · ".join(parts)


def _answer_fallback(answer: Answer) -> str:
    lines = [answer.text]
    lines += [f"[{c.number}] {c.title} {c.url or ''}".rstrip() for c in answer.citations]
    return "\n".join(lines)


# ---------------------------------------------------------------- feedback
def feedback_block(feedback_id: str) -> Block:
    """Slack's 👍/👎 feedback buttons (a context_actions block); each button's value says
    the vote and carries the stored answer's id."""
    return {
        "type": "context_actions",
        "elements": [
            {
                "type": "feedback_buttons",
                "action_id": FEEDBACK,
                "positive_button": {
                    "text": {"type": "plain_text", "text": "👍"},
                    "value": f"up:{feedback_id}",
                    "accessibility_label": "Mark this as helpful",
                },
                "negative_button": {
                    "text": {"type": "plain_text", "text": "👎"},
                    "value": f"down:{feedback_id}",
                    "accessibility_label": "Mark this as not helpful",
                },
            }
        ],
    }


def parse_feedback_value(value: str) -> tuple[str, str] | None:
    """``(vote, answer id)`` from a feedback button's value; None for anything else."""
    vote, _, answer_id = (value or "").partition(":")
    return (vote, answer_id) if vote in ("up", "down") and answer_id else None


def feedback_thanks(vote: str) -> Message:
    text = "Thanks for the feedback!" if vote == "up" else "Thanks — noted, we'll look into it."
    return _fallback(text), [context(text)]


def feedback_reason_prompt(feedback_id: str) -> Message:
    """After a 👎: thanks, and an optional one-line "what was wrong?" (Enter sends it)."""
    text = "Thanks — noted. What was wrong? (optional)"
    return _fallback(text), [
        section(escape(text)),
        {
            "type": "input",
            "block_id": FEEDBACK_REASON_BLOCK + feedback_id,
            "dispatch_action": True,
            "optional": True,
            "label": {"type": "plain_text", "text": "What was wrong?"},
            "element": {
                "type": "plain_text_input",
                "action_id": FEEDBACK_REASON,
                "max_length": MAX_REASON_CHARS,
                "placeholder": {
                    "type": "plain_text",
                    "text": "e.g. wrong paper cited, missed the point… (Enter to send)",
                },
                "dispatch_action_config": {"trigger_actions_on": ["on_enter_pressed"]},
            },
        },
    ]


def feedback_reason_thanks(reason: str) -> Message:
    text = f"Thanks — we'll look into it: “{truncate(reason, 200)}”"
    return _fallback(text), [context(escape(text))]


def error_message(message: str) -> Message:
    text = f"⚠️ {message}"
    return _fallback(text), [section(escape(text))]


# ---------------------------------------------------------------- search and papers
def search_results(query: str, hits: Sequence[Hit], *, shareable: bool = True) -> Message:
    if not hits:
        text = f"No papers match “{truncate(query, 200)}”."
        return _fallback(text), [section(escape(text))]
    blocks: list[Block] = [section(f"*Papers for* “{escape(truncate(query, 200))}”")]
    blocks += paper_blocks(
        [h.paper for h in hits],
        [f"_{escape(truncate(h.chunk.text, 280))}_" for h in hits],
        room=MAX_BLOCKS - 2,
    )
    if shareable:
        value = json.dumps({"q": truncate(query, 300), "ids": [h.paper.paper_id for h in hits]})
        if len(value) <= 2000:
            blocks.append(
                {
                    "type": "actions",
                    "elements": [
                        {
                            "type": "button",
                            "action_id": SHARE_SEARCH,
                            "value": value,
                            "text": {"type": "plain_text", "text": "Share in channel"},
                        }
                    ],
                }
            )
    text = f"Papers for “{query}”:\n" + "\n".join(f"• {h.paper.title}" for h in hits)
    return _fallback(text), _cap(blocks)


def shared_results(user_id: str, query: str, papers: Sequence[Paper]) -> Message:
    blocks = [section(f"<@{escape(user_id)}> shared papers for “{escape(truncate(query, 200))}”")]
    blocks += paper_blocks(papers, room=MAX_BLOCKS - 1)
    text = f"Papers for “{query}”:\n" + "\n".join(f"• {p.title}" for p in papers)
    return _fallback(text), _cap(blocks)


def paper_blocks(
    papers: Sequence[Paper], details: Sequence[str | None] | None = None, *, room: int
) -> list[Block]:
    """Sections for a list of papers within ``room`` blocks: one per paper (with its HF
    thumbnail) when they fit, else several papers to a section, else compact lines (title,
    links, upvotes) — every paper is listed either way."""
    details = list(details) if details is not None else [None] * len(papers)
    if len(papers) <= room:
        return [
            section(paper_lines.paper_line(p, d), paper_lines.image_accessory(p))
            for p, d in zip(papers, details, strict=True)
        ]
    full = [paper_lines.paper_line(p, d) for p, d in zip(papers, details, strict=True)]
    packed = paper_lines.pack(full, MAX_SECTION_CHARS, _truncate_mrkdwn)
    if len(packed) > room:
        compact = [paper_lines.paper_line(p, compact=True) for p in papers]
        packed = paper_lines.pack(compact, MAX_SECTION_CHARS, _truncate_mrkdwn)
    return [section(text) for text in packed]


def summary_message(paper: Paper, summary: Summary) -> Message:
    body = paper_lines.paper_line(paper, _tldr(summary))
    blocks = [
        section(body, paper_lines.image_accessory(paper)),
        context(escape(f"TL;DR · {summary.mode}")),
    ]
    if summary.note:
        blocks.append(context(f"ℹ️ {escape(summary.note)}"))
    return _fallback(f"{paper.title}: {summary.text}"), blocks


def _tldr(summary: Summary) -> str:
    text = truncate(summary.text, _TLDR_CHARS)
    return to_mrkdwn(text) if summary.mode == "llm" else escape(text)


# ---------------------------------------------------------------- digests
def _when(digest: Digest) -> str:
    if digest.start == digest.end:
        return digest.start.isoformat()
    return f"{digest.start} – {digest.end}"


def see_topic_command(digest: Digest, topic: str, command: str = "/papers") -> str:
    return f"{command} digest {digest.start.isoformat()} {topic}"


def digest_parent(
    digest: Digest,
    missing: Sequence[str] = (),
    *,
    feedback_id: str | None = None,
    command: str = "/papers",
    threaded: bool = True,
) -> Message:
    """The digest's parent message: the overview, each topic with its count, the totals.
    ``missing``: feeds that had not delivered the day's list when it was posted (their papers
    of that day are not in it). ``threaded``: the topics follow as replies in its thread."""
    when = _when(digest)
    blocks: list[Block] = [header(f"📰 Paper digest · {when}")]
    blocks += sections(to_mrkdwn(digest.overview).split("\n"), limit=4)
    topic_lines = [
        f"• *{escape(g.name)}* — {plural(len(g.papers), 'paper')}" for g in digest.groups
    ]
    where = "one reply per topic in the thread below" if threaded else "by topic"
    blocks += sections([f"*Topics* ({where})", *topic_lines], limit=6)
    for note in digest.notes[:3]:
        blocks.append(context(f"ℹ️ {escape(note)}"))
    if missing:
        blocks.append(context(escape(_missing_note(missing))))
    example = see_topic_command(
        digest, digest.groups[0].name if digest.groups else "<topic>", command
    )
    named = sum(not g.other for g in digest.groups)
    others = sum(len(g.papers) for g in digest.groups if g.other)
    counts = [plural(digest.paper_count, "paper")]
    if named:
        counts.append(plural(named, "topic"))
        if others:
            counts[-1] += f" (+ {plural(others, 'other paper')})"
    totals = " · ".join([*counts, digest.mode, f"one topic on its own: `{example}`"])
    blocks.append(context(escape(totals)))
    if feedback_id:
        blocks.append(feedback_block(feedback_id))
    return _fallback(f"Paper digest {when}: {digest.overview}"), _cap(blocks)


def no_papers_note(day: date, topic: str | None = None, missing: Sequence[str] = ()) -> Message:
    """What a scheduled digest posts for a day without papers (PAPERBOT_DIGEST_EMPTY_NOTE)."""
    about = f" on {topic}" if topic else ""
    text = f"📭 No new papers{about} today ({day.isoformat()})."
    blocks = [section(escape(text))]
    if missing:
        blocks.append(context(escape(_missing_note(missing))))
    return _fallback(text), blocks


def _missing_note(missing: Sequence[str]) -> str:
    names = ", ".join(missing)
    verb, its = ("has", "its") if len(missing) == 1 else ("have", "their")
    return f"⏳ {names} {verb} not delivered this day's list yet; {its} papers are not included."


def digest_group_replies(group: TopicGroup) -> list[Message]:
    """The threaded reply of one topic: every paper of the group in one message (one
    section per paper with its thumbnail when they fit, packed sections when not)."""
    return [digest_topic(group)]


def digest_topic(group: TopicGroup, day: str | None = None) -> Message:
    """One topic's papers (title, authors, links, upvotes, TL;DR) in one message."""
    title = f"{group.name} · {day}" if day else group.name
    count = plural(len(group.papers), "paper")
    blocks: list[Block] = [header(title), context(escape(count))]
    blocks += _topic_papers(group, room=MAX_BLOCKS - len(blocks))
    text = f"{group.name} ({count}): " + "; ".join(p.paper.title for p in group.papers)
    return _fallback(text), _cap(blocks)


def _topic_papers(group: TopicGroup, room: int) -> list[Block]:
    return paper_blocks(
        [p.paper for p in group.papers], [_tldr(p.tldr) for p in group.papers], room=room
    )


def digest_ephemeral(digest: Digest, topic: str | None = None, command: str = "/papers") -> Message:
    """`/papers digest [day] [topic]` in one message. With a topic (matched by name): that
    topic's papers. Without: the whole digest when it fits one message (each topic's papers
    packed under its name), else the overview and the topics, each opened with
    `/papers digest <day> <topic>`."""
    if topic is not None:
        group = find_topic(digest, topic)
        if group is not None:
            return digest_topic(group, _when(digest))
        names = ", ".join(g.name for g in digest.groups) or "none"
        return error_message(
            f"No topic “{topic}” in the digest of {_when(digest)}. Topics: {names}."
        )
    _, blocks = digest_parent(digest, command=command, threaded=False)
    listed = "\n".join(f"• {g.name} — {plural(len(g.papers), 'paper')}" for g in digest.groups)
    example = see_topic_command(digest, "<topic>", command)
    text = _fallback(
        f"Paper digest {_when(digest)}: {digest.overview}\n{listed}\nOne topic: {example}"
    )
    topics = [
        [
            {"type": "divider"},
            header(f"{g.name} ({plural(len(g.papers), 'paper')})"),
            *_topic_papers(g, room=0),
        ]
        for g in digest.groups
    ]
    if len(blocks) + sum(len(t) for t in topics) <= MAX_BLOCKS:
        blocks += [block for t in topics for block in t]
    return text, blocks


def find_topic(digest: Digest, topic: str) -> TopicGroup | None:
    """The group named ``topic`` (case-insensitive), else the one whose name starts with it
    or contains it, if exactly one does."""
    wanted = " ".join(topic.lower().split())
    names = [(" ".join(g.name.lower().split()), g) for g in digest.groups]
    for rule in (str.__eq__, str.startswith, str.__contains__):
        found = [g for name, g in names if rule(name, wanted)]
        if len(found) == 1:
            return found[0]
    return None


# ---------------------------------------------------------------- help and subscriptions
def help_message(command: str, problem: str | None = None) -> Message:
    usage = [
        f"`{command} ask <question>` — a cited answer from the indexed papers",
        f"`{command} search <query>` — find papers (with a button to share the list)",
        f"`{command} summary <arXiv id or title>` — a one-paragraph TL;DR",
        f"`{command} digest [YYYY-MM-DD] [topic]` — the digest of a day (default: the latest "
        "day), or one of its topics",
        f"`{command} subscribe [here] <topic>` — get notified of new papers on a topic "
        "(`here` = this channel, else you)",
        f"`{command} unsubscribe [here] <topic>` · `{command} subscriptions`",
        f"`{command} help` — this message. You can also @mention me or DM me a question.",
    ]
    blocks = []
    if problem:
        blocks.append(section(f"⚠️ {escape(problem)}"))
    blocks.append(section("*paperbot commands*\n" + escape("\n".join(usage))))
    return _fallback((problem + "\n" if problem else "") + "\n".join(usage)), blocks


def subscriptions_message(who: str, topics: Sequence[str]) -> Message:
    if not topics:
        text = f"{who} no subscriptions yet. Try `subscribe <topic>`."
        return _fallback(text), [section(escape(text))]
    text = f"{who} subscribed to: " + ", ".join(topics)
    return _fallback(text), [
        section(
            escape(f"{who} subscribed to:") + "\n" + "\n".join(f"• {escape(t)}" for t in topics)
        )
    ]


def notification_message(topic: str, papers: Sequence[Paper]) -> Message:
    head = f"🔔 {plural(len(papers), 'new paper')} on *{escape(truncate(topic, 200))}*"
    blocks = [section(head)]
    blocks += paper_blocks(papers, room=MAX_BLOCKS - 1)
    text = f"New papers on {topic}: " + "; ".join(p.title for p in papers)
    return _fallback(text), _cap(blocks)


def plain(text: str) -> Message:
    return _fallback(text), [section(escape(text))]
