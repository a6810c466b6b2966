"""Composition root: build the Bolt app from settings and services, register the listeners."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bot.services import Services
from bot.slack.listeners import register_all
from bot.slack.settings import SlackSettings

log = logging.getLogger(__name__)


# The bot token scopes manifest.yaml asks for (tests/test_slack_manifest.py keeps both equal): the
# history scopes let threads be read, and digests be checked before a message is sent again.
BOT_SCOPES = (
    "app_mentions:read",
    "assistant:write",
    "channels:history",
    "channels:read",
    "groups:history",
    "groups:read",
    "mpim:history",
    "mpim:read",
    "im:history",
    "im:read",
    "chat:write",
    "commands",
    "users:read",
)


# Without these paperbot cannot work (mentions, /papers, posting, reading threads and checking
# digests before sending again); the rest serve one surface each (private channels, DMs, the
# assistant pane, admins' rights) that an install may leave out on purpose.
REQUIRED_SCOPES = ("app_mentions:read", "channels:history", "chat:write", "commands")


def missing_scopes(headers: Any) -> list[str]:
    """The BOT_SCOPES a Web API answer's ``x-oauth-scopes`` header does not grant (none when
    the header is absent: nothing to tell)."""
    granted = next(
        (str(v) for k, v in dict(headers or {}).items() if k.lower() == "x-oauth-scopes"), None
    )
    if granted is None:
        return []
    have = {scope.strip() for scope in granted.split(",")}
    return [scope for scope in BOT_SCOPES if scope not in have]


def make_client(settings: SlackSettings) -> Any:
    """A WebClient that backs off and retries on `ratelimited`, 5xx and dropped connections —
    except paperbot's own messages after a 5xx or a dropped connection: Slack may have taken
    them, and they are sent through bot/slack/safe_post.py, which asks Slack first."""
    from slack_sdk import WebClient
    from slack_sdk.http_retry.builtin_handlers import (
        ConnectionErrorRetryHandler,
        RateLimitErrorRetryHandler,
        ServerErrorRetryHandler,
    )

    from bot.slack.safe_post import marked

    def not_for_own_messages(handler: Any) -> Any:
        can_retry = handler._can_retry  # what slack_sdk's RetryHandler.can_retry asks

        def _can_retry(*, request: Any, **rest: Any) -> bool:
            if marked(request.data):  # a digest message or a thread reply: post_once retries
                return False
            return bool(can_retry(request=request, **rest))

        handler._can_retry = _can_retry
        return handler

    token = settings.bot_token.get_secret_value() if settings.bot_token else None
    return WebClient(
        token=token,
        base_url=settings.slack_api_url,
        timeout=30,
        retry_handlers=[
            RateLimitErrorRetryHandler(max_retry_count=5),  # 429: Slack did nothing
            not_for_own_messages(ServerErrorRetryHandler(max_retry_count=3)),
            not_for_own_messages(ConnectionErrorRetryHandler(max_retry_count=3)),
        ],
    )


def create_app(settings: SlackSettings, services: Services, client: Any = None) -> Any:
    """The Bolt app. Slow work runs in lazy listeners, so every request is acked at once
    (process_before_response=True keeps that true even on function-as-a-service hosts)."""
    from slack_bolt import App

    client = client or make_client(settings)
    secret = settings.signing_secret.get_secret_value() if settings.signing_secret else None
    try:
        app = _bolt_app(App, client, settings, secret)
    except Exception as exc:  # auth.test at start: a bad token or an unreachable Slack
        raise _startup_error(exc, settings) from None
    register_all(app, services, settings)
    return app


def _bolt_app(App: Any, client: Any, settings: SlackSettings, secret: str | None) -> Any:
    bolt_log = logging.getLogger("slack_bolt.App")
    for logger in (bolt_log, logging.getLogger("slack_bolt.RequestVerification")):
        if not any(isinstance(f, _NoBodies) for f in logger.filters):
            logger.addFilter(_NoBodies())
    return App(
        logger=bolt_log,
        client=client,
        # Lazy listeners (the answering work) run here; acks never wait for this pool.
        listener_executor=ThreadPoolExecutor(
            max_workers=settings.workers, thread_name_prefix="answer"
        ),
        signing_secret=secret,
        # Socket Mode connections are authenticated by the app token instead.
        request_verification_enabled=secret is not None,
        process_before_response=True,
        ignoring_self_events_enabled=True,
    )


def _startup_error(exc: Exception, settings: SlackSettings) -> Exception:
    """One line naming the fix (main.py prints PaperbotError without a traceback)."""
    from retrieval import PaperbotError

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for code in ("invalid_auth", "not_authed", "token_revoked", "account_inactive"):
        if code in text:
            return PaperbotError(
                f"Slack refused the bot token ({code}). Set SLACK_BOT_TOKEN to the xoxb-… "
                "token from the app's OAuth & Permissions page."
            )
    return PaperbotError(
        f"Cannot reach the Slack API at {settings.slack_api_url} ({text}). Check the network "
        "or proxy, and PAPERBOT_SLACK_API_URL; then start again."
    )


class _NoBodies(logging.Filter):
    """Bolt logs the full body of a request with a bad signature at INFO; drop the body.
    (The ASGI layer rejects those first; this covers Socket Mode and direct use.)"""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "body:" in message:
            record.msg, record.args = message.split("body:", 1)[0] + "body: <redacted>)", None
        return True
