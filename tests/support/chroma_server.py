"""A real `chroma run` server on 127.0.0.1 for the store tests (started and stopped by
fixtures), and `AuthProxy`, a token check in front of it."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def chroma_executable() -> str:
    beside_python = Path(sys.executable).parent / "chroma"
    found = str(beside_python) if beside_python.exists() else shutil.which("chroma")
    if not found:
        raise RuntimeError("the `chroma` command (from the chromadb package) is not installed")
    return found


class ChromaServer:
    """`chroma run --path DIR --host 127.0.0.1 --port PORT`; restartable on the same port."""

    def __init__(self, path: Path, port: int | None = None) -> None:
        self.path = path
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None, "server not started"
        return self._proc.pid

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        log_path = self.path.parent / f"chroma-{self.port}.log"
        with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            command = [chroma_executable(), "run", "--path", str(self.path)]
            command += ["--host", self.host, "--port", str(self.port)]
            self._proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"chroma run exited with {self._proc.returncode}; see {log_path}"
                )
            try:
                if httpx.get(f"{self.url}/api/v2/heartbeat", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"chroma run did not answer on {self.url} within {timeout} s")

    def stop(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None


class AuthProxy:
    """A token check in front of a `chroma run`, as a secured or hosted Chroma has one.

    The open-source Chroma 1.x server has no authentication of its own (Chroma's docs put a
    proxy such as Envoy in front of it); this one lets a request through to ``upstream``
    only when it carries ``header: value`` (e.g. ``Authorization: Bearer t0ken``) and
    answers 401 otherwise. It records the headers it saw (``seen``) for the tests.
    """

    def __init__(self, upstream: str, header: str, value: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.header = header
        self.value = value
        self.seen: list[dict[str, str]] = []
        self.refused = 0
        self._client = httpx.Client(timeout=30)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        assert self._httpd is not None, "proxy not started"
        return int(self._httpd.server_address[1])

    def url_in(self, text: str) -> bool:
        """Whether a message names this proxy as the server."""
        return f"{self.host}:{self.port}" in text

    def start(self) -> AuthProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                proxy._forward(self)

            do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

            def log_message(self, format: str, *args: object) -> None:
                return

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._client.close()
        self._httpd = self._thread = None

    def __enter__(self) -> AuthProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _forward(self, ex: BaseHTTPRequestHandler) -> None:
        length = int(ex.headers.get("content-length") or 0)
        body = ex.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in ex.headers.items()}
        self.seen.append(headers)
        if headers.get(self.header.lower()) != self.value:
            self.refused += 1
            self._answer(ex, 401, b'{"error":"Unauthorized","message":"missing or bad token"}')
            return
        forwarded = {k: v for k, v in headers.items() if k not in _HOP_BY_HOP}
        response = self._client.request(
            ex.command, self.upstream + ex.path, content=body, headers=forwarded
        )
        self._answer(
            ex, response.status_code, response.content, response.headers.get("content-type")
        )

    @staticmethod
    def _answer(
        ex: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str | None = None
    ) -> None:
        ex.send_response(status)
        ex.send_header("content-type", content_type or "application/json")
        ex.send_header("content-length", str(len(body)))
        ex.end_headers()
        ex.wfile.write(body)


_HOP_BY_HOP = {"host", "content-length", "connection", "keep-alive", "transfer-encoding"}
