"""Agents: the service -> agent -> tool call graph from the span store, with rates."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from appliance.console import charts, shared
from appliance.console.panels import panel


def render() -> None:
    st.title("Agents")
    window = shared.time_window("ag_range", "1 hour")
    with panel("Call graph"):
        _graph(shared.daemon().graph(window.start, window.end))


def _graph(graph: dict[str, Any]) -> None:
    if not graph["edges"]:
        st.info("No calls between services, agents and tools in this range.")
        return
    st.caption("Edges: calls per second and share of failed calls over the range "
               "(red from 5 %). Computed from the span store's parent/child links.")
    st.plotly_chart(charts.call_graph(graph), key="call-graph")
    st.markdown("**Edges**")
    st.dataframe(pd.DataFrame([{
        "caller": e["source"], "callee": e["target"], "calls": e["calls"],
        "calls/s": round(e["rate_per_s"], 4), "errors": e["errors"],
        "error rate": f"{e['error_rate']:.1%}",
    } for e in graph["edges"]]), hide_index=True)
    st.markdown("**Nodes**")
    st.dataframe(pd.DataFrame([{
        "node": n["id"], "calls": n["calls"], "calls/s": round(n["rate_per_s"], 4),
        "errors": n["errors"], "error rate": f"{n['error_rate']:.1%}",
    } for n in graph["nodes"]]), hide_index=True)
