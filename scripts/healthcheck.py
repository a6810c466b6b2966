"""Container health check: GET /healthz of the `paperbot serve` in this container.

Docker's HEALTHCHECK runs it (no curl in the slim image). The port follows the mode `serve`
picks: Socket Mode (SLACK_APP_TOKEN set) serves health on PAPERBOT_HEALTH_PORT (default 3001;
0 = off, then there is nothing to check), HTTP mode on PAPERBOT_HTTP_PORT (default 3000).
Exit 0 when it answers 200, else 1 with one line saying why.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request


def health_url(env: dict[str, str]) -> str | None:
    if env.get("SLACK_APP_TOKEN"):
        port = env.get("PAPERBOT_HEALTH_PORT") or "3001"
    else:
        port = env.get("PAPERBOT_HTTP_PORT") or "3000"
    if port.strip() == "0":
        return None
    return f"http://127.0.0.1:{port.strip()}/healthz"


def main() -> int:
    url = health_url(dict(os.environ))
    if url is None:
        print("health server off (PAPERBOT_HEALTH_PORT=0); nothing to check")
        return 0
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            status = response.status
    except (urllib.error.URLError, OSError) as e:
        print(f"unhealthy: {url}: {e}")
        return 1
    if status != 200:
        print(f"unhealthy: {url} answered {status}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
