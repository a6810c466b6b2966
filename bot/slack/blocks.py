"""Pure Block Kit formatting: domain objects in, (fallback text, blocks) out.

Everything that comes from users, papers or the LLM goes through `escape`, so an abstract or
an answer containing `<!channel>`, `<@U123>` or `<http://evil|click>` can never ping anyone
or inject markup. Slack's limits are enforced here: at most 50 blocks per message and 3,000
characters per section text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from answers.digest import Digest, TopicGroup
    from answers.models import Answer
    from answers.summarize import Summary
    from retrieval import Hit, Paper

Block = dict[str, Any]
Message = tuple[str, list[Block]]

MAX_BLOCKS = 50
MAX_SECTION_CHARS = 3000
MAX_TEXT_CHARS = 3900  # fallback text: Slack truncates long top-level text
FEEDBACK_UP = "feedback_up"
FEEDBACK_DOWN = "feedback_down"
SHARE_SEARCH = "share_search"
_STATUS_MARK = {"unsupported": " ⚠️ _weakly supported_", "uncited": " ⚠️ _no source_"}


def escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link(url: str | None, label: str) -> str:
    """A mrkdwn link with an escaped label; non-http(s) URLs are shown as plain text."""
    if not url or not url.startswith(("https://", "http://")):
        return escape(label)
    safe_url = quote(url, safe=":/?#[]@!$&'()*+,;=%-._~")
    return f"<{safe_url.replace('|', '%7C')}|{escape(label).replace('|', '¦')}>"


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


def section(mrkdwn: str) -> Block:
    return {
        "type": "section",
        "text": {"type": "mrkdwn", "text": _truncate_mrkdwn(mrkdwn, MAX_SECTION_CHARS)},
    }


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
    return _fallback(text), [section(escape(text))]


def answer_message(answer: Answer, feedback_id: str | None = None) -> Message:
    blocks: list[Block] = [section(_answer_body(answer))]
    if answer.citations:
        blocks.append(section("*Sources*\n" + "\n".join(_source_line(c) for c in answer.citations)))
    if answer.suggestions:
        lines = [f"• {link(h.paper.link, h.paper.title)}" for h in answer.suggestions]
        blocks.append(section("*Closest papers in the index*\n" + "\n".join(lines)))
    for flag in answer.flags[:5]:
        blocks.append(context(f"⚠️ {escape(flag)}"))
    blocks.append(context(escape(_footer(answer))))
    if feedback_id:
        blocks.append(_feedback_buttons(feedback_id))
    return _fallback(_answer_fallback(answer)), _cap(blocks)


def _answer_body(answer: Answer) -> str:
    if answer.mode == "llm" and answer.sentences:
        return " ".join(escape(s.text) + _STATUS_MARK.get(s.status, "") for s in answer.sentences)
    if answer.mode == "extractive":
        return "\n".join(f"> {escape(line)}" for line in answer.text.splitlines())
    return escape(answer.text)


def _source_line(c: Any) -> str:
    quote_text = escape(truncate(c.quote, 300))
    return f"[{c.number}] {link(c.url, c.title)}\n      _“{quote_text}”_"


def _footer(answer: Answer) -> str:
    parts = [answer.label]
    if answer.tokens_in or answer.tokens_out:
        parts.append(f"{answer.tokens_in + answer.tokens_out} tokens ≈ ${answer.cost_usd:.4f}")
    return " · ".join(parts)


def _answer_fallback(answer: Answer) -> str:
    lines = [answer.text]
    lines += [f"[{c.number}] {c.title} {c.url or ''}".rstrip() for c in answer.citations]
    return "\n".join(lines)


def _feedback_buttons(feedback_id: str) -> Block:
    return {
        "type": "actions",
        "block_id": "feedback",
        "elements": [
            {
                "type": "button",
                "action_id": FEEDBACK_UP,
                "value": feedback_id,
                "text": {"type": "plain_text", "text": "👍 Helpful", "emoji": True},
            },
            {
                "type": "button",
                "action_id": FEEDBACK_DOWN,
                "value": feedback_id,
                "text": {"type": "plain_text", "text": "👎 Not helpful", "emoji": True},
            },
        ],
    }


def feedback_thanks(vote: str) -> Message:
    text = "Thanks for the feedback!" if vote == "up" else "Thanks — noted, we'll look into it."
    return _fallback(text), [context(text)]


def error_message(message: str) -> Message:
    text = f"⚠️ {message}"
    return _fallback(text), [section(escape(text))]


# ---------------------------------------------------------------- search and papers
def search_results(query: str, hits: Sequence[Hit], *, shareable: bool = True) -> Message:
    if not hits:
        text = f"No papers match “{truncate(query, 200)}”."
        return _fallback(text), [section(escape(text))]
    blocks: list[Block] = [section(f"*Papers for* “{escape(truncate(query, 200))}”")]
    for hit in hits:
        blocks.append(section(_paper_line(hit.paper, hit.chunk.text)))
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
    blocks += [section(_paper_line(p, None)) for p in papers]
    text = f"Papers for “{query}”:\n" + "\n".join(f"• {p.title}" for p in papers)
    return _fallback(text), _cap(blocks)


def _paper_line(paper: Paper, passage: str | None) -> str:
    meta = [paper.paper_id]
    if paper.published:
        meta.append(paper.published.isoformat())
    if paper.upvotes is not None:
        meta.append(f"▲ {paper.upvotes}")
    line = f"*{link(paper.link, paper.title)}*\n{escape(' · '.join(meta))}"
    if passage:
        line += f"\n_{escape(truncate(passage, 280))}_"
    return line


def summary_message(paper: Paper, summary: Summary) -> Message:
    blocks = [
        section(f"*{link(paper.link, paper.title)}*\n{escape(summary.text)}"),
        context(escape(f"TL;DR · {summary.mode} · {paper.paper_id}")),
    ]
    if summary.note:
        blocks.append(context(f"ℹ️ {escape(summary.note)}"))
    return _fallback(f"{paper.title}: {summary.text}"), blocks


# ---------------------------------------------------------------- digests
def digest_parent(digest: Digest, missing: Sequence[str] = ()) -> Message:
    """The digest's parent message; ``missing``: feeds that had not delivered the day's list
    when it was posted (their papers of that day are not in it)."""
    when = (
        digest.start.isoformat() if digest.start == digest.end else f"{digest.start} – {digest.end}"
    )
    blocks: list[Block] = [header(f"📰 Paper digest · {when}"), section(escape(digest.overview))]
    for group in digest.groups:
        titles = ", ".join(p.paper.title for p in group.papers[:3])
        more = f" and {len(group.papers) - 3} more" if len(group.papers) > 3 else ""
        blocks.append(
            section(f"*{escape(group.name)}* ({len(group.papers)})\n{escape(titles)}{more}")
        )
    for note in digest.notes[:3]:
        blocks.append(context(f"ℹ️ {escape(note)}"))
    if missing:
        blocks.append(context(escape(_missing_note(missing))))
    blocks.append(
        context(escape(f"{digest.paper_count} papers · topics in the thread below · {digest.mode}"))
    )
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
    """One reply per topic group, split further if the group does not fit one message."""
    lines = [
        f"*{link(p.paper.link, p.paper.title)}*"
        + (f" ▲ {p.paper.upvotes}" if p.paper.upvotes is not None else "")
        + f"\n{escape(p.tldr.text)}"
        for p in group.papers
    ]
    messages: list[Message] = []
    per_message = MAX_BLOCKS - 1
    for start in range(0, len(lines), per_message):
        chunk = lines[start : start + per_message]
        blocks = [header(group.name)] + [section(line) for line in chunk]
        text = f"{group.name}: " + "; ".join(
            p.paper.title for p in group.papers[start : start + per_message]
        )
        messages.append((_fallback(text), blocks[:MAX_BLOCKS]))
    return messages


def digest_ephemeral(digest: Digest) -> Message:
    """The whole digest in one message (for `/papers digest`), capped to Slack's limits."""
    text, blocks = digest_parent(digest)
    for group in digest.groups:
        for _, group_blocks in digest_group_replies(group):
            blocks += [{"type": "divider"}, *group_blocks]
    return text, _cap(blocks)


# ---------------------------------------------------------------- help and subscriptions
def help_message(command: str, problem: str | None = None) -> Message:
    usage = [
        f"`{command} ask <question>` — a cited answer from the indexed papers",
        f"`{command} search <query>` — find papers (with a button to share the list)",
        f"`{command} summary <arXiv id or title>` — a one-paragraph TL;DR",
        f"`{command} digest [YYYY-MM-DD]` — the digest of a day (default: the latest day)",
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
    blocks = [section(f"🔔 New papers on *{escape(topic)}*")]
    blocks += [section(_paper_line(p, None)) for p in papers]
    text = f"New papers on {topic}: " + "; ".join(p.title for p in papers)
    return _fallback(text), _cap(blocks)


def plain(text: str) -> Message:
    return _fallback(text), [section(escape(text))]
