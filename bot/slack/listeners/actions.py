"""Buttons: 👍/👎 feedback on answers and digests, and sharing search results in the channel.

Feedback is Slack's feedback buttons element (its value: the vote and the stored answer's
id); buttons of messages posted before it (`feedback_up`/`feedback_down`, the id alone) still
count. A 👎 is answered with an optional "what was wrong?" line (an input in an ephemeral
message; Enter sends it), stored with the vote.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from bot.services import Services
from bot.slack import blocks, paper_links, permissions
from bot.slack.settings import SlackSettings

log = logging.getLogger(__name__)
UNKNOWN_ANSWER = "That answer is no longer on record, so your vote was not saved."


def register(app: Any, services: Services, settings: SlackSettings) -> None:
    # The app processes a request before answering it (process_before_response=True, so an
    # event's job is on disk before its ack): every Slack call of a click therefore runs in a
    # lazy listener, after the ack, and the click is acked at once.
    def record_vote(ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        vote, answer_id = _vote(action)
        services.store.add_feedback(  # a local write, before the ack: the vote is kept
            answer_id=answer_id or None,
            user_id=body["user"]["id"],
            vote=vote,
            channel=(body.get("channel") or {}).get("id"),
            message_ts=(body.get("message") or {}).get("ts")
            or (body.get("container") or {}).get("message_ts"),  # an ephemeral answer
        )
        ack()

    def thank(action: dict[str, Any], respond: Any) -> None:
        vote, answer_id = _vote(action)
        if services.store.get_answer(answer_id) is None:  # nothing was stored
            text, blks = blocks.error_message(UNKNOWN_ANSWER)
        elif vote == "down":
            text, blks = blocks.feedback_reason_prompt(answer_id)
        else:
            text, blks = blocks.feedback_thanks(vote)
        respond(text=text, blocks=blks, response_type="ephemeral", replace_original=False)

    def record_reason(ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        block_id = str(action.get("block_id") or "")
        services.store.set_feedback_reason(  # local, before the ack, like the vote
            answer_id=block_id.removeprefix(blocks.FEEDBACK_REASON_BLOCK),
            user_id=body["user"]["id"],
            reason=str(action.get("value") or ""),
        )
        ack()

    def thank_reason(action: dict[str, Any], respond: Any) -> None:
        reason = " ".join(str(action.get("value") or "").split())
        if not reason:
            return
        text, blks = blocks.feedback_reason_thanks(reason)
        respond(text=text, blocks=blks, response_type="ephemeral", replace_original=True)

    def ack_share(ack: Any) -> None:
        ack()

    def share(body: dict[str, Any], action: dict[str, Any], client: Any, respond: Any) -> None:
        channel = str((body.get("channel") or {}).get("id") or "")
        refusal = (
            permissions.cannot_post_reason(client, channel)
            if permissions.channel_allowed(settings, channel)
            else permissions.not_allowed_text(settings)
        )
        if refusal:
            log.info("not sharing search results into %s: %s", channel, refusal)
            text, blks = blocks.error_message(refusal)
            respond(text=text, blocks=blks, response_type="ephemeral", replace_original=False)
            return
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
        linker = paper_links.of(services)
        ordered = linker.resolve(ordered) if linker is not None else ordered
        text, blks = blocks.shared_results(body["user"]["id"], str(shared.get("q", "")), ordered)
        client.chat_postMessage(channel=channel, text=text, blocks=blks, unfurl_links=False)

    app.action(blocks.FEEDBACK)(ack=record_vote, lazy=[thank])
    app.action(blocks.FEEDBACK_UP)(ack=record_vote, lazy=[thank])
    app.action(blocks.FEEDBACK_DOWN)(ack=record_vote, lazy=[thank])
    app.action(blocks.FEEDBACK_REASON)(ack=record_reason, lazy=[thank_reason])
    app.action(blocks.SHARE_SEARCH)(ack=ack_share, lazy=[share])


def _vote(action: dict[str, Any]) -> tuple[str, str]:
    """(vote, answer id) of a click: the feedback element's value says both; an old
    button's action id says the vote and its value is the id."""
    value = str(action.get("value") or "")
    if action["action_id"] == blocks.FEEDBACK:
        return blocks.parse_feedback_value(value) or ("down", "")
    return ("up" if action["action_id"] == blocks.FEEDBACK_UP else "down"), value
