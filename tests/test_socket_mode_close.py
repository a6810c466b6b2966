"""Stopping Socket Mode right after a connect: slack_sdk's built-in client can hang in
``close()`` (its session thread clears ``terminated`` after close set it, then loops on the
closed socket while close joins it). `close_socket_mode` must return anyway. The race is
forced here, with the real client against the fake Socket Mode server, by holding the
session thread at its "Starting to receive messages" log line until close has run."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk import WebClient

from bot.slack.socket_mode import close_socket_mode
from tests.support.slack_api import FakeSlackAPI
from tests.support.socket_mode import FakeSocketModeServer

pytestmark = pytest.mark.integration


class _HeldStart(logging.Logger):
    """A logger that holds the session thread at the start of a session until the client
    was closed (a log handler's lock held by the stopping thread does the same in `serve`)."""

    def __init__(self) -> None:
        super().__init__("paperbot-test-socket-mode", logging.INFO)
        self.client: Any = None
        self.held = threading.Event()

    def info(self, msg: object, *args: object, **kwargs: Any) -> None:
        if str(msg).startswith("Starting to receive messages") and self.client is not None:
            self.held.set()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not (
                self.client.closed and self.client.current_session_state.terminated
            ):
                time.sleep(0.01)
            time.sleep(0.3)  # close() has disconnected and is joining the session thread


def _connected(api: FakeSlackAPI, sm: FakeSocketModeServer) -> tuple[SocketModeHandler, Any]:
    app = App(
        client=WebClient(token="xoxb-1-test", base_url=api.base_url),
        token_verification_enabled=False,
    )
    logger = _HeldStart()
    handler = SocketModeHandler(app, app_token="xapp-1-test", logger=logger)
    handler.client.default_auto_reconnect_enabled = False
    logger.client = handler.client
    handler.connect()
    sm.wait_for_connection()
    assert logger.held.wait(5), "the session thread never started on the connection"
    return handler, logger


def test_plain_close_hangs_in_the_race_close_socket_mode_does_not() -> None:
    with FakeSocketModeServer() as sm, FakeSlackAPI(socket_mode_url=sm.new_url) as api:
        # the library's own close(): still joining the session thread after 5 s
        handler, _ = _connected(api, sm)
        plain = threading.Thread(target=handler.close, daemon=True)
        plain.start()
        plain.join(5)
        assert plain.is_alive(), "the race did not reproduce: plain close() returned"
        handler.client.current_session_state.terminated = True  # let it go
        plain.join(5)
        assert not plain.is_alive()

        handler, _ = _connected(api, sm)
        start = time.monotonic()
        assert close_socket_mode(handler, timeout=10)
        assert time.monotonic() - start < 8
        assert not handler.client.current_session_runner.is_alive()


def test_close_socket_mode_gives_up_after_its_timeout(caplog: pytest.LogCaptureFixture) -> None:
    class _Stuck:
        client = type("C", (), {"closed": True, "current_session_state": None})()

        def close(self) -> None:
            time.sleep(3)

    start = time.monotonic()
    with caplog.at_level(logging.WARNING):
        assert close_socket_mode(_Stuck(), timeout=0.3) is False
    assert time.monotonic() - start < 2
    assert "did not close within" in caplog.text
