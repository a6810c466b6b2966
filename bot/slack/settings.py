"""SlackSettings: credentials and behaviour of the Slack app (env vars or `.env`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from retrieval import PaperbotSettings


class SlackSettings(PaperbotSettings):
    bot_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("SLACK_BOT_TOKEN", "PAPERBOT_SLACK_BOT_TOKEN"),
        description="Bot token (xoxb-…) from the Slack app's OAuth page.",
    )
    signing_secret: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("SLACK_SIGNING_SECRET", "PAPERBOT_SLACK_SIGNING_SECRET"),
        description="Signing secret (Basic Information page); verifies HTTP requests.",
    )
    app_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("SLACK_APP_TOKEN", "PAPERBOT_SLACK_APP_TOKEN"),
        description="App-level token (xapp-…); when set, `paperbot serve` uses Socket Mode.",
    )
    slack_api_url: str = Field(
        default="https://slack.com/api/",
        description="Slack Web API base URL (tests use a local server).",
    )
    http_host: str = Field(default="0.0.0.0", description="HTTP mode: address to listen on.")
    http_port: int = Field(default=3000, ge=1, le=65535, description="HTTP mode: port.")
    allowed_channels: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated channel ids paperbot answers in; empty = everywhere.",
    )
    slash_command: str = Field(default="/papers", pattern=r"^/[a-z0-9_-]+$")
    workers: int = Field(
        default=16,
        ge=1,
        le=128,
        description="Questions answered in parallel; more answers sooner under load, but each "
        "answer competes with acks for the CPU.",
    )
    stream_update_seconds: float = Field(
        default=1.2, ge=0.2, description="Minimum pause between chat.update calls while streaming."
    )
    tick_seconds: float = Field(
        default=30.0,
        ge=1.0,
        description="How often `serve` checks schedules and subscriptions.",
    )
    digest_lease_seconds: float = Field(
        default=600.0, ge=10.0, description="A digest claim older than this is presumed dead."
    )
    digest_wait_minutes: float = Field(
        default=180.0,
        ge=0.0,
        le=1440.0,
        description="A scheduled digest waits up to this long after its time for feeds that "
        "have not delivered the day's list yet (and for a day without papers); 0 = never.",
    )
    digest_empty_note: bool = Field(
        default=True,
        description="Post a short 'No new papers today' note when a scheduled digest's day "
        "has no papers at its deadline (false: post nothing).",
    )
    # --- feeds (bot/slack/feeds.py) ---
    feeds: str = Field(
        default="",
        description="Feeds declared in the environment, added to `paperbot feeds` at start: "
        "';'-separated hf, hf:<time zone>, arxiv:<categories>, url:<URL>, file:<path>.",
    )
    feeds_enabled: bool = Field(
        default=True,
        description="`paperbot serve` polls the feeds in the background (false: another host "
        "or cron ingests).",
    )
    feed_max_backoff_minutes: float = Field(
        default=60.0, ge=1.0, description="Longest wait before retrying a failing feed."
    )
    feed_alert_failures: int = Field(
        default=3,
        ge=1,
        description="Consecutive failed polls after which a feed is reported failing "
        "(`paperbot doctor`, /healthz).",
    )

    @field_validator("allowed_channels", mode="before")
    @classmethod
    def _split_channels(cls, value: object) -> object:
        if isinstance(value, str):
            return [c.strip() for c in value.split(",") if c.strip()]
        return value

    def missing_for(self, mode: str) -> list[str]:
        """Which variables `paperbot serve` needs but lacks, by their names in the environment."""
        missing = [] if self.bot_token else ["SLACK_BOT_TOKEN"]
        if mode == "http" and not self.signing_secret:
            missing.append("SLACK_SIGNING_SECRET")
        if mode == "socket" and not self.app_token:
            missing.append("SLACK_APP_TOKEN")
        return missing

    @property
    def mode(self) -> str:
        return "socket" if self.app_token else "http"
