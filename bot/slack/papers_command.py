"""What each `/papers` subcommand does: services in, a Slack message out (no Slack client).

Shared by the Slack listener and `paperbot chat`, so both behave the same.
"""

from __future__ import annotations

import logging
from datetime import date

from bot.services import Services
from bot.slack import blocks
from bot.slack.slash import Command
from retrieval import NotFoundError, Paper, PaperbotError

log = logging.getLogger(__name__)


def run_command(
    services: Services, cmd: Command, *, user_id: str, channel_id: str, command: str = "/papers"
) -> blocks.Message:
    try:
        return _dispatch(services, cmd, user_id=user_id, channel_id=channel_id, command=command)
    except PaperbotError as exc:
        return blocks.error_message(str(exc))


def _dispatch(
    services: Services, cmd: Command, *, user_id: str, channel_id: str, command: str
) -> blocks.Message:
    if cmd.name == "help":
        return blocks.help_message(command, cmd.problem)
    if cmd.name == "ask":
        return blocks.answer_message(services.qa.answer(cmd.argument))
    if cmd.name == "search":
        return blocks.search_results(cmd.argument, services.corpus.search(cmd.argument, 8))
    if cmd.name == "summary":
        paper = find_paper(services, cmd.argument)
        return blocks.summary_message(paper, services.summarizer.tldr(paper))
    if cmd.name == "digest":
        return blocks.digest_ephemeral(services.digests.build(cmd.day or latest_day(services)))
    return _subscriptions(services, cmd, user_id=user_id, channel_id=channel_id)


def _subscriptions(
    services: Services, cmd: Command, *, user_id: str, channel_id: str
) -> blocks.Message:
    subscriber = channel_id if cmd.here else user_id
    who = "This channel is" if cmd.here else "You are"
    store = services.store
    if cmd.name == "subscribe":
        created = store.subscribe(subscriber, cmd.argument, created_by=user_id)
        verb = "now subscribed" if created else "already subscribed"
        where = "here" if cmd.here else "to you"
        return blocks.plain(
            f"{who} {verb} to “{cmd.argument}”. New matching papers will be posted {where}."
        )
    if cmd.name == "unsubscribe":
        removed = store.unsubscribe(subscriber, cmd.argument)
        return blocks.plain(
            f"{who} {'no longer' if removed else 'not'} subscribed to “{cmd.argument}”."
        )
    topics = [t for _, t in store.subscriptions(user_id)]
    channel_topics = [f"{t} (this channel)" for _, t in store.subscriptions(channel_id)]
    return blocks.subscriptions_message("You are", topics + channel_topics)


def find_paper(services: Services, ref: str) -> Paper:
    """By id, URL or exact title; else the best search hit if it is clearly relevant."""
    try:
        return services.corpus.paper(ref)
    except NotFoundError:
        hits = services.corpus.search(ref, 1)
        if hits and services.corpus.relevance(hits[0]):
            return hits[0].paper
        raise


def latest_day(services: Services) -> date:
    """The most recent listing day in the index: the last day a feed first listed a paper
    (a paper no feed listed counts by its publication date); today when the index is empty."""
    return services.corpus.latest_day() or date.today()
