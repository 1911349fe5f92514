"""The daemon's uvicorn server ticks once a second (the cost at rest, issue 9), yet stops
at once on a signal and keeps its Date header current."""

from __future__ import annotations

import signal
import socket
import threading
import time
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import uvicorn

from appliance.daemon import Server


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_server_answers_with_a_current_date_and_stops_at_once() -> None:
    port = _port()
    server = Server(uvicorn.Config(_app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(3.5)  # a few ticks: the Date header must have moved on with the clock
    r = httpx.get(f"http://127.0.0.1:{port}/", trust_env=False)
    assert r.text == "ok"
    assert abs(parsedate_to_datetime(r.headers["date"]).timestamp() - time.time()) < 2
    t0 = time.monotonic()
    server.handle_exit(signal.SIGTERM, None)
    thread.join(timeout=5)
    assert not thread.is_alive() and time.monotonic() - t0 < Server.TICK_S
