"""The console through Envoy on the real stack: basic auth, users, WebSocket, endpoints."""

from __future__ import annotations

import base64
import json
import time

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.conftest import Stack, tracehold

pytestmark = [pytest.mark.stack, pytest.mark.binaries]


def _get(stack: Stack, path: str, auth: tuple[str, str] | None = None) -> httpx.Response:
    return httpx.get(stack.endpoints["console"] + path, auth=auth, timeout=10, trust_env=False)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _wait_status(stack: Stack, auth: tuple[str, str], want: int) -> None:
    deadline = time.monotonic() + 15  # Envoy reloads its watched listener file
    while (got := _get(stack, "/_stcore/health", auth).status_code) != want:
        assert time.monotonic() < deadline, f"console answered {got}, wanted {want}"
        time.sleep(0.2)


def test_console_is_listed_healthy_and_admin_exists(stack: Stack) -> None:
    status = stack.status()
    assert status["endpoints"]["console"].startswith("http://127.0.0.2:")
    console = stack.component("console")
    assert console["status"] == "ok" and console["port"] == stack.settings.ports.streamlit
    users = json.loads(tracehold("users", "list", "--json", data_dir=stack.data_dir).stdout)
    assert "admin" in [u["name"] for u in users]


def test_login_required_and_users_apply_without_restart(stack: Stack) -> None:
    r = _get(stack, "/")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic ")
    created = json.loads(tracehold("users", "create", "gate-user", "--json",
                                   data_dir=stack.data_dir).stdout)
    assert set(created) == {"name", "password"}
    auth = ("gate-user", created["password"])
    _wait_status(stack, auth, 200)
    assert _get(stack, "/_stcore/health", auth).text == "ok"
    page = _get(stack, "/", auth)
    assert page.status_code == 200 and 'id="root"' in page.text  # Streamlit's app shell
    assert _get(stack, "/", ("gate-user", "wrong-password")).status_code == 401
    assert _get(stack, "/", ("nobody", created["password"])).status_code == 401
    # the WebSocket Streamlit runs on goes through Envoy with the login, not without
    ws_url = stack.endpoints["console"].replace("http://", "ws://") + "/_stcore/stream"
    with connect(ws_url, additional_headers={"Authorization": _basic(*auth)},
                 subprotocols=["streamlit"], open_timeout=10) as ws:  # type: ignore[list-item]
        assert ws.response is not None and ws.response.status_code == 101
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url, subprotocols=["streamlit"], open_timeout=10)  # type: ignore[list-item]
    assert refused.value.response.status_code == 401
    tracehold("users", "delete", "gate-user", data_dir=stack.data_dir)
    _wait_status(stack, auth, 401)


def test_only_loopback_reaches_streamlit_directly(stack: Stack) -> None:
    """Streamlit itself listens on 127.0.0.1 only; from 127.0.0.2 only Envoy answers."""
    port = stack.settings.ports.streamlit
    assert httpx.get(f"http://127.0.0.1:{port}/_stcore/health", trust_env=False).text == "ok"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.2:{port}/_stcore/health", trust_env=False, timeout=3)
