"""The Tracehold console: `streamlit run app/main.py` (started as the `console` component).

A client only: it reads the daemon API and PromQL and keeps no state of its own.
Who is signed in comes from Envoy (basic auth), in the x-tracehold-user header.
"""

from __future__ import annotations

# Streamlit runs this file as a script, not as part of its package: the console's
# modules are imported as `appliance.console.*` (app/ ships inside the package, see
# setup.py), never as neighbours of this file.
import streamlit as st

from appliance.console import session, shared
from appliance.console.safe_text import md
from appliance.console.views import agents, audit, cases, cost, overview, reports, stack, traces

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
