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
    max_subscriptions_per_user: int = Field(
        default=20,
        ge=1,
        le=10_000,
        description="Most subscriptions one user may create (for themselves and for channels).",
    )
    max_subscriptions_per_channel: int = Field(
        default=50,
        ge=1,
        le=10_000,
        description="Most subscriptions one channel may have (`/papers subscribe here`).",
    )
    workers: int = Field(
        default=16,
        ge=1,
        le=128,
        description="Threads for Bolt's listeners (button clicks, the ack side); questions are "
        "answered by the answer queue's workers (PAPERBOT_ANSWER_WORKERS).",
    )
    native_streaming: bool = Field(
        default=True,
        description="Stream answers with Slack's chat.startStream/appendStream/stopStream where "
        "the workspace allows it (else, and when false, a placeholder updated with chat.update).",
    )
    assistant_prompts: int = Field(
        default=4,
        ge=1,
        le=4,
        description="Suggested prompts shown when someone opens a paperbot assistant thread "
        "(Slack shows at most 4).",
    )
    stream_update_seconds: float = Field(
        default=1.2, ge=0.2, description="Minimum pause between chat.update calls while streaming."
    )
    tick_seconds: float = Field(
        default=30.0,
        ge=1.0,
        description="How often `serve` checks schedules, subscriptions and feeds added or "
        "enabled with the CLI.",
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

    # --- HTTP server and logs (bot/slack/asgi.py, bot/slack/server.py) ---
    http_max_body_bytes: int = Field(
        default=1 << 20,
        ge=1024,
        description="HTTP mode: requests with a larger body get 413 before they are read.",
    )
    http_body_timeout_seconds: float = Field(
        default=10.0, gt=0, description="HTTP mode: a body not received within this gets 408."
    )
    http_header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="HTTP mode: a connection that has not sent its request headers within this "
        "is closed (stalled clients hold no thread).",
    )
    health_port: int = Field(
        default=3001,
        ge=0,
        le=65535,
        description="Socket Mode: port of /healthz and /readyz on `http_host` (0 = off).",
    )
    log_format: str = Field(
        default="text",
        pattern=r"^(text|json)$",
        description="Log lines as text or json (one JSON object per line, for log collectors).",
    )

    # --- answer queue (bot/slack/answer_queue.py) ---
    answer_workers: int = Field(
        default=0,
        ge=0,
        le=64,
        description="Questions answered at once from the answer queue; 0 = min(4, 2 × CPU "
        "cores). Acks never wait for them.",
    )
    answer_max_attempts: int = Field(
        default=3,
        ge=1,
        le=20,
        description="Tries per question (a crash or restart mid-answer counts) before the bot "
        "gives up with a message in the thread.",
    )
    answer_lease_seconds: float = Field(
        default=60.0,
        ge=5.0,
        description="A question being answered by a process that has not renewed its claim for "
        "this long is presumed dead and resumed by another.",
    )
    shutdown_grace_seconds: float = Field(
        default=20.0,
        ge=0.0,
        description="On SIGTERM/SIGINT, how long `serve` lets answers in progress finish; the "
        "rest are handed back and resumed at the next start. A digest being posted stops after "
        "the message in flight and goes on at the next start.",
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
