"""Closing Slack's built-in Socket Mode client without hanging `serve`'s stop.

slack_sdk's built-in client (the default of slack_bolt's ``SocketModeHandler``) reads the
connection in a session thread that, each time it starts on a session, first sets the
session state's ``terminated`` flag to False. ``close()`` sets the flag to True, closes the
socket and then joins that thread with no timeout. When the stop lands just after a connect
(the thread has seen the session active but not yet cleared the flag), the thread clears the
flag after ``close()`` set it and loops forever on the closed socket; ``close()`` and with it
`serve`'s SIGTERM never return. A CI run caught exactly that.

`close_socket_mode` runs ``close()`` in a helper thread and keeps the flag set while it waits,
so the session thread's loop ends whichever order the two threads ran in; a close that still
does not finish within ``timeout`` is left behind (its threads are daemons) and reported.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

log = logging.getLogger(__name__)


def close_socket_mode(handler: Any, timeout: float = 15.0, poll: float = 0.05) -> bool:
    """Close ``handler`` (a slack_bolt ``SocketModeHandler``); True when it closed within
    ``timeout`` seconds."""
    client = handler.client
    closer = threading.Thread(target=handler.close, name="paperbot-socket-close", daemon=True)
    closer.start()
    deadline = time.monotonic() + timeout
    while closer.is_alive() and time.monotonic() < deadline:
        _keep_terminated(client)
        closer.join(poll)
    if closer.is_alive():
        log.warning("the Socket Mode client did not close within %.0f s; stopping anyway", timeout)
        return False
    return True


def _keep_terminated(client: Any) -> None:
    state = getattr(client, "current_session_state", None)
    if state is not None and getattr(client, "closed", False):
        state.terminated = True
