"""`doctor` never prints a credential, whatever a server echoes back (issue 12)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import SecretStr

from answers.settings import AnswerSettings
from bot.cli.doctor import run_checks
from bot.cli.options import error_line
from bot.slack.settings import SlackSettings
from retrieval import RetrievalSettings, redact
from tests.support.openai_server import FakeOpenAIServer

pytestmark = pytest.mark.integration

OPENAI_KEY = "sk-proj-Abc123SECRETkeyThatMustNotLeak9876"
ODD_KEY = "my-own-llm-gateway-password-42"  # a configured secret of no known shape
SLACK_TOKEN = "xoxb-1111-2222-SECRETtokenValue"


@pytest.mark.parametrize("key", [OPENAI_KEY, ODD_KEY])
def test_doctor_redacts_a_key_the_llm_server_echoes(
    settings: RetrievalSettings,
    make_answer_settings: Callable[..., AnswerSettings],
    monkeypatch: pytest.MonkeyPatch,
    key: str,
) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    with FakeOpenAIServer() as llm:
        echo = {
            "error": {
                "message": f"Incorrect API key provided: {key}. Header was 'Bearer {key}'",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
            }
        }
        llm.enqueue_error(401, body=echo)
        answer_settings = make_answer_settings(
            llm_provider="openai", llm_base_url=llm.base_url, llm_model="m", llm_api_key=key
        )
        slack = SlackSettings(_env_file=None, bot_token=SecretStr(SLACK_TOKEN))  # type: ignore[call-arg]
        checks = {c.name: c for c in run_checks(settings, answer_settings, slack)}
    shown = " ".join(f"{c.detail} {c.fix}" for c in checks.values())
    assert not checks["LLM"].ok and "Incorrect API key provided" in checks["LLM"].detail
    assert key not in shown and SLACK_TOKEN not in shown
    assert "[redacted]" in checks["LLM"].detail


def test_the_cli_error_line_redacts_credentials_and_configured_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PAPERBOT_LLM_API_KEY", ODD_KEY)
    monkeypatch.setenv("SLACK_BOT_TOKEN", SLACK_TOKEN)
    line = error_line(RuntimeError(f"server said: key {ODD_KEY}, token {SLACK_TOKEN}"))
    assert ODD_KEY not in line and SLACK_TOKEN not in line and line.startswith("server said")


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Incorrect API key provided: sk-abcdefghijklmnop1234", "sk-abcdefghijklmnop1234"),
        ("key sk-proj-AAAA_bbbb-CCCC1234 was refused", "sk-proj-AAAA_bbbb-CCCC1234"),
        ("invalid_auth for xoxp-123-456-789-abcdef", "xoxp-123-456-789-abcdef"),
        ("app token xapp-1-A0123-456-abcdef0123 rejected", "xapp-1-A0123-456-abcdef0123"),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.abc", "eyJhbGciOiJIUzI1NiJ9.e30.abc"),
        ('{"api_key": "hunter2hunter2"}', "hunter2hunter2"),
        ("https://x.test/v1?access_token=abcdef123456&q=1", "abcdef123456"),
    ],
)
def test_redact_catches_the_usual_credential_shapes(text: str, secret: str) -> None:
    shown = redact(text)
    assert secret not in shown and "[redacted]" in shown


def test_redact_keeps_ordinary_text_and_blanks_configured_values() -> None:
    text = "The Chroma server at http://127.0.0.1:8000 is not reachable (skipping tokens)."
    assert redact(text) == text
    assert redact("gateway said: my-own-value-123", ["my-own-value-123", "", None]) == (
        "gateway said: [redacted]"
    )


def test_secret_values_reads_every_secret_field() -> None:
    from retrieval import secret_values

    slack = SlackSettings(  # type: ignore[call-arg]
        _env_file=None,
        bot_token=SecretStr(SLACK_TOKEN),
        signing_secret=SecretStr("signing-secret-value"),
    )
    found: list[Any] = secret_values(slack, None)
    assert SLACK_TOKEN in found and "signing-secret-value" in found
