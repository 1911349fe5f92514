"""Every console page, run by Streamlit's own AppTest: with its backends down each panel
says which one is down (no exception), and it recovers when the backend comes back."""

from __future__ import annotations

import socket
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import uvicorn
from streamlit.testing.v1 import AppTest

from appliance.console import shared
from appliance.ingest.limits import IngestLimits
from appliance.ingest.rows import to_rows
from appliance.settings import PROJECT_ROOT
from appliance.stack import console
from appliance.store.spans import SpanStore
from tests.casework import app_for
from tests.genai_traces import AgentTrace, export

PAGES = ["overview", "traces", "agents", "cost", "stack"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def page(name: str) -> AppTest:
    script = (f"import sys; sys.path.insert(0, {str(PROJECT_ROOT)!r})\n"
              f"from appliance.console.views import {name}\n{name}.render()\n")
    return AppTest.from_string(script, default_timeout=60)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    dead = f"http://127.0.0.1:{free_port()}"
    values = {console.ENV_DAEMON: dead, console.ENV_PROMETHEUS: dead,
              console.ENV_VICTORIAMETRICS: dead, "TRACEHOLD_DATA_DIR": str(tmp_path)}
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    shared.config.clear()  # the console caches its configuration per process
    yield values
    shared.config.clear()


class Daemon:
    """The real daemon app on a real port, in a thread."""

    def __init__(self, store: SpanStore, port: int) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app_for(store), host="127.0.0.1",
                                                    port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Daemon:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "daemon did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def texts(at: AppTest, kind: str) -> list[str]:
    return [str(e.value) for e in getattr(at, kind)]


@pytest.mark.parametrize("name", PAGES)
def test_page_with_every_backend_down_says_what_is_down(env: dict[str, str], name: str) -> None:
    at = page(name)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    warnings = " ".join(texts(at, "warning"))
    assert "Traceback" not in warnings + " ".join(texts(at, "error"))
    if name == "overview":
        assert "Prometheus is down or unreachable" in warnings
    elif name == "stack":
        assert "The stack is not running" in warnings
        assert "the Tracehold daemon is down or unreachable" in warnings
    else:
        assert "the Tracehold daemon is down or unreachable" in warnings
    assert not texts(at, "error"), texts(at, "error")  # down is a warning, not a failure


def test_panels_recover_when_the_daemon_comes_back(env: dict[str, str], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv(console.ENV_DAEMON, f"http://127.0.0.1:{port}")
    shared.config.clear()
    store = SpanStore(tmp_path / "spans.duckdb")
    trace = AgentTrace(service="recovery-svc")
    store.insert(to_rows(export([trace]), IngestLimits(), datetime.now(UTC)).rows)
    try:
        at = page("traces")
        at.run()
        assert any("daemon is down" in w for w in texts(at, "warning"))
        with Daemon(store, port):
            at.run()  # the same session, a rerun: as an auto-refresh or a click does
            assert not at.exception
            assert not any("daemon" in w for w in texts(at, "warning")), texts(at, "warning")
            frame = at.dataframe[0].value
            assert list(frame["trace id"]) == [trace.trace_hex]
            assert "recovery-svc" in list(frame["service"])
            # the trace view, opened by its id in the URL
            at.query_params["trace"] = trace.trace_hex
            at.run()
            code = " ".join(str(c.value) for c in at.code)
            assert trace.prompt in code and trace.output in code
            assert all(chunk in code for chunk, _ in trace.chunks)
        at.run()
        assert any("daemon is down" in w for w in texts(at, "warning"))
        assert not at.exception
    finally:
        store.close()
