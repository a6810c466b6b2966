"""Buttons: 👍/👎 feedback on answers, and sharing search results in the channel."""

from __future__ import annotations

import json
import logging
from typing import Any

from bot.services import Services
from bot.slack import blocks
from bot.slack.settings import SlackSettings

log = logging.getLogger(__name__)


def register(app: Any, services: Services, settings: SlackSettings) -> None:
    def on_feedback(ack: Any, body: dict[str, Any], action: dict[str, Any], respond: Any) -> None:
        ack()
        vote = "up" if action["action_id"] == blocks.FEEDBACK_UP else "down"
        services.store.add_feedback(
            answer_id=action.get("value") or None,
            user_id=body["user"]["id"],
            vote=vote,
            channel=(body.get("channel") or {}).get("id"),
            message_ts=(body.get("message") or {}).get("ts"),
        )
        text, blks = blocks.feedback_thanks(vote)
        respond(text=text, blocks=blks, response_type="ephemeral", replace_original=False)

    def on_share(
        ack: Any, body: dict[str, Any], action: dict[str, Any], client: Any, respond: Any
    ) -> None:
        ack()
        try:
            shared = json.loads(action.get("value", "{}"))
            papers = services.corpus.papers_by_id(list(shared.get("ids", []))[:20])
        except (json.JSONDecodeError, TypeError, AttributeError):
            respond(
                text="That button's data is damaged; run the search again.",
                response_type="ephemeral",
            )
            return
        ordered = [papers[i] for i in shared.get("ids", []) if i in papers]
        text, blks = blocks.shared_results(body["user"]["id"], str(shared.get("q", "")), ordered)
        client.chat_postMessage(
            channel=body["channel"]["id"], text=text, blocks=blks, unfurl_links=False
        )

    app.action(blocks.FEEDBACK_UP)(on_feedback)
    app.action(blocks.FEEDBACK_DOWN)(on_feedback)
    app.action(blocks.SHARE_SEARCH)(on_share)
