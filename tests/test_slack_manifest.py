"""manifest.yaml against Slack's published app manifest schema (vendored, see
tests/fixtures/slack/README.md), and against what paperbot's code needs from Slack."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "tests" / "fixtures" / "slack"


def _manifest() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "manifest.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _validator() -> jsonschema.Draft7Validator:
    top = json.loads((SCHEMAS / "manifest.schema.json").read_text(encoding="utf-8"))
    refs = {r for r in json.dumps(top).split('"') if r.startswith("https://raw.")}
    registry: Registry = Registry().with_resources(
        (ref, Resource.from_contents(json.loads((SCHEMAS / ref.rsplit("/", 1)[1]).read_text())))
        for ref in refs
    )
    return jsonschema.Draft7Validator(top, registry=registry)


def _errors(manifest: dict[str, Any]) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in _validator().iter_errors(manifest)
    ]


def test_manifest_is_valid_against_slacks_schema() -> None:
    assert _errors(_manifest()) == []


def test_the_schema_check_catches_a_broken_manifest() -> None:
    broken = _manifest()
    broken["features"]["assistant_view"].pop("assistant_description")
    broken["oauth_config"]["scopes"]["bot"].append("not-a-scope")
    assert _errors(broken), "a missing assistant_description must be reported"


def test_manifest_has_what_assistant_threads_and_group_dms_need() -> None:
    manifest = _manifest()
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    events = set(manifest["settings"]["event_subscriptions"]["bot_events"])
    assert manifest["features"]["assistant_view"]["assistant_description"]
    assert {"assistant:write", "mpim:history", "chat:write", "users:read"} <= scopes
    assert {"assistant_thread_started", "assistant_thread_context_changed"} <= events
    assert "message.mpim" in events
    # nothing calls conversations.open, and chat.postMessage to a user id needs chat:write only
    assert not {"im:write", "chat:write.public"} & scopes


@pytest.mark.parametrize("event", ["app_mention", "message.im", "message.channels"])
def test_events_the_listeners_handle_are_subscribed(event: str) -> None:
    assert event in _manifest()["settings"]["event_subscriptions"]["bot_events"]


def test_doctor_checks_the_scopes_the_manifest_asks_for() -> None:
    from bot.slack.app import BOT_SCOPES, REQUIRED_SCOPES, missing_scopes

    assert sorted(BOT_SCOPES) == sorted(_manifest()["oauth_config"]["scopes"]["bot"])
    assert set(REQUIRED_SCOPES) <= set(BOT_SCOPES)
    granted = ",".join(s for s in BOT_SCOPES if s != "channels:history")
    assert missing_scopes({"X-OAuth-Scopes": granted}) == ["channels:history"]
    assert missing_scopes({"x-oauth-scopes": ",".join(BOT_SCOPES)}) == []
    assert missing_scopes({}) == []  # no header: nothing to tell
