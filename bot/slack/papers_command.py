"""What each `/papers` subcommand does: services in, a Slack message out (no Slack client).

Shared by the Slack listener and `paperbot chat`, so both behave the same. Answers carry the
feedback buttons (the answer is stored for them); `digest <day> <topic>` shows one topic of the
day's digest (the command the digest itself names for "see more"); title-only papers get their
arXiv link when the services can look titles up (bot/slack/paper_links.py).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from datetime import date

from bot.services import Services
from bot.slack import blocks, paper_links
from bot.slack.replies import remember_answer
from bot.slack.settings import SlackSettings
from bot.slack.slash import Command
from bot.slack.store import SubscriptionLimitError
from retrieval import NotFoundError, Paper, PaperbotError

log = logging.getLogger(__name__)


def run_command(
    services: Services,
    cmd: Command,
    *,
    user_id: str,
    channel_id: str,
    command: str = "/papers",
    settings: SlackSettings | None = None,
    is_admin: Callable[[str], bool] | None = None,
) -> blocks.Message:
    """``settings`` gives the subscription limits (their defaults without it); ``is_admin``
    tells whether a user is a workspace admin (who may remove anyone's channel subscription;
    without it, only the creator may)."""
    limits = settings or SlackSettings.model_construct()
    try:
        return _dispatch(
            services,
            cmd,
            user_id=user_id,
            channel_id=channel_id,
            command=command,
            limits=limits,
            is_admin=is_admin,
        )
    except PaperbotError as exc:
        return blocks.error_message(str(exc))


def _dispatch(
    services: Services,
    cmd: Command,
    *,
    user_id: str,
    channel_id: str,
    command: str,
    limits: SlackSettings,
    is_admin: Callable[[str], bool] | None,
) -> blocks.Message:
    if cmd.name == "help":
        return blocks.help_message(command, cmd.problem)
    linker = paper_links.of(services)
    if cmd.name == "ask":
        answer = services.qa.answer(cmd.argument)
        return blocks.answer_message(answer, remember_answer(services, answer))
    if cmd.name == "search":
        hits = services.corpus.search(cmd.argument, 8)
        if linker is not None:
            papers = linker.resolve([h.paper for h in hits])
            hits = [dataclasses.replace(h, paper=p) for h, p in zip(hits, papers, strict=True)]
        return blocks.search_results(cmd.argument, hits)
    if cmd.name == "summary":
        paper = find_paper(services, cmd.argument)
        summary = services.summarizer.tldr(paper)
        shown = linker.resolve([paper])[0] if linker is not None else paper
        return blocks.summary_message(shown, summary)
    if cmd.name == "digest":
        digest = services.digests.build(cmd.day or latest_day(services))
        topic = blocks.find_topic(digest, cmd.argument) if cmd.argument else None
        if linker is not None and (topic or digest.paper_count <= blocks.MAX_BLOCKS // 2):
            digest = linker.resolve_digest(  # only papers that will be shown
                dataclasses.replace(digest, groups=[topic]) if topic else digest
            )
        return blocks.digest_ephemeral(digest, cmd.argument or None, command)
    if cmd.name == "subscribe":
        return _subscribe(services, cmd, user_id, channel_id, command, limits)
    return _subscriptions(services, cmd, user_id=user_id, channel_id=channel_id, is_admin=is_admin)


def _subscribe(
    services: Services,
    cmd: Command,
    user_id: str,
    channel_id: str,
    command: str,
    limits: SlackSettings,
) -> blocks.Message:
    subscriber = channel_id if cmd.here else user_id
    try:
        created = services.store.subscribe(
            subscriber,
            cmd.argument,
            created_by=user_id,
            max_per_user=limits.max_subscriptions_per_user,
            max_per_subscriber=limits.max_subscriptions_per_channel if cmd.here else None,
        )
    except SubscriptionLimitError as exc:
        if exc.which == "user":
            return blocks.error_message(
                f"You have created {exc.limit} subscriptions, the most allowed "
                "(PAPERBOT_MAX_SUBSCRIPTIONS_PER_USER); remove one with "
                f"`{command} unsubscribe [here] <topic>` first."
            )
        return blocks.error_message(
            f"This channel has {exc.limit} subscriptions, the most allowed "
            "(PAPERBOT_MAX_SUBSCRIPTIONS_PER_CHANNEL); remove one with "
            f"`{command} unsubscribe here <topic>` first."
        )
    who = "This channel is" if cmd.here else "You are"
    verb = "now subscribed" if created else "already subscribed"
    where = "here" if cmd.here else "to you"
    return blocks.plain(
        f"{who} {verb} to “{cmd.argument}”. New matching papers will be posted {where}."
    )


def _subscriptions(
    services: Services,
    cmd: Command,
    *,
    user_id: str,
    channel_id: str,
    is_admin: Callable[[str], bool] | None,
) -> blocks.Message:
    subscriber = channel_id if cmd.here else user_id
    who = "This channel is" if cmd.here else "You are"
    store = services.store
    if cmd.name == "unsubscribe":
        if store.unsubscribe(subscriber, cmd.argument, by=user_id):
            return blocks.plain(f"{who} no longer subscribed to “{cmd.argument}”.")
        if store.subscription(subscriber, cmd.argument) is not None:
            if is_admin is not None and is_admin(user_id):  # only asked when needed
                store.unsubscribe(subscriber, cmd.argument)
                log.info(
                    "admin %s removed %s's subscription to %r", user_id, subscriber, cmd.argument
                )
                return blocks.plain(f"{who} no longer subscribed to “{cmd.argument}”.")
            return blocks.error_message(
                f"Only the person who subscribed this channel to “{cmd.argument}” (or a "
                "workspace admin) can remove that subscription."
            )
        return blocks.plain(f"{who} not subscribed to “{cmd.argument}”.")
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
