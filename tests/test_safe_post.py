"""safe_post: which lookup failures are final (send again) and which may pass (ask later)."""

from __future__ import annotations

import ssl
from http.client import IncompleteRead
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.slack_response import SlackResponse

from bot.slack.safe_post import refused


def _slack_error(status: int, error: str) -> SlackApiError:
    body: dict[str, Any] = {"ok": False, "error": error}
    response = SlackResponse(
        client=None,
        http_verb="POST",
        api_url="https://slack.com/api/conversations.history",
        req_args={},
        data=body,
        headers={},
        status_code=status,
    )
    return SlackApiError(error, response)


@pytest.mark.parametrize("error", ["missing_scope", "not_in_channel", "channel_not_found"])
def test_a_lookup_slack_will_never_answer_is_refused(error: str) -> None:
    assert refused(_slack_error(200, error))


@pytest.mark.parametrize(
    "exc",
    [
        _slack_error(500, "internal_error"),
        _slack_error(429, "ratelimited"),
        _slack_error(200, "fatal_error"),
        _slack_error(200, "service_unavailable"),
        ConnectionResetError("reset"),
        TimeoutError("timed out"),
        ssl.SSLError("bad record mac"),
        IncompleteRead(b"partial"),
        ValueError("a body that is not JSON"),
    ],
    ids=lambda e: type(e).__name__ + ":" + str(getattr(e, "response", {}) and e.response["error"]),
)
def test_a_lookup_that_may_answer_later_is_not_refused(exc: BaseException) -> None:
    assert not refused(exc)
