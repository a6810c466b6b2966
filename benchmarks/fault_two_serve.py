"""Two `paperbot serve` instances sharing one data dir: each digest is posted once.

A fake Slack Web API runs inside this script (tests/support/slack_api.py). On a fresh data dir:

1. ``paperbot ingest data/sample/daily_papers_page.txt --date TODAY`` (TODAY = the UTC date, so
   that the 30 sample papers are the day whose digest is due: the scheduler's digest day is
   the local date of the schedule's time zone);
2. ``paperbot schedule add C0DIGEST1 --time 00:00 --tz UTC`` and the same for C0DIGEST2, so
   both digests are due at once;
3. two ``paperbot serve`` processes in HTTP mode started back to back (different
   PAPERBOT_HTTP_PORT, the same PAPERBOT_DATA_DIR, PAPERBOT_TICK_SECONDS=1,
   PAPERBOT_SLACK_API_URL = the fake; every chat.postMessage is delayed by ``--post-delay`` so
   a digest takes a while to post and the other instance ticks meanwhile);
4. once both digests are marked posted in the bot's store (``bot.sqlite3`` in the data dir;
   at most ``--timeout`` s) and both instances ran together for at least ``--wait`` s (and 3
   more ticks after the posts): parent digest messages per channel (must be exactly 1 each)
   and replies per thread (no reply twice); both processes are killed (SIGKILL);
5. one instance is started again and left running for ``--after`` seconds: still 1 each,
   nothing new posted.

Building a digest takes a while (TL;DRs and topic groups of 30 papers with the local MiniLM:
~6 s alone, ~14 s when both instances build at once on 2 cores), so a fixed 15 s window can
end before anything was posted; hence the wait for the "posted" state. Exit 1 on failure.

With ``--crash-mid-post`` the two instances are instead SIGKILLed while the digests are half
posted (after the fake took ``--kill-after-posts`` messages), with a short digest lease
(``--lease``, PAPERBOT_DIGEST_LEASE_SECONDS), and one instance is restarted: once the dead
claims expire it posts the digests; there must still be one parent per channel.

    python benchmarks/fault_two_serve.py                    # ~45 s
    python benchmarks/fault_two_serve.py --post-delay 0 --wait 5
    python benchmarks/fault_two_serve.py --crash-mid-post   # ~60 s
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from benchmarks.common import (
    PAPERBOT,
    SAMPLE_PAGE,
    WORK,
    free_port,
    fresh_dir,
    log,
    md_table,
    paperbot_env,
    save_results,
)
from bot.slack.store import FILENAME as BOT_STORE_FILE
from tests.support.slack_api import FakeSlackAPI

CHANNELS = ("C0DIGEST1", "C0DIGEST2")
BOT_TOKEN = "xoxb-1-fault-two-serve"
SIGNING_SECRET = "two-serve-signing-secret-0000000"
SKIP_LINE = re.compile(r"already posted or\s+being posted; skipping")


def cli(args: list[str], env: dict[str, str], cwd: Path) -> str:
    result = subprocess.run(
        [*PAPERBOT, "-q", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise SystemExit(f"paperbot {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout.strip()


class Instance:
    """One `paperbot serve` in HTTP mode, its log in a file."""

    def __init__(self, name: str, env: dict[str, str], cwd: Path, api_url: str) -> None:
        self.name = name
        self.port = free_port()
        self.log_path = cwd / f"serve-{name}.log"
        self.env = env | {
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "PAPERBOT_SLACK_API_URL": api_url,
            "PAPERBOT_HTTP_HOST": "127.0.0.1",
            "PAPERBOT_HTTP_PORT": str(self.port),
            "PAPERBOT_TICK_SECONDS": "1",
            "COLUMNS": "250",  # one log record per line
        }
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.healthy_after: float | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [*PAPERBOT, "serve"],
                env=self.env,
                cwd=self.cwd,
                stdout=out,
                stderr=out,
            )
        self.started = time.monotonic()

    def poll_health(self) -> bool:
        if self.healthy_after is not None:
            return True
        try:
            ok = httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False
        if ok:
            self.healthy_after = time.monotonic() - self.started
        return ok

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self) -> None:
        """SIGTERM, as `docker stop` and systemd send it (the process exits by itself)."""
        if self.alive():
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGTERM)

    def skips(self) -> int:
        return len(SKIP_LINE.findall(self.log_path.read_text(errors="replace")))


def wait_healthy(instances: list[Instance], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(i.poll_health() for i in instances):
            return
        dead = [i for i in instances if not i.alive()]
        if dead:
            raise SystemExit(f"serve {dead[0].name} exited; see {dead[0].log_path}")
        time.sleep(0.1)
    raise SystemExit("the serve processes did not answer /healthz in time")


def count(api: FakeSlackAPI) -> dict[str, dict[str, Any]]:
    """Per channel: digest parents, replies per parent, replies posted twice."""
    out: dict[str, dict[str, Any]] = {}
    for channel in CHANNELS:
        messages = api.messages(channel)
        parents = [m for m in messages if not m.is_reply]
        replies = [m for m in messages if m.is_reply]
        texts = Counter((m.thread_ts, m.text) for m in replies)
        out[channel] = {
            "parents": len(parents),
            "replies": len(replies),
            "duplicate_replies": sum(n - 1 for n in texts.values() if n > 1),
        }
    return out


def digest_rows(state_file: Path) -> list[dict[str, Any]]:
    try:
        with sqlite3.connect(f"file:{state_file}?mode=ro", uri=True, timeout=5) as db:
            db.row_factory = sqlite3.Row
            sql = "SELECT channel, day, status, owner, ts, claimed_at FROM digest_posts"
            return [dict(r) for r in db.execute(sql).fetchall()]
    except sqlite3.Error:
        return []


def wait_posted(state_file: Path, start: float, timeout: float) -> float | None:
    """Seconds from `start` until every channel's digest is marked posted (None: timeout)."""
    while time.monotonic() - start < timeout:
        rows = digest_rows(state_file)
        if len(rows) == len(CHANNELS) and all(r["status"] == "posted" for r in rows):
            return round(time.monotonic() - start, 1)
        time.sleep(0.2)
    return None


Check = tuple[str, bool, str]


def once_per_channel(
    counts: dict[str, dict[str, Any]], when: str, details: dict[str, str]
) -> list[Check]:
    """Per channel: exactly one digest parent (`details` says more), no reply posted twice."""
    checks: list[Check] = []
    for c in CHANNELS:
        checks.append((f"{c}: one digest parent {when}", counts[c]["parents"] == 1, details[c]))
        duplicates = counts[c]["duplicate_replies"]
        checks.append(
            (f"{c}: no reply posted twice", duplicates == 0, f"{duplicates} duplicate(s)")
        )
    return checks


def race(args: argparse.Namespace, api: FakeSlackAPI, env: dict[str, str], work: Path) -> Any:
    """Both instances at once until the digests are posted; then kill both, restart one."""
    state_file = work / "data" / BOT_STORE_FILE
    instances = [Instance(n, env, work, api.base_url) for n in ("A", "B")]
    try:
        for instance in instances:
            instance.start()
        start = time.monotonic()
        wait_healthy(instances)
        log("both serving: " + ", ".join(f"{i.name} pid {i.pid}" for i in instances))
        posted_after = wait_posted(state_file, start, args.timeout)
        log(f"both digests marked posted {posted_after} s after the start")
        time.sleep(max(3.0, args.wait - (time.monotonic() - start)))  # >= 3 more ticks
        both = count(api)
        together = time.monotonic() - start
        posts_both = len(api.calls_to("chat.postMessage", ok=True))
        skips = {i.name: i.skips() for i in instances}
        owners = {str(i.pid): i.name for i in instances}
        rows = digest_rows(state_file)
        alive = {i.name: i.alive() for i in instances}
        for instance in instances:
            instance.kill()
        log(f"after {together:.0f} s with two instances: {both}; skip lines {skips}")

        again = Instance("A2", env, work, api.base_url)
        instances.append(again)
        again.start()
        wait_healthy([again])
        time.sleep(args.after)
        after = count(api)
        posts_after = len(api.calls_to("chat.postMessage", ok=True)) - posts_both
        again_alive = again.alive()
        log(f"after the restart ({args.after:.0f} s): {after}; {posts_after} new posts")
    finally:
        for instance in instances:
            instance.kill()

    winners = {r["channel"]: owners.get(str(r["owner"]).rsplit(":", 1)[-1], "?") for r in rows}
    checks: list[Check] = [
        ("both instances were serving at the count", all(alive.values()), str(alive)),
        ("the digests were posted in time", posted_after is not None, f"{posted_after} s"),
    ]
    checks += once_per_channel(
        both,
        "with two instances",
        {
            c: f"{both[c]['parents']} parent(s), {both[c]['replies']} replies, "
            f"posted by {winners.get(c, '?')}"
            for c in CHANNELS
        },
    )
    checks.append(
        (
            "state: every digest marked posted",
            bool(rows) and all(r["status"] == "posted" for r in rows),
            ", ".join(f"{r['channel']} {r['day']} {r['status']}" for r in rows),
        )
    )
    checks.append(("restarted instance was serving", again_alive, ""))
    for c in CHANNELS:
        checks.append(
            (
                f"{c}: still one parent after the restart",
                after[c] == both[c],
                f"{after[c]['parents']} parent(s), {after[c]['replies']} replies",
            )
        )
    checks.append(("nothing posted after the restart", posts_after == 0, f"{posts_after} posts"))
    notes = [
        f"Both digests were marked posted {posted_after} s after the two started; the instances "
        f"ran together for {together:.0f} s.",
        "Ready (/healthz) after: "
        + ", ".join(f"{i.name} {i.healthy_after:.1f} s" for i in instances if i.healthy_after)
        + f". 'already posted or being posted; skipping' log lines: {skips}.",
    ]
    data = {"both": both, "after": after, "skips": skips, "rows": rows}
    return checks, notes, data


def crash(args: argparse.Namespace, api: FakeSlackAPI, env: dict[str, str], work: Path) -> Any:
    """Both instances SIGKILLed once the fake has taken ``--kill-after-posts`` digest messages
    (a digest half posted: its parent and maybe some replies); one restarted: once the dead
    claims' lease ran out it posts the digests. Exactly one parent per channel?

    Messages in flight at the kill (taken by the fake, answer not yet read by the killed
    process) are part of the fault: Slack, too, may act on a request whose answer is lost.

    With ``--stop-mid-post`` both get SIGTERM instead (a deploy) and keep the default lease
    (600 s): the restarted one must post at once, since a stopping `serve` gives its digest
    back; the stopped ones must exit 0."""
    state_file = work / "data" / BOT_STORE_FILE
    if not args.stop_mid_post:
        env = env | {"PAPERBOT_DIGEST_LEASE_SECONDS": str(args.lease)}
    instances = [Instance(n, env, work, api.base_url) for n in ("A", "B")]
    stopped: list[tuple[str, int | None, float]] = []
    try:
        for instance in instances:
            instance.start()
        wait_healthy(instances)
        api.wait_for("chat.postMessage", args.kill_after_posts, timeout=args.timeout, ok=True)
        for instance in instances:
            instance.terminate() if args.stop_mid_post else instance.kill()
        for instance in instances:
            assert instance.proc is not None
            began = time.monotonic()
            code = instance.proc.wait(60)
            stopped.append((instance.name, code, round(time.monotonic() - began, 1)))
        rows_at_kill = digest_rows(state_file)
        time.sleep(args.post_delay + 0.3)  # requests in flight at the kill reach the fake
        at_kill = count(api)
        log(f"killed both after {args.kill_after_posts} posts: {at_kill}")
        again = Instance("A2", env, work, api.base_url)
        instances.append(again)
        start = time.monotonic()
        again.start()
        wait_healthy([again])
        posted_after = wait_posted(state_file, start, args.lease + args.timeout)
        time.sleep(3.0)
        after = count(api)
        log(f"restarted; digests posted after {posted_after} s: {after}")
    finally:
        for instance in instances:
            instance.kill()
    checks: list[Check] = [
        ("the restarted instance posted the digests", posted_after is not None, f"{posted_after} s")
    ]
    if args.stop_mid_post:
        checks += [
            (f"{name} stopped on SIGTERM with exit 0", code == 0, f"exit {code} in {took} s")
            for name, code, took in stopped
        ]
    checks += once_per_channel(
        after,
        "after the crash and the restart",
        {
            c: f"at the kill {at_kill[c]['parents']} parent(s) / {at_kill[c]['replies']} "
            f"replies; now {after[c]['parents']} / {after[c]['replies']}"
            for c in CHANNELS
        },
    )
    lease = "600 s (the default)" if args.stop_mid_post else f"{args.lease:.0f} s"
    notes = [
        f"Lease {lease} (PAPERBOT_DIGEST_LEASE_SECONDS). State at the stop: "
        + ", ".join(f"{r['channel']} {r['status']}" for r in rows_at_kill)
        + "."
    ]
    return checks, notes, {"at_kill": at_kill, "after": after, "rows_at_kill": rows_at_kill}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--wait", type=float, default=15.0, help="least seconds both instances run together"
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="most seconds to wait for the digests"
    )
    parser.add_argument("--after", type=float, default=6.0, help="seconds the restarted one runs")
    parser.add_argument(
        "--post-delay", type=float, default=0.3, help="delay of every chat.postMessage (s)"
    )
    parser.add_argument(
        "--crash-mid-post",
        action="store_true",
        help="instead: kill both while a digest is half posted, restart one",
    )
    parser.add_argument(
        "--stop-mid-post",
        action="store_true",
        help="as --crash-mid-post, with SIGTERM (a deploy) instead of SIGKILL, default lease",
    )
    parser.add_argument(
        "--kill-after-posts",
        type=int,
        default=2,
        help="in --crash-mid-post: kill once the fake took this many messages",
    )
    parser.add_argument(
        "--lease", type=float, default=30.0, help="digest lease in --crash-mid-post"
    )
    args = parser.parse_args(argv)
    args.crash_mid_post = args.crash_mid_post or args.stop_mid_post

    name = "fault_two_serve_crash" if args.crash_mid_post else "fault_two_serve"
    work = fresh_dir(WORK / name)
    env = paperbot_env(work / "data")
    today = datetime.now(UTC).date()
    log(f"ingest the sample as {today} into {work / 'data'}")
    cli(["ingest", str(SAMPLE_PAGE), "--date", today.isoformat()], env, work)
    for channel in CHANNELS:
        log(cli(["schedule", "add", channel, "--time", "00:00", "--tz", "UTC"], env, work))

    with FakeSlackAPI() as api:
        if args.post_delay:
            api.delay_next("chat.postMessage", args.post_delay, times=10_000)
        scenario = crash if args.crash_mid_post else race
        checks, notes, data = scenario(args, api, env, work)

    ok = all(passed for _, passed, _ in checks)
    title = "crashed mid-post, one restarted" if args.crash_mid_post else "one state store"
    if args.stop_mid_post:
        title = "stopped (SIGTERM) mid-post, one restarted"
    report = "\n\n".join(
        [
            f"# Two `paperbot serve` instances, {title} ({today}, "
            f"chat.postMessage delay {args.post_delay} s)",
            *notes,
            md_table(
                ["check", "result", "detail"], [[n, "ok" if p else "FAIL", d] for n, p, d in checks]
            ),
            f"Verdict: {'EXACTLY ONCE' if ok else 'FAILED'}.",
        ]
    )
    print(report)
    save_results(name, {**data, "ok": ok}, report)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
