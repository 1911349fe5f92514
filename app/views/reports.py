"""Reports: the compliance report of a period (requests, quality against thresholds,
incidents with time to detect and resolve, SLA breaches, audit chain state, where the data
lives), with its PDF and HTML.

Each report the daemon builds is an audit entry, so nothing is fetched until asked:
the summary on "Show report", each file when its download button is pressed.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pandas as pd
import streamlit as st

from appliance.console import session
from appliance.console.casework_client import CaseworkClient, Refused
from appliance.console.panels import BackendDown, BackendError, panel
from appliance.console.safe_text import md

_REPORT = "rp_report"


def render() -> None:
    st.title("Compliance report")
    period: tuple[datetime, datetime] | None = None
    with panel("Period"):
        period = _period()
    if period is None:
        return
    start, end = period
    client = session.client()
    with panel("Files"):
        _files(client, start, end)
    shown = st.session_state.get(_REPORT)
    if shown is not None and shown[0] == (start, end):
        _summary(shown[1])


def _period() -> tuple[datetime, datetime] | None:
    today = datetime.now(UTC).date()
    c1, c2 = st.columns(2)
    with c1:
        first = st.date_input("From (UTC, inclusive)", today - timedelta(days=6), key="rp_from")
    with c2:
        last = st.date_input("To (UTC, inclusive)", today, key="rp_to")
    if not isinstance(first, date) or not isinstance(last, date):
        return None
    if last < first:
        st.error("The period ends before it starts.")
        return None
    start = datetime.combine(first, time(), UTC)
    end = datetime.combine(last + timedelta(days=1), time(), UTC)  # the whole last day
    st.button("Show report", type="primary", on_click=_fetch, args=(start, end))
    return start, end


def _fetch(start: datetime, end: datetime) -> None:
    try:
        report: dict[str, Any] = session.client().report(start, end)
    except (BackendDown, BackendError) as exc:
        report = {"error": str(exc)}
    st.session_state[_REPORT] = ((start, end), report)


def _files(client: CaseworkClient, start: datetime, end: datetime) -> None:
    log: dict[str, str] = st.session_state.setdefault("rp_files", {})
    stem = f"tracehold-report-{start:%Y%m%d}-{(end - timedelta(days=1)):%Y%m%d}"
    c1, c2 = st.columns(2)
    for col, fmt, mime in ((c1, "pdf", "application/pdf"), (c2, "html", "text/html")):

        def build(fmt: str = fmt) -> bytes:  # runs on Streamlit's download thread
            try:
                return client.report_file(start, end, fmt)
            except (Refused, BackendDown) as exc:
                log[fmt] = str(exc)
                raise
        with col:
            st.download_button(f"Download {fmt.upper()}", data=build, file_name=f"{stem}.{fmt}",
                               mime=mime, on_click="ignore", key=f"rp_{fmt}")
            if log.get(fmt):
                st.warning(f"The last {fmt.upper()} failed: {md(log.pop(fmt), 300)}")


def _hours(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds / 3600:.2f} h"


def _summary(report: dict[str, Any]) -> None:
    if "error" in report:
        st.warning(f"The report could not be built: {md(report['error'], 400)}")
        return
    period = report["period"]
    st.caption(f"Period {md(period['from'])} to {md(period['to'])} (end excluded), generated "
               f"{md(report['generated_at'])} on {md(report['host'])}.")
    with panel("Requests"):
        req = report["requests"]
        m = st.columns(3)
        m[0].metric("Spans", req["spans"])
        m[1].metric("Traces", req["traces"])
        m[2].metric("Error spans", req["errors"])
        if req["by_service"]:
            st.dataframe(pd.DataFrame(req["by_service"]), hide_index=True)
    with panel("Quality (mean evaluation scores against thresholds)"):
        if report["quality"]:
            st.dataframe(pd.DataFrame(report["quality"]), hide_index=True)
        else:
            st.info("No evaluation scores in this period.")
    with panel("Incidents"):
        inc = report["incidents"]
        m = st.columns(5)
        m[0].metric("Cases opened", inc["count"])
        m[1].metric("Resolved", inc["resolved"])
        m[2].metric("MTTD", _hours(inc["mttd_s"]))
        m[3].metric("MTTR", _hours(inc["mttr_s"]))
        m[4].metric(f"SLA breaches (> {inc['sla_resolve_hours']} h)", inc["sla_breaches"])
        if inc["cases"]:
            st.dataframe(pd.DataFrame([{
                "id": c["id"], "service": c["service"], "failure type": c["failure_type"],
                "status": c["status"], "time to detect": _hours(c["time_to_detect_s"]),
                "time to resolve": _hours(c["time_to_resolve_s"]),
                "SLA breached": c["sla_breached"]} for c in inc["cases"]]), hide_index=True)
    with panel("Audit chain"):
        audit = report["audit"]
        if audit["ok"]:
            st.success(f"Chain ok: {audit['entries']} entries, signing key "
                       f"{md(audit['key_id'])}.")
        else:
            broken = audit.get("first_broken") or {}
            st.error(f"Chain broken at entry #{broken.get('seq')}: "
                     f"{md(broken.get('reason') or '', 400)}")
    with panel("Data residency"):
        res = report["data_residency"]
        st.markdown(md(res["statement"], 2000))
        st.dataframe(pd.DataFrame([{"data": k, "stored at": v}
                                   for k, v in res["locations"].items()]), hide_index=True)
