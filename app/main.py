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

from app import session, shared  # noqa: E402
from app.safe_text import md  # noqa: E402
from app.views import agents, audit, cases, cost, overview, reports, stack, traces  # noqa: E402

# No page_icon and no page icons: Streamlit turns them into a favicon that the browser
# fetches from a CDN, and nothing may leave the host (the browser test records every
# request the pages make).
st.set_page_config(page_title="Tracehold", layout="wide")

PAGES = [
    st.Page(overview.render, title="Overview", url_path="overview", default=True),
    st.Page(traces.render, title="Traces", url_path="traces"),
    st.Page(agents.render, title="Agents", url_path="agents"),
    st.Page(cost.render, title="Cost", url_path="cost"),
    st.Page(stack.render, title="Stack", url_path="stack"),
    st.Page(cases.render, title="Cases", url_path="cases"),
    st.Page(audit.render, title="Audit log", url_path="audit"),
    st.Page(reports.render, title="Reports", url_path="reports"),
]

page = st.navigation(PAGES)
with st.sidebar:
    user = shared.user()
    st.markdown(f"Signed in as **{md(user, 64)}**" if user else
                "Not signed in (local access, not through Envoy)")
    st.caption("Tracehold console · data stays on this host")
    login_warning = session.record_login()  # once per Streamlit session
    if login_warning:
        st.caption(md(login_warning, 300))
page.run()
