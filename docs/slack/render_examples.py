"""Render the Block Kit examples in docs/slack/ from the sample data, and their README.

    .venv/bin/python docs/slack/render_examples.py

Offline and extractive (no LLM, the local embedder): what paperbot posts for the sample
feeds, rendered by bot/slack/blocks.py exactly as the bot posts it. Each JSON file is one
message (`{"blocks": [...]}`, what Slack's Block Kit Builder takes); README.md links each
to the Builder. tests/test_slack_docs_examples.py checks that the files are within Slack's
limits and that the links open exactly these files.
"""

from __future__ import annotations

import json
import sys
import tempfile
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import quote

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

from bot.services import Services  # noqa: E402
from bot.slack import blocks  # noqa: E402
from retrieval import Corpus, Paper, RetrievalSettings  # noqa: E402
from retrieval.sources import load_path  # noqa: E402

SAMPLE = ROOT / "data" / "sample"
BUILDER = "https://app.slack.com/block-kit-builder/#"
QUESTION = "How can contrastive loss scale to near infinite batch sizes?"
SEARCH = "knowledge editing hallucinations"
FEEDBACK_ID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"  # stands for the stored answer's id
PAGE_DAY = date(2025, 5, 16)  # the HF page text: 30 papers, titles and abstracts only


def builder_link(message_blocks: list[dict[str, Any]]) -> str:
    """A Block Kit Builder URL that opens the message."""
    payload = json.dumps({"blocks": message_blocks}, ensure_ascii=False, separators=(",", ":"))
    return BUILDER + quote(payload, safe="")


def _papers() -> list[Paper]:
    page = load_path(SAMPLE / "daily_papers_page.txt", page_date=PAGE_DAY)
    api = load_path(SAMPLE / "hf_daily_papers_api_sample.json")  # ids, authors, votes
    return [p for p in [*page, *api] if isinstance(p, Paper)]


def render(data_dir: Path) -> dict[str, list[dict[str, Any]]]:
    settings = RetrievalSettings(_env_file=None, data_dir=data_dir)  # type: ignore[call-arg]
    corpus = Corpus(settings)
    try:
        corpus.ingest(_papers())
        services = Services.build(settings, corpus=corpus, llm=None)
        answer = services.qa.answer(QUESTION)
        page_digest = services.digests.build(PAGE_DAY)
        hits = services.corpus.search(SEARCH, 3)
        services.store.close()
    finally:
        corpus.close()
    return {
        "answer.json": blocks.answer_message(answer, FEEDBACK_ID)[1],
        "digest-parent.json": blocks.digest_parent(page_digest, feedback_id=FEEDBACK_ID)[1],
        "digest-topic.json": blocks.digest_group_replies(page_digest.groups[0])[0][1],
        "search.json": blocks.search_results(SEARCH, hits)[1],
    }


README = """# What the team sees in Slack

Real messages, rendered from the sample feeds by `bot/slack/blocks.py` exactly as paperbot
posts them (offline: extractive answer and TL;DRs, no LLM). Each link opens the message in
Slack's Block Kit Builder; the JSON files are the same messages. Regenerate with
`.venv/bin/python docs/slack/render_examples.py`.

| message | JSON | open it |
|---|---|---|
{rows}

- **The answer** to “{question}”: the cited sentences, the sources with their quotes, how it
  was made, and Slack's 👍/👎 feedback buttons (a 👎 asks “what was wrong?”).
- **The digest** of {page_day} (30 papers): the parent message has the overview, each topic
  with its paper count and the feedback buttons; every topic is one threaded reply (the
  second link shows the first), and `/papers digest {page_day} <topic>` opens one topic on
  its own. The HF page text gives titles and abstracts only, so these papers read “no link”
  unless paperbot can look their titles up on arXiv.
- **Search results** for “{search}” (`/papers search`): papers from the HF API feed read
  with arXiv, PDF and HF links, the first three authors, upvotes and comments, and the HF
  thumbnail; a button shares the list in the channel.
"""

TITLES = {
    "answer.json": "Answer (mention, DM, assistant thread)",
    "digest-parent.json": f"Digest {PAGE_DAY}: parent message",
    "digest-topic.json": f"Digest {PAGE_DAY}: a topic reply in the thread",
    "search.json": "Search results (`/papers search`)",
}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        messages = render(Path(tmp) / "data")
    rows = []
    for name, message_blocks in messages.items():
        text = json.dumps({"blocks": message_blocks}, ensure_ascii=False, indent=2) + "\n"
        (HERE / name).write_text(text, encoding="utf-8")
        rows.append(
            f"| {TITLES[name]} | [{name}]({name}) | [Block Kit Builder]({builder_link(message_blocks)}) |"
        )
    readme = README.format(
        rows="\n".join(rows), question=QUESTION, page_day=PAGE_DAY, search=SEARCH
    )
    (HERE / "README.md").write_text(readme, encoding="utf-8")
    print(f"wrote {len(messages)} messages and README.md to {HERE}")


if __name__ == "__main__":
    main()
