"""Replay the Dockerfile's build steps without Docker, then use the result offline.

    .venv/bin/python scripts/check_docker_build.py [--keep]

For a build machine without a Docker daemon. In a temporary directory it:

1. builds the context the Dockerfile's COPY lines name (checking each exists and that
   .dockerignore does not drop it);
2. runs the same install as the Dockerfile: a fresh venv, pyproject.toml's dependencies
   with ``pip install -c constraints.txt -r requirements.txt``, then the code with
   ``pip install --no-deps -c constraints.txt .`` and ``pip check`` (no dev extras), and checks every installed version is the lock's and
   that no dev tool (pytest, ruff, mypy) came along;
3. bakes the tiktoken files with scripts/bake_offline.py, as the Dockerfile does;
4. with the network cut (a network namespace without interfaces, ``unshare -n``, when this
   runs as root; otherwise dead proxies), runs the installed ``paperbot`` on the sample day:
   ingest, then ask, with PAPERBOT_TIKTOKEN_CACHE_DIR at the baked files and a fresh data dir;
   and checks ``chroma`` (compose.yaml's vector store service) is installed.

Prints one line per step with its time; exit status 1 and the failing step otherwise.
Not covered: the base image (python:3.11-slim), the non-root user, the HEALTHCHECK and
VOLUME instructions, which only Docker can run.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEV_TOOLS = ("pytest", "ruff", "mypy")
SAMPLE = ROOT / "data" / "sample" / "daily_papers_page.txt"
SAMPLE_DATE = "2025-05-16"
QUESTION = "Which papers study parameter-efficient fine-tuning with LoRA?"
# The Dockerfile's `python -c "…" > requirements.txt`, writing the file itself.
REQUIREMENTS_FROM_PYPROJECT = (
    "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; "
    "open('requirements.txt', 'w').write("
    "'\\n'.join(p['dependencies'] + p['optional-dependencies']['postgres']) + '\\n')"
)


class StepFailed(Exception):
    pass


def copy_sources(dockerfile: Path) -> list[str]:
    """The sources of the Dockerfile's COPY lines (no --from stages here)."""
    sources: list[str] = []
    text = dockerfile.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0].upper() == "COPY":
            args = [p for p in parts[1:] if not p.startswith("--")]
            sources.extend(args[:-1])
    return sources


def ignored(source: str, dockerignore: Path) -> bool:
    """Whether a top-level .dockerignore pattern drops `source` (the patterns used here)."""
    top = source.strip("./").split("/")[0]
    patterns = [
        line.strip()
        for line in dockerignore.read_text().splitlines()
        if line.strip() and not line.startswith("#") and not line.startswith("!")
    ]
    return any(p.rstrip("/") == top for p in patterns)


def run(cmd: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-15:]
        raise StepFailed(f"{' '.join(cmd)} exited {result.returncode}:\n" + "\n".join(tail))
    return result.stdout


def lock_pins(constraints: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in constraints.read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return pins


def offline_env(base: dict[str, str], data_dir: Path, tiktoken_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in base.items() if not k.startswith(("PAPERBOT_", "SLACK_"))}
    for var in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR", "NO_PROXY", "no_proxy"):
        env.pop(var, None)
    dead = "http://127.0.0.1:9"
    env.update(
        HTTP_PROXY=dead,
        HTTPS_PROXY=dead,
        http_proxy=dead,
        https_proxy=dead,
        HF_HUB_OFFLINE="1",
        ANONYMIZED_TELEMETRY="False",
        PAPERBOT_DATA_DIR=str(data_dir),
        PAPERBOT_TIKTOKEN_CACHE_DIR=str(tiktoken_dir),
        PAPERBOT_ENV_FILE=str(data_dir / "absent.env"),
        PAPERBOT_LLM_PROVIDER="extractive",
        PAPERBOT_EMBEDDING_THREADS="1",
    )
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="paperbot-docker-check-"))
    started = time.monotonic()
    step_start = started

    def done(step: str) -> None:
        nonlocal step_start
        now = time.monotonic()
        print(f"ok   {step} ({now - step_start:.1f} s)", flush=True)
        step_start = now

    try:
        # 1. the build context
        dockerfile = ROOT / "Dockerfile"
        context = tmp / "context"
        context.mkdir()
        for source in copy_sources(dockerfile):
            path = ROOT / source
            if not path.exists():
                raise StepFailed(f"COPY {source}: no such file in the repository")
            if ignored(source, ROOT / ".dockerignore"):
                raise StepFailed(f"COPY {source}: .dockerignore excludes it from the context")
            target = context / source
            target.parent.mkdir(parents=True, exist_ok=True)
            if path.is_dir():
                shutil.copytree(path, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(path, target)
        done(f"build context from the COPY lines ({len(copy_sources(dockerfile))} sources)")

        # 2. RUN python -m venv /opt/venv; the dependency layer; then the code, --no-deps.
        venv = tmp / "venv"
        run([sys.executable, "-m", "venv", str(venv)], cwd=tmp)
        python = venv / "bin" / "python"
        run([str(python), "-c", REQUIREMENTS_FROM_PYPROJECT], cwd=context)
        pip = [str(python), "-m", "pip", "install", "--quiet", "-c", "constraints.txt"]
        run([*pip, "-r", "requirements.txt"], cwd=context)
        done("pip install -c constraints.txt -r requirements.txt (fresh venv, dependencies)")
        run([*pip, "--no-deps", "."], cwd=context)
        run([str(python), "-m", "pip", "check"], cwd=context)
        done("pip install --no-deps -c constraints.txt .; pip check")
        freeze = run([str(python), "-m", "pip", "freeze"], cwd=tmp)
        pins = lock_pins(ROOT / "constraints.txt")
        installed = {
            re.sub(r"[-_.]+", "-", name).lower(): version
            for name, _, version in (line.partition("==") for line in freeze.splitlines())
            if version
        }
        off_lock = {
            name: (version, pins.get(name))
            for name, version in installed.items()
            if name != "paperbot" and pins.get(name) != version
        }
        if off_lock:
            raise StepFailed(f"installed versions not in constraints.txt: {off_lock}")
        dev = [tool for tool in DEV_TOOLS if tool in installed]
        if dev:
            raise StepFailed(f"dev tools installed without the dev extra: {dev}")
        done(f"{len(installed)} packages, all at the lock's versions; no {', '.join(DEV_TOOLS)}")

        # 3. RUN python /opt/paperbot/bake_offline.py /opt/paperbot/tiktoken (from /)
        tiktoken_dir = tmp / "tiktoken"
        print(
            "     "
            + run(
                [str(python), str(ROOT / "scripts" / "bake_offline.py"), str(tiktoken_dir)],
                cwd=Path("/"),
            ).strip()
        )
        run([str(venv / "bin" / "paperbot"), "--help"], cwd=Path("/"))
        done("bake_offline.py; paperbot --help")

        # 4. offline use of the installed app
        if not (venv / "bin" / "chroma").exists():
            raise StepFailed("the `chroma` command (compose.yaml's chroma service) is missing")
        data_dir = tmp / "data"
        env = offline_env(dict(os.environ), data_dir, tiktoken_dir)
        cut = ["unshare", "-n"] if os.geteuid() == 0 and shutil.which("unshare") else []
        paperbot = str(venv / "bin" / "paperbot")
        run([*cut, paperbot, "ingest", str(SAMPLE), "--date", SAMPLE_DATE], cwd=Path("/"), env=env)
        answer = run([*cut, paperbot, "ask", QUESTION], cwd=Path("/"), env=env)
        if "LoRA" not in answer or "[1]" not in answer:
            raise StepFailed(f"the offline answer has no cited LoRA paper:\n{answer[:600]}")
        how = "network namespace without interfaces" if cut else "dead proxies"
        done(f"offline ({how}): ingest the sample day, ask → cited answer")
        print(f"all steps passed in {time.monotonic() - started:.1f} s")
        return 0
    except StepFailed as e:
        print(f"FAIL {e}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
