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
    # The app processes a request before answering it (process_before_response=True, so an
    # event's job is on disk before its ack): every Slack call of a click therefore runs in a
    # lazy listener, after the ack, and the click is acked at once.
    def record_vote(ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        services.store.add_feedback(  # a local write, before the ack: the vote is kept
            answer_id=action.get("value") or None,
            user_id=body["user"]["id"],
            vote=_vote(action),
            channel=(body.get("channel") or {}).get("id"),
            message_ts=(body.get("message") or {}).get("ts"),
        )
        ack()

    def thank(action: dict[str, Any], respond: Any) -> None:
        text, blks = blocks.feedback_thanks(_vote(action))
        respond(text=text, blocks=blks, response_type="ephemeral", replace_original=False)

    def ack_share(ack: Any) -> None:
        ack()

    def share(body: dict[str, Any], action: dict[str, Any], client: Any, respond: Any) -> None:
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

    app.action(blocks.FEEDBACK_UP)(ack=record_vote, lazy=[thank])
    app.action(blocks.FEEDBACK_DOWN)(ack=record_vote, lazy=[thank])
    app.action(blocks.SHARE_SEARCH)(ack=ack_share, lazy=[share])


def _vote(action: dict[str, Any]) -> str:
    return "up" if action["action_id"] == blocks.FEEDBACK_UP else "down"
