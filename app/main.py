"""The Tracehold console: `streamlit run app/main.py` (started as the `console` component).

A client only: it reads the daemon API and PromQL and keeps no state of its own.
Who is signed in comes from Envoy (basic auth), in the x-tracehold-user header.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Streamlit puts this file's folder on sys.path; the console's modules are `app.*`.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import streamlit as st  # noqa: E402

from app import shared  # noqa: E402
from app.safe_text import md  # noqa: E402
from app.views import agents, cost, overview, stack, traces  # noqa: E402

st.set_page_config(page_title="Tracehold", page_icon=":material/monitoring:", layout="wide")

PAGES = [
    st.Page(overview.render, title="Overview", icon=":material/monitoring:", url_path="overview",
            default=True),
    st.Page(traces.render, title="Traces", icon=":material/timeline:", url_path="traces"),
    st.Page(agents.render, title="Agents", icon=":material/hub:", url_path="agents"),
    st.Page(cost.render, title="Cost", icon=":material/payments:", url_path="cost"),
    st.Page(stack.render, title="Stack", icon=":material/dns:", url_path="stack"),
]

page = st.navigation(PAGES)
with st.sidebar:
    user = shared.user()
    st.markdown(f"Signed in as **{md(user, 64)}**" if user else
                "Not signed in (local access, not through Envoy)")
    st.caption("Tracehold console · data stays on this host")
page.run()
