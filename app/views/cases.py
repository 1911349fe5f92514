"""Cases: the list with filters and counts by status and type; a row opens its detail view
(``?case=ID``, so a case can be linked to)."""

from __future__ import annotations

import re
from collections import Counter
from functools import partial
from typing import Any

import pandas as pd
import streamlit as st

from appliance.cases.model import STATUSES, Case
from appliance.cases.transitions import ACTIVE
from appliance.console import case_charts, session, shared
from appliance.console.panels import panel
from appliance.console.views import case_detail
from appliance.domain.taxonomy import FAILURE_TYPES

# Case ids go into the daemon's URL path: nothing but these characters.
CASE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
LIMIT = 1000
_TABLE_GEN = "cs_table_gen"  # a new table key after each open: no stale row selection


def render() -> None:
    typed = st.query_params.get("case", "")
    if typed:
        st.button("← All cases", on_click=_close)
        if CASE_ID.fullmatch(typed):
            case_detail.render(typed)
        else:
            st.error("That is not a case id (letters, digits, _ and - only).")
        return
    st.title("Cases")
    filters: dict[str, Any] | None = None
    with panel("Filters"):
        filters = _filters()
    if filters is None:
        return
    with panel("Cases, newest first"):
        found = session.client().cases(**filters, limit=LIMIT)
        _counts(found)
        _table(found)


def _close() -> None:
    st.query_params.pop("case", None)


def _filters() -> dict[str, Any]:
    # services that have cases (one unfiltered read; cases are few next to spans)
    services = sorted({c.service for c in session.client().cases(limit=LIMIT)})
    c1, c2, c3 = st.columns(3)
    with c1:
        status = shared.choice("Status", list(STATUSES), "cs_status")
    with c2:
        service = shared.choice("Service", services, "cs_service")
    with c3:
        failure_type = shared.choice("Failure type", list(FAILURE_TYPES), "cs_type")
    return {"status": status, "service": service, "failure_type": failure_type}


def _counts(cases: list[Case]) -> None:
    by_status: Counter[str] = Counter(c.status for c in cases)
    by_type = Counter(str(c.failure_type) for c in cases)
    m = st.columns(4)
    m[0].metric("Cases", len(cases))
    m[1].metric("Active", sum(by_status[s] for s in ACTIVE))
    m[2].metric("Resolved", by_status["resolved"])
    m[3].metric("Verified", by_status["verified"])
    if not cases:
        return
    left, right = st.columns(2)
    with left:
        st.caption("By status")
        st.plotly_chart(case_charts.counts({s: by_status[s] for s in STATUSES}, "cases"),
                        key="cs_by_status")
    with right:
        st.caption("By failure type")
        st.plotly_chart(case_charts.counts(dict(by_type.most_common()), "cases"),
                        key="cs_by_type")


def _when(value: str | None) -> str:
    return pd.Timestamp(value).strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _table(cases: list[Case]) -> None:
    if not cases:
        st.info("No case matches.")
        return
    table = pd.DataFrame([{
        "opened (UTC)": _when(c.opened_at), "id": c.id, "title": c.title,
        "service": c.service, "failure type": str(c.failure_type), "status": c.status,
        "assignee": c.assignee or "", "occurrences": c.occurrences,
        "onset (UTC)": _when(c.onset_at),
    } for c in cases])
    more = " (the newest only)" if len(cases) >= LIMIT else ""
    st.caption(f"{len(cases)} cases{more}. Select a row to open it.")
    key = f"cs_table_{st.session_state.get(_TABLE_GEN, 0)}"
    st.dataframe(table, hide_index=True, selection_mode="single-row", key=key,
                 on_select=partial(_open_selected, key, [c.id for c in cases]))


def _open_selected(key: str, ids: list[str]) -> None:
    selected = st.session_state[key].selection.rows
    if selected:
        st.query_params["case"] = ids[selected[0]]
        st.session_state[_TABLE_GEN] = st.session_state.get(_TABLE_GEN, 0) + 1
