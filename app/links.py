"""Links between console pages. A page made from a function is linked through a Page with
the same url_path as the one registered in app/main.py (Streamlit matches on it)."""

from __future__ import annotations

import streamlit as st

from appliance.console.views import traces


def trace(trace_id: str, label: str | None = None) -> None:
    """Open one trace in the Traces page (its ``?trace=`` view)."""
    page = st.Page(traces.render, title="Traces", url_path="traces")
    st.page_link(page, label=label or f"Trace {trace_id}", query_params={"trace": trace_id})
