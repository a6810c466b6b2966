"""The deploy path: the lock, the Dockerfile's build steps, compose.yaml, the health check.

There is no Docker daemon on the build machine, so: compose.yaml is validated by the compose
CLI's own `config` (which needs no daemon; skipped with a reason when no compose CLI is
installed — .ci/run installs Debian's docker-compose), and the Dockerfile's steps are replayed
by scripts/check_docker_build.py (a fresh venv from constraints.txt, the tiktoken bake, an
offline ingest + ask). That replay takes about two minutes, so here it runs only with
DEPLOY_BUILD_CHECK=1; .ci/run runs it after the test suite.
"""

from __future__ import annotations

import hashlib
import http.server
import importlib.metadata
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from retrieval.tokens import BUNDLED
from tests.support.slack_api import FakeSlackAPI

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"


def _load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"deploy_{name}", SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*==[^\s=]+", line), (
            f"constraints.txt line {line!r} is not an exact pin; run `make lock`"
        )
        name, version = line.split("==")
        pins[_normalise(name)] = version
    return pins


# ---------------------------------------------------------------- the lock


def test_every_dependency_is_pinned_and_installed_at_its_pin() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements.extend(extra)
    pins = _pins()
    names = [_normalise(re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0]) for req in requirements]
    missing = [name for name in names if name not in pins]
    assert not missing, f"not in constraints.txt: {missing}; run `make lock`"
    assert "paperbot" not in pins and "pip" not in pins and "setuptools" not in pins
    # The tests run with exactly the locked versions (the Makefile installs with -c).
    off = {
        name: (importlib.metadata.version(name), pin)
        for name, pin in pins.items()
        if importlib.metadata.version(name) != pin
    }
    assert not off, f"installed != constraints.txt (installed, pin): {off}; `make venv`"


def test_makefile_installs_with_the_lock_and_can_refresh_it() -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    venv = subprocess.run(
        ["make", "-n", "-B", "venv", "VENV=/nonexistent-venv"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    install = [line for line in venv.splitlines() if "pip install" in line and "-e" in line]
    assert install and all("-c constraints.txt" in line for line in install), venv
    lock = subprocess.run(
        ["make", "-n", "lock", "VENV=/nonexistent-venv"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "pip freeze --exclude-editable" in lock and "constraints.txt" in lock, lock


# ---------------------------------------------------------------- Dockerfile


def test_dockerfile_builds_from_the_lock_runs_as_a_user_and_checks_health() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    # The steps scripts/check_docker_build.py replays (keep the two in step).
    assert "pip install -c constraints.txt -r requirements.txt" in text
    assert "pip install --no-deps -c constraints.txt ." in text and "pip check" in text
    assert "[dev]" not in text
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^ENV PAPERBOT_TIKTOKEN_CACHE_DIR=(\S+)", text, re.M)
    assert "bake_offline.py" in text
    assert re.search(r"PAPERBOT_DATA_DIR=/data", text) and 'VOLUME ["/data"]' in text
    assert re.search(r"^HEALTHCHECK .*\n?.*healthcheck\.py", text, re.M)
    assert re.search(r'^CMD \["paperbot", "serve"\]', text, re.M)


def test_dockerfile_requirements_step_lists_the_runtime_dependencies(tmp_path: Path) -> None:
    text = (ROOT / "Dockerfile").read_text()
    match = re.search(r'^RUN (python -c ".*" > requirements\.txt)', text, re.M)
    assert match, "the Dockerfile's dependency layer step is missing"
    shutil.copy2(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    subprocess.run(["sh", "-c", match.group(1)], cwd=tmp_path, env=env, check=True)
    written = (tmp_path / "requirements.txt").read_text().split()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # the runtime dependencies and the PostgreSQL driver (one image for both backends)
    dependencies = project["dependencies"] + project["optional-dependencies"]["postgres"]
    assert written == dependencies and "pytest>=8" not in written
    # The replay writes the same file.
    (tmp_path / "requirements.txt").unlink()
    check = _load_script("check_docker_build")
    subprocess.run(
        [sys.executable, "-c", check.REQUIREMENTS_FROM_PYPROJECT], cwd=tmp_path, check=True
    )
    assert (tmp_path / "requirements.txt").read_text().split() == dependencies


def test_dockerfile_copies_exist_and_are_not_dockerignored() -> None:
    check = _load_script("check_docker_build")
    sources = check.copy_sources(ROOT / "Dockerfile")
    assert {"constraints.txt", "pyproject.toml", "bot", "retrieval", "answers", "prompts"} <= set(
        sources
    )
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not check.ignored(source, ROOT / ".dockerignore"), source
    # Data, secrets and the venv stay out of the build context.
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", ".venv", "paperbot-data", ".git"} <= set(ignored)


def test_bake_offline_writes_the_files_tiktoken_reads(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("TIKTOKEN_CACHE_DIR",)}
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "bake_offline.py"), str(tmp_path / "tiktoken")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    for name in ("cl100k_base", "o200k_base"):
        bundled = BUNDLED[name]
        baked = tmp_path / "tiktoken" / bundled.cache_name
        assert hashlib.sha256(baked.read_bytes()).hexdigest() == bundled.sha256


@pytest.mark.integration
@pytest.mark.timeout(900)
@pytest.mark.skipif(
    os.environ.get("DEPLOY_BUILD_CHECK") != "1",
    reason="replaying the Docker build takes ~2 min; set DEPLOY_BUILD_CHECK=1 (.ci/run runs it)",
)
def test_docker_build_steps_replayed_without_docker() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "check_docker_build.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all steps passed" in result.stdout


# ---------------------------------------------------------------- compose.yaml


def _compose_command() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


@pytest.fixture
def compose_config(tmp_path: Path) -> dict:
    command = _compose_command()
    if command is None:
        pytest.skip(
            "no compose CLI (docker compose / docker-compose) to validate compose.yaml; "
            "apt-get install docker-compose (.ci/run does)"
        )
    for name in ("compose.yaml", "Dockerfile"):
        shutil.copy2(ROOT / name, tmp_path / name)
    # As the README says: cp .env.example .env
    shutil.copy2(ROOT / ".env.example", tmp_path / ".env")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAPERBOT_", "SLACK_"))}
    result = subprocess.run(
        [*command, "-f", "compose.yaml", "config"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"{' '.join(command)} config failed:\n{result.stderr}"
    config = yaml.safe_load(result.stdout)
    assert isinstance(config, dict)
    return config


@pytest.mark.integration
def test_compose_config_is_valid_and_wires_paperbot_to_chroma(compose_config: dict) -> None:
    services = compose_config["services"]
    assert set(services) == {"paperbot", "chroma"}
    bot, chroma = services["paperbot"], services["chroma"]
    for service in (bot, chroma):
        assert service["restart"] == "unless-stopped"
        assert service["healthcheck"]["test"][0] == "CMD"
        assert service["image"] == "paperbot:local"
    assert bot["depends_on"]["chroma"]["condition"] == "service_healthy"
    assert list(bot["command"]) == ["paperbot", "serve"]
    env = bot["environment"]
    assert env["PAPERBOT_CHROMA_HOST"] == "chroma"
    assert str(env["PAPERBOT_CHROMA_PORT"]) == "8000"
    assert env["PAPERBOT_DATA_DIR"] == "/data"
    assert env["PAPERBOT_FEEDS"] == "hf"  # a fresh volume gets papers unless .env names feeds
    # env_file: .env was read (a variable only .env.example sets).
    assert env["PAPERBOT_TICK_SECONDS"] == "30"
    assert "run" in chroma["command"] and "/chroma" in chroma["command"]
    assert "8000" in [str(part) for part in chroma["command"]]
    assert chroma.get("ports") in (None, [])  # the vector store is not published

    def volume_sources(service: dict) -> set[str]:
        sources = set()
        for volume in service["volumes"]:
            if isinstance(volume, str):
                sources.add(volume.split(":")[0])
            else:
                assert volume["type"] == "volume"
                sources.add(volume["source"])
        return sources

    assert volume_sources(bot) == {"paperbot-data"}
    assert volume_sources(chroma) == {"chroma-data"}
    assert {"paperbot-data", "chroma-data"} <= set(compose_config["volumes"])
    # HTTP mode's port is published on loopback only (a TLS proxy on the host fronts it).
    ports = bot["ports"]
    assert len(ports) == 1
    port = ports[0]
    if isinstance(port, str):
        assert port.removesuffix("/tcp") == "127.0.0.1:3000:3000"
    else:
        assert (port["host_ip"], str(port["published"]), port["target"]) == (
            "127.0.0.1",
            "3000",
            3000,
        )


# ---------------------------------------------------------------- the container health check


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthcheck(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PAPERBOT_", "SLACK_"))}
    return subprocess.run(
        [sys.executable, str(SCRIPTS / "healthcheck.py")],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_healthcheck_follows_the_mode_serve_runs_in(
    health_server: http.server.HTTPServer,
) -> None:
    port = str(health_server.server_address[1])
    dead = str(_free_port())
    # HTTP mode: PAPERBOT_HTTP_PORT.
    assert _healthcheck({"PAPERBOT_HTTP_PORT": port}).returncode == 0
    down = _healthcheck({"PAPERBOT_HTTP_PORT": dead})
    assert down.returncode == 1 and down.stdout.startswith("unhealthy:")
    assert "Traceback" not in down.stdout + down.stderr
    # Socket Mode: the health side port, whatever the HTTP port says.
    socket_mode = {"SLACK_APP_TOKEN": "xapp-1", "PAPERBOT_HTTP_PORT": dead}
    assert _healthcheck({**socket_mode, "PAPERBOT_HEALTH_PORT": port}).returncode == 0
    assert _healthcheck({**socket_mode, "PAPERBOT_HEALTH_PORT": dead}).returncode == 1
    # A failing /healthz is unhealthy, not just an unreachable one.
    _Health.status = 503
    try:
        failing = _healthcheck({"PAPERBOT_HTTP_PORT": port})
    finally:
        _Health.status = 200
    assert failing.returncode == 1 and "503" in failing.stdout


def test_healthcheck_default_ports() -> None:
    healthcheck = _load_script("healthcheck")
    assert healthcheck.health_url({}) == "http://127.0.0.1:3000/healthz"
    assert healthcheck.health_url({"SLACK_APP_TOKEN": "x"}) == "http://127.0.0.1:3001/healthz"
    assert healthcheck.health_url({"SLACK_APP_TOKEN": "x", "PAPERBOT_HEALTH_PORT": "0"}) is None


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["http", "socket"])
def test_healthcheck_against_a_real_serve_as_the_container_runs_it(
    mode: str, tmp_path: Path, tiktoken_dir: Path
) -> None:
    """The container's settings: healthy while `serve` runs (HTTP mode: /healthz on the HTTP
    port; Socket Mode: on the health side port), unhealthy after SIGTERM stopped it."""
    from tests.support.socket_mode import FakeSocketModeServer

    picks = tmp_path / "picks.jsonl"
    picks.write_text('{"title": "A paper to serve", "abstract": "A paper about reranking."}')
    port = str(_free_port())
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PAPERBOT_", "SLACK_"))}
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        base.pop(name, None)
    with FakeSocketModeServer() as sm, FakeSlackAPI(socket_mode_url=sm.new_url) as api:
        env = {
            **base,
            "PAPERBOT_ENV_FILE": str(tmp_path / "absent.env"),
            "PAPERBOT_DATA_DIR": str(tmp_path / "data"),
            "PAPERBOT_TIKTOKEN_CACHE_DIR": str(tiktoken_dir),
            "PAPERBOT_FEEDS": f"file:{picks}",
            "PAPERBOT_HTTP_HOST": "127.0.0.1",
            "PAPERBOT_EMBEDDING_THREADS": "1",
            "SLACK_BOT_TOKEN": "xoxb-1-test",
            "PAPERBOT_SLACK_API_URL": api.base_url,
        }
        if mode == "http":
            env |= {"SLACK_SIGNING_SECRET": "secret", "PAPERBOT_HTTP_PORT": port}
        else:
            env |= {"SLACK_APP_TOKEN": "xapp-1-test", "PAPERBOT_HEALTH_PORT": port}
        process = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "serve"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            deadline = time.monotonic() + 120
            check = _healthcheck(env)
            while check.returncode != 0 and time.monotonic() < deadline:
                assert process.poll() is None, process.communicate()[0]
                time.sleep(0.5)
                check = _healthcheck(env)
            assert check.returncode == 0, check.stdout
            assert check.stdout == ""
            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=90)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    # It stopped by itself (not killed), with exit 0 in both modes: systemd marks a unit whose
    # stop exits non-zero as failed.
    assert process.returncode == 0, output
    assert "stopped" in output and "Traceback" not in output
    after = _healthcheck(env)
    assert after.returncode == 1 and after.stdout.startswith("unhealthy:"), after.stdout
    assert f":{port}/healthz" in after.stdout
