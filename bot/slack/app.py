"""Composition root: build the Bolt app from settings and services, register the listeners."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bot.services import Services
from bot.slack.listeners import register_all
from bot.slack.settings import SlackSettings

log = logging.getLogger(__name__)


def make_client(settings: SlackSettings) -> Any:
    """A WebClient that backs off and retries on `ratelimited`, 5xx and dropped connections."""
    from slack_sdk import WebClient
    from slack_sdk.http_retry.builtin_handlers import (
        ConnectionErrorRetryHandler,
        RateLimitErrorRetryHandler,
        ServerErrorRetryHandler,
    )

    token = settings.bot_token.get_secret_value() if settings.bot_token else None
    return WebClient(
        token=token,
        base_url=settings.slack_api_url,
        timeout=30,
        retry_handlers=[
            RateLimitErrorRetryHandler(max_retry_count=5),
            ServerErrorRetryHandler(max_retry_count=3),
            ConnectionErrorRetryHandler(max_retry_count=3),
        ],
    )


def create_app(settings: SlackSettings, services: Services, client: Any = None) -> Any:
    """The Bolt app. Slow work runs in lazy listeners, so every request is acked at once
    (process_before_response=True keeps that true even on function-as-a-service hosts)."""
    from slack_bolt import App

    client = client or make_client(settings)
    secret = settings.signing_secret.get_secret_value() if settings.signing_secret else None
    app = App(
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
    register_all(app, services, settings)
    return app
