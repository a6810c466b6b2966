"""Where paperbot may act: the channel allow-list and the bot's own channel membership.

One rule for every surface (mentions, thread follow-ups, `/papers`, the share button,
notifications): a channel outside ``PAPERBOT_ALLOWED_CHANNELS`` gets nothing but a one-line
refusal, decided before any Slack call. Direct messages (ids starting with ``D``) are always
allowed, as a DM with paperbot is a private conversation with it.

Posting into a channel (a channel subscription, a shared search) also needs paperbot to be a
member of it, checked with ``conversations.info``: with the ``chat:write.public`` scope Slack
would let it post into any public channel it was never invited to, and a user must not be
able to make it do that.
"""

from __future__ import annotations

import logging
from typing import Any

from bot.slack.settings import SlackSettings

log = logging.getLogger(__name__)
SETTING = "PAPERBOT_ALLOWED_CHANNELS"
INVITE = "invite it with `/invite @paperbot`, then try again"


def is_dm(channel: str) -> bool:
    """A direct-message conversation (Slack's ids for them start with D)."""
    return channel.startswith("D")


def channel_allowed(settings: SlackSettings, channel: str) -> bool:
    """May paperbot act in ``channel`` at all? (No Slack call: decided from settings.)"""
    return not settings.allowed_channels or is_dm(channel) or channel in settings.allowed_channels


def not_allowed_text(settings: SlackSettings) -> str:
    """The one-line refusal for a channel outside the allow-list (plain text, ids as they are)."""
    return (
        "paperbot is not enabled in this channel; use it in "
        f"{_listed(settings.allowed_channels)} or in a DM ({SETTING})."
    )


def _listed(channels: list[str], most: int = 5) -> str:
    shown = ", ".join(channels[:most])
    return shown + (f" and {len(channels) - most} more" if len(channels) > most else "")


def cannot_post_reason(client: Any, channel: str) -> str | None:
    """None when paperbot is a member of ``channel`` (one conversations.info call); else why
    it may not post there, as a one-line message naming the fix. Fails closed: a channel whose
    membership cannot be checked is refused."""
    from slack_sdk.errors import SlackApiError

    try:
        response = client.conversations_info(channel=channel)
    except SlackApiError as exc:
        error = str(exc.response.get("error") or "unknown_error")
        log.info("conversations.info %s: %s", channel, error)
        if error in ("channel_not_found", "not_in_channel"):
            return f"paperbot cannot see this conversation; {INVITE}."
        if error == "missing_scope":
            return (
                "paperbot cannot check that it is a member of this channel (the app lacks the "
                "channels:read / groups:read scope); add it and reinstall the app."
            )
        return f"paperbot could not check this channel ({error}); please try again later."
    except Exception as exc:  # the network, Slack down: refuse rather than guess
        log.warning("conversations.info %s failed: %s", channel, exc)
        return "paperbot could not reach Slack to check this channel; please try again later."
    info = response.get("channel") or {}
    if info.get("is_member") or info.get("is_im"):
        return None
    return f"paperbot is not a member of this channel; {INVITE}."
