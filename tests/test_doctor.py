"""`paperbot doctor`: one pass/fail line with a fix per moving part."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from answers.settings import AnswerSettings
from bot.cli.doctor import _chroma_transport, run_checks
from bot.slack.settings import SlackSettings
from retrieval import RetrievalSettings
from tests.support.chroma_server import free_port
from tests.support.openai_server import FakeOpenAIServer
from tests.support.slack_api import FakeSlackAPI

pytestmark = pytest.mark.integration


def _by_name(checks: list[Any]) -> dict[str, Any]:
    return {c.name: c for c in checks}


def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Local servers only: a proxy from the environment must not sit in between."""
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)


def _slack_at(api: FakeSlackAPI) -> SlackSettings:
    """HTTP mode with a bot token, talking to the fake Slack Web API."""
    return SlackSettings(
        _env_file=None, bot_token="xoxb-1-test", signing_secret="s", slack_api_url=api.base_url
    )  # type: ignore[call-arg]


def test_everything_configured_and_reachable(
    settings: RetrievalSettings,
    make_answer_settings: Callable[..., AnswerSettings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _no_proxy(monkeypatch)
    with FakeOpenAIServer() as llm, FakeSlackAPI() as api:
        answer_settings = make_answer_settings(
            llm_provider="openai", llm_base_url=llm.base_url, llm_model="gpt-test"
        )
        slack = _slack_at(api)
        checks = _by_name(run_checks(settings, answer_settings, slack))
    for name in ("data dir", "tokenizer", "embedding model", "vector store", "LLM", "Slack"):
        assert checks[name].ok, (name, checks[name].detail)
    assert not checks["index"].ok and "no papers" in checks["index"].detail
    assert "paperbot ingest" in checks["index"].fix
    assert "gpt-test" in checks["LLM"].detail


def test_failures_come_with_fixes(
    make_settings: Callable[..., RetrievalSettings],
    make_answer_settings: Callable[..., AnswerSettings],
) -> None:
    settings = make_settings(chroma_host="127.0.0.1", chroma_port=free_port())
    answer_settings = make_answer_settings(
        llm_provider="openai", llm_base_url=f"http://127.0.0.1:{free_port()}/v1"
    )
    slack = SlackSettings(_env_file=None)  # type: ignore[call-arg]
    checks = _by_name(run_checks(settings, answer_settings, slack))
    assert not checks["vector store"].ok and "chroma run" in checks["vector store"].fix
    assert not checks["LLM"].ok and "PAPERBOT_LLM_BASE_URL" in checks["LLM"].fix
    assert not checks["Slack"].ok and "SLACK_BOT_TOKEN" in checks["Slack"].detail


@pytest.mark.parametrize(
    ("host", "ssl", "ok"),
    [
        ("chroma.internal.example", False, False),  # the token in clear over the network
        ("10.0.0.7", False, False),
        ("chroma.internal.example", True, True),
        ("127.0.0.1", False, True),  # this host only (an SSH tunnel, a sidecar)
        ("localhost", False, True),
        ("::1", False, True),
        ("[::1]", False, True),
        ("Localhost.", False, True),
        ("::ffff:127.0.0.1", False, True),
        ("::ffff:10.0.0.7", False, False),
    ],
)
def test_where_a_chroma_token_may_travel(
    make_settings: Callable[..., RetrievalSettings], host: str, ssl: bool, ok: bool
) -> None:
    settings = make_settings(chroma_host=host, chroma_ssl=ssl, chroma_token="tok-123")
    if ok:
        assert host in _chroma_transport(settings)
    else:
        with pytest.raises(RuntimeError, match="over plain http"):
            _chroma_transport(settings)


def test_a_chroma_token_over_plain_http_to_another_host_fails_with_the_fix(
    make_settings: Callable[..., RetrievalSettings],
    make_answer_settings: Callable[..., AnswerSettings],
) -> None:
    host = "chroma.internal.example"
    settings = make_settings(chroma_host=host, chroma_port=free_port(), chroma_token="tok-123")
    slack = SlackSettings(_env_file=None)  # type: ignore[call-arg]
    transport = _by_name(run_checks(settings, make_answer_settings(), slack))["Chroma transport"]
    assert not transport.ok and "plain http" in transport.detail
    assert "PAPERBOT_CHROMA_SSL=true" in transport.fix and "tok-123" not in transport.detail
    without_token = make_settings(chroma_host=host, chroma_port=free_port())
    checks = _by_name(run_checks(without_token, make_answer_settings(), slack))
    assert "Chroma transport" not in checks


def test_each_check_is_reported_as_soon_as_it_completes(
    settings: RetrievalSettings,
    make_answer_settings: Callable[..., AnswerSettings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At 10⁶ chunks the data files' check and the vector store take a minute or more: the
    checks before them are printed first, in the order `run_checks` gives."""
    from bot.cli import doctor

    ran: list[str] = []
    slow = doctor._store
    monkeypatch.setattr(doctor, "_store", lambda corpus: ran.append("store") or slow(corpus))
    slack = SlackSettings(_env_file=None)  # type: ignore[call-arg]
    checks = doctor.iter_checks(settings, make_answer_settings(), slack)
    first = [next(checks) for _ in range(3)]
    assert [c.name for c in first] == ["config", "data dir", "data files"] and not ran
    rest = list(checks)
    assert ran == ["store"]
    names = [c.name for c in first + rest]
    assert names == [c.name for c in run_checks(settings, make_answer_settings(), slack)]
    assert names[-2:] == ["Slack", "feeds"]


def test_a_bot_token_without_the_manifests_scopes_fails_the_slack_check(
    settings: RetrievalSettings,
    make_answer_settings: Callable[..., AnswerSettings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bot.slack.app import BOT_SCOPES

    _no_proxy(monkeypatch)
    with FakeSlackAPI() as api:
        slack = _slack_at(api)

        def slack_check() -> Any:
            return _by_name(run_checks(settings, make_answer_settings(), slack))["Slack"]

        api.scopes = tuple(s for s in BOT_SCOPES if s not in ("channels:history", "groups:history"))
        check = slack_check()
        assert not check.ok
        assert check.detail.endswith("its token lacks the scopes channels:history")
        assert "manifest.yaml" in check.fix and "reinstall" in check.fix
        api.scopes = tuple(s for s in BOT_SCOPES if s != "groups:history")  # no private channels
        check = slack_check()
        assert check.ok and check.detail.endswith("optional scopes not granted: groups:history")
        api.scopes = BOT_SCOPES
        check = slack_check()
        assert check.ok and "scopes" not in check.detail
