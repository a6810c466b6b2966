"""`/papers` text -> Command: what a user types and what the bot understands (pure parsing)."""

from __future__ import annotations

from datetime import date

import pytest

from bot.slack.slash import (
    ALIASES,
    MAX_ARGUMENT_CHARS,
    MAX_TOPIC_CHARS,
    SUBCOMMANDS,
    Command,
    parse,
)


def _assert_help(cmd: Command, *fragments: str) -> None:
    """Help with a problem that mentions every fragment."""
    assert cmd.name == "help"
    assert cmd.problem, "a user who typed something wrong is told what"
    for fragment in fragments:
        assert fragment in cmd.problem, (fragment, cmd.problem)


# ---------------------------------------------------------------- help and unknown words
@pytest.mark.parametrize("text", ["", "   ", "\n\t "])
def test_empty_text_shows_help_without_a_problem(text: str) -> None:
    assert parse(text) == Command("help")


def test_help_shows_help_without_a_problem() -> None:
    assert parse("help") == Command("help")
    assert parse("HELP").problem is None


@pytest.mark.parametrize("word", ["frobnicate", "asks", "digests", "@paperbot"])
def test_unknown_subcommand_shows_help_naming_the_word(word: str) -> None:
    cmd = parse(f"{word} something else")
    _assert_help(cmd, f"“{word}”")
    assert "something else" not in (cmd.problem or "")


def test_unknown_word_is_shortened_in_the_problem() -> None:
    cmd = parse("x" * 5_000)
    _assert_help(cmd, "Unknown command", "x" * 40)
    assert len(cmd.problem or "") < 100


# ---------------------------------------------------------------- subcommands and aliases
@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("q", "ask"),
        ("find", "search"),
        ("s", "search"),
        ("tldr", "summary"),
        ("summarize", "summary"),
        ("sub", "subscribe"),
        ("unsub", "unsubscribe"),
        ("subs", "subscriptions"),
    ],
)
def test_aliases(alias: str, name: str) -> None:
    argument = "" if name == "subscriptions" else "diffusion models"
    cmd = parse(f"{alias} {argument}".strip())
    assert cmd == Command(name, argument)


def test_every_alias_points_at_a_subcommand() -> None:
    assert set(ALIASES.values()) <= set(SUBCOMMANDS)
    assert not set(ALIASES) & set(SUBCOMMANDS)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ask What is RLHF?", Command("ask", "What is RLHF?")),
        ("search diffusion models", Command("search", "diffusion models")),
        ("summary 2410.17243", Command("summary", "2410.17243")),
        ("subscriptions", Command("subscriptions")),
    ],
)
def test_subcommands_with_their_argument(text: str, expected: Command) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    "text", ["ASK What is RLHF?", "Ask What is RLHF?", "aSk What is RLHF?", "Q What is RLHF?"]
)
def test_subcommand_is_case_insensitive_but_argument_keeps_its_case(text: str) -> None:
    assert parse(text) == Command("ask", "What is RLHF?")


@pytest.mark.parametrize(
    "text",
    [
        "   search    diffusion models   ",
        "search\tdiffusion models",
        "search\ndiffusion models\n",
        "\u00a0search diffusion models",  # a non-breaking space pasted from a web page
    ],
)
def test_extra_whitespace_around_subcommand_and_argument_is_ignored(text: str) -> None:
    assert parse(text) == Command("search", "diffusion models")


@pytest.mark.parametrize("name", ["ask", "search", "summary", "q", "find", "tldr"])
@pytest.mark.parametrize("rest", ["", "   ", "\t"])
def test_ask_search_summary_need_text(name: str, rest: str) -> None:
    full = ALIASES.get(name, name)
    _assert_help(parse(f"{name}{rest}"), f"`{full}`", "needs some text")


# ---------------------------------------------------------------- argument length
def test_a_5000_character_argument_is_refused_with_a_clear_problem() -> None:
    cmd = parse("ask " + "w" * 5_000)
    _assert_help(cmd, "5,000 characters", f"{MAX_ARGUMENT_CHARS:,}")
    assert cmd.argument == ""


def test_argument_length_limit_is_inclusive() -> None:
    at_limit = "a" * MAX_ARGUMENT_CHARS
    assert parse(f"search {at_limit}") == Command("search", at_limit)
    _assert_help(parse(f"search {at_limit}a"), f"{MAX_ARGUMENT_CHARS + 1:,} characters")


# ---------------------------------------------------------------- digest
def test_digest_without_a_date_means_the_latest_day() -> None:
    assert parse("digest") == Command("digest")
    assert parse("digest   ").day is None


@pytest.mark.parametrize("text", ["digest 2025-05-16", "DIGEST 2025-05-16", "digest  2025-05-16 "])
def test_digest_with_a_date(text: str) -> None:
    assert parse(text) == Command("digest", day=date(2025, 5, 16))


@pytest.mark.parametrize("bad", ["yesterday", "2025-13-01", "2025-02-30", "16/05/2025", "2025-5"])
def test_digest_with_a_bad_date_explains_the_format(bad: str) -> None:
    _assert_help(parse(f"digest {bad}"), f"“{bad}”", "YYYY-MM-DD")


def test_digest_bad_date_problem_is_short() -> None:
    cmd = parse("digest " + "z" * 1_000)
    _assert_help(cmd, "YYYY-MM-DD")
    assert len(cmd.problem or "") < 120


# ---------------------------------------------------------------- subscriptions
@pytest.mark.parametrize("name", ["subscribe", "unsubscribe"])
def test_subscribe_for_the_user(name: str) -> None:
    assert parse(f"{name} diffusion models") == Command(name, "diffusion models", here=False)


@pytest.mark.parametrize("name", ["subscribe", "unsubscribe"])
@pytest.mark.parametrize("here", ["here", "HERE", "Here"])
def test_subscribe_here_is_for_the_channel(name: str, here: str) -> None:
    assert parse(f"{name} {here} diffusion models") == Command(name, "diffusion models", here=True)


@pytest.mark.parametrize(
    "text",
    [
        "sub   here    diffusion     models  ",
        "sub here diffusion\nmodels",
        "sub here  diffusion models",
    ],
)
def test_subscribe_topic_whitespace_is_collapsed(text: str) -> None:
    assert parse(text) == Command("subscribe", "diffusion models", here=True)


@pytest.mark.parametrize("name", ["subscribe", "unsubscribe"])
@pytest.mark.parametrize("rest", ["", "here", "  here  ", "HERE"])
def test_subscribe_without_a_topic_asks_for_one(name: str, rest: str) -> None:
    _assert_help(parse(f"{name} {rest}"), f"`{name}` needs a topic")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("subscribe heretics", Command("subscribe", "heretics")),
        ("subscribe hereditary diseases", Command("subscribe", "hereditary diseases")),
        ("subscribe here\tdiffusion", Command("subscribe", "diffusion", here=True)),
    ],
)
def test_subscribe_here_is_a_whole_word(text: str, expected: Command) -> None:
    assert parse(text) == expected


def test_topic_length_limit() -> None:
    at_limit = "t" * MAX_TOPIC_CHARS
    assert parse(f"subscribe {at_limit}") == Command("subscribe", at_limit)
    _assert_help(parse(f"subscribe {at_limit}t"), f"under {MAX_TOPIC_CHARS} characters")
    _assert_help(parse(f"unsubscribe here {at_limit}t"), f"under {MAX_TOPIC_CHARS} characters")


def test_parse_never_raises_on_odd_input() -> None:
    odd = ["<@U123> ask x", "ask <!channel>", "digest \x00", "sub here \u200b", "🙂", "ask 🙂"]
    for text in odd:
        cmd = parse(text)
        assert cmd.name in SUBCOMMANDS
        assert cmd.name == "help" or cmd.problem is None


def test_digest_takes_a_day_and_a_topic() -> None:
    from datetime import date

    from bot.slack.slash import parse

    cmd = parse("digest 2025-05-16 Gaussian splatting")
    assert cmd.name == "digest" and cmd.day == date(2025, 5, 16)
    assert cmd.argument == "Gaussian splatting"
    assert parse("digest 2025-05-16").argument in ("", None)
