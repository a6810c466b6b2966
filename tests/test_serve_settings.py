"""Inside `paperbot serve` an answer's embedding gets only its share of the cores, so a burst
of answers cannot starve the threads that ack Slack; an explicit setting always wins."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bot.cli.bot_commands import _serving_settings
from bot.slack.answer_queue import embedding_threads_per_job
from bot.slack.settings import SlackSettings
from retrieval import RetrievalSettings


@pytest.mark.parametrize(
    ("cores", "workers", "threads"), [(2, 4, 1), (8, 4, 2), (16, 4, 4), (1, 0, 1), (4, 0, 1)]
)
def test_threads_per_answer_share_the_cores(
    monkeypatch: pytest.MonkeyPatch, cores: int, workers: int, threads: int
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: cores)
    assert embedding_threads_per_job(workers) == threads


def test_serve_caps_only_the_automatic_setting(
    make_settings: Callable[..., RetrievalSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    slack = SlackSettings(_env_file=None, answer_workers=4)  # type: ignore[call-arg]
    assert _serving_settings(make_settings(), slack).embedding_threads == 2
    explicit = make_settings(embedding_threads=6)
    assert _serving_settings(explicit, slack).embedding_threads == 6
