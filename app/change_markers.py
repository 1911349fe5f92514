"""Change events (deploys, prompt templates, index refreshes, document updates, model
swaps, config and other changes: ``appliance.domain.change_kinds``) as vertical markers on a
time-series figure, so a step in a chart can be read against what changed. Hovering a
marker's label says what its kind means, where it came from and its note.

``add_markers`` is pure (figure and events in, figure out). ``overlay`` fetches the events
of a chart's range from the daemon (cached 30 s, whole minutes, so the charts of one page
share one request) and says so under the chart when the daemon cannot answer: the chart
itself comes from another backend and stays.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from appliance.console import shared
from appliance.console.casework_client import CaseworkClient
from appliance.console.panels import BackendDown, BackendError
from appliance.console.safe_text import md
from appliance.domain.change_kinds import describe

COLOUR = "#ff7f0e"
MAX_MARKERS = 30  # more would hide the series; the newest are kept


def _plain(text: str, limit: int = 40) -> str:
    """Plotly reads a subset of HTML in annotation text: values from spans stay text."""
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def utc(value: Any) -> pd.Timestamp:
    """A time as naive UTC (how the console's chart axes read); naive input is UTC."""
    ts = pd.Timestamp(value)
    return (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).tz_localize(None)


def label(change: dict[str, Any], with_service: bool = False) -> str:
    moved = change.get("to") or ""
    if change.get("from"):
        moved = f"{change['from']} → {moved}"
    text = f"{change['kind']} {moved}".strip()
    if with_service:
        text = f"{change['service']}: {text}"
    return _plain(text)


def hover(change: dict[str, Any]) -> str:
    """What the change's kind means, who or what recorded it, and its note (plain text)."""
    kind = str(change.get("kind") or "")
    parts = [f"{kind}: {meaning}" if (meaning := describe(kind)) else kind]
    if change.get("source"):
        parts.append(f"{change['source']}, {change.get('actor') or '?'}")
    if change.get("note"):
        parts.append(str(change["note"]))
    return "<br>".join(_plain(p, 200) for p in parts if p)


def add_markers(fig: go.Figure, changes: list[dict[str, Any]],
                with_service: bool = False) -> go.Figure:
    """A dotted line and a label per change event, at its time (``at``, ISO 8601 UTC)."""
    for change in sorted(changes, key=lambda c: c["at"])[-MAX_MARKERS:]:
        at = utc(change["at"])
        fig.add_shape(type="line", xref="x", yref="paper", x0=at, x1=at, y0=0, y1=1,
                      line={"color": COLOUR, "width": 1.5, "dash": "dot"},
                      name=f"change {change.get('id', '')}")
        fig.add_annotation(x=at, y=1, xref="x", yref="paper", text=label(change, with_service),
                           hovertext=hover(change), showarrow=False, textangle=-90,
                           xanchor="right", yanchor="top", font={"size": 10, "color": COLOUR})
    return fig


@st.cache_data(ttl=30, show_spinner=False)
def _changes(daemon_url: str, service: str | None, since: str,
             until: str) -> list[dict[str, Any]]:
    return CaseworkClient(daemon_url, None).changes(service, since, until)


def fetch(service: str | None, start: datetime, end: datetime) -> list[dict[str, Any]]:
    since = start.replace(second=0, microsecond=0).isoformat()
    until = (end + timedelta(minutes=1)).replace(second=0, microsecond=0).isoformat()
    return _changes(shared.config().daemon_url, service, since, until)


def chosen(key: str) -> str | None:
    """The value of a page's ``shared.choice`` filter (None for its "(all)" entry)."""
    value = st.session_state.get(key)
    return None if value in (None, "(all)") else str(value)


def overlay(fig: go.Figure, start: datetime, end: datetime,
            service: str | None = None) -> go.Figure:
    """``fig`` with the change events of [start, end] (one service's, or all services')."""
    try:
        changes = fetch(service, start, end)
    except (BackendDown, BackendError) as exc:
        st.caption(f"Change markers unavailable: {md(exc, 200)}")
        return fig
    lo, hi = utc(start), utc(end)
    inside = [c for c in changes if lo <= utc(c["at"]) <= hi]
    return add_markers(fig, inside, with_service=service is None)
