"""What every page uses: the configuration, the daemon client, the signed-in user and
the common controls (time range, filters)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import streamlit as st

from appliance.console.config import ConsoleConfig
from appliance.console.daemon_client import DaemonClient
from appliance.console.panels import BackendDown, BackendError
from appliance.console.timerange import RANGES, Window
from appliance.headers import USER_HEADER


@st.cache_resource
def config() -> ConsoleConfig:
    return ConsoleConfig.from_env()


def daemon() -> DaemonClient:
    return DaemonClient(config().daemon_url)


def user() -> str | None:
    """The name Envoy authenticated (its basic-auth filter sets the header), if any."""
    try:
        return st.context.headers.get(USER_HEADER)
    except Exception:  # no request context (bare mode, tests)
        return None


def time_window(key: str, default: str = "1 hour", options: list[str] | None = None) -> Window:
    labels = options or list(RANGES)
    label = st.selectbox("Time range", labels, index=labels.index(default), key=key)
    return Window.last(label)


@st.cache_data(ttl=30, show_spinner=False)
def _facets(daemon_url: str, start: str, end: str) -> dict[str, list[str]]:
    data: dict[str, list[str]] = DaemonClient(daemon_url).get("/api/v1/facets", start=start,
                                                               end=end)
    return data


def facets(window: Window) -> dict[str, list[str]] | None:
    """Services, models, agents of the window (cached 30 s); None if the daemon is down
    (the caller's filters then offer nothing, and a warning says why)."""
    # whole minutes (end rounded up) so reruns share the cache and miss no new span
    start = window.start.replace(second=0).isoformat()
    end = (window.end + timedelta(minutes=1)).replace(second=0).isoformat()
    try:
        return _facets(config().daemon_url, start, end)
    except (BackendDown, BackendError) as exc:
        st.warning(f"Filter choices unavailable: {exc}", icon=":material/warning:")
        return None


def choice(label: str, options: list[str] | None, key: str) -> Any:
    """A select box with an 'all' entry; returns None for 'all'."""
    picked = st.selectbox(label, ["(all)", *(options or [])], key=key)
    return None if picked == "(all)" else picked
