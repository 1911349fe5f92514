"""One case: what was detected (type, signals, metric windows with onset and change
markers), its traces, its diagnosis (app/case_diagnosis.py), timeline and notes; the
actions sit beside it."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import streamlit as st

import appliance.console.case_notifications as case_notifications
from appliance.cases.model import Case
from appliance.console import case_actions, case_charts, case_diagnosis, links, session
from appliance.console.casework_client import CaseworkClient, Refused
from appliance.console.panels import BackendDown, BackendError, down_message, panel
from appliance.console.safe_text import md

MAX_TRACE_LINKS = 20


def render(case_id: str) -> None:
    client = session.client()
    try:
        case = client.case(case_id)
    except BackendDown as exc:
        st.warning(down_message(f"Case {case_id}", exc), icon=":material/warning:")
        return
    except Refused as exc:
        st.error(f"Case {md(case_id)}: {md(exc.reason, 300)}", icon=":material/error:")
        return
    st.title(case.title)
    st.caption(f"{md(case.id)} · service **{md(case.service)}** · onset "
               f"{_when(case.onset_at)} UTC · opened {_when(case.opened_at)} UTC · "
               f"updated {_when(case.updated_at)} UTC")
    m = st.columns(4)
    m[0].metric("Status", case.status)
    m[1].metric("Assignee", case.assignee or "nobody")
    m[2].metric("Occurrences", case.occurrences)
    m[3].metric("Linked traces", case.trace_ids_total)
    # the answer first, full width: its tables need the room
    with panel("Diagnosis (root-cause analysis)"):
        case_diagnosis.render(case)
    left, right = st.columns([2, 1], gap="medium")
    with left:
        with panel(f"Detected: {case.failure_type}"):
            _detected(case)
        with panel("Metric windows"):
            _windows(client, case)
        with panel("Linked traces"):
            _traces(case)
        with panel("Timeline (audit entries of this case)"):
            _timeline(case)
        with panel("Notes"):
            _notes(case)
    with right:
        with panel("Actions"):
            case_actions.render(case)
        with panel("Resolution and verification"):
            _resolution(case)
        case_notifications.render(client, case)  # "Sent to" and "Create ticket"


def _when(value: str | None) -> str:
    return pd.Timestamp(value).strftime("%Y-%m-%d %H:%M:%S") if value else "—"


def _text(value: Any) -> str:
    """Signal values are numbers or categories: one text column keeps the table typed."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _detected(case: Case) -> None:
    facts = [f"**detected by** {md(case.detected_by or 'a person')}"]
    if case.secondary_types:
        facts.append(f"**secondary** {md(', '.join(case.secondary_types))}")
    st.markdown(" · ".join(facts))
    if not case.signals:
        st.info("No signals were recorded with this case.")
        return
    st.dataframe(pd.DataFrame([{"signal": s.name, "value": _text(s.value),
                                "baseline": _text(s.baseline),
                                "window": s.window or ""} for s in case.signals]),
                 hide_index=True)


def _windows(client: CaseworkClient, case: Case) -> None:
    windows = case.context.metric_windows if case.context else []
    if not windows:
        st.info("No metric window was recorded with this case.")
        return
    for i, w in enumerate(windows):
        try:
            changes = client.changes(case.service, w.start, w.end)
        except (BackendDown, BackendError) as exc:
            changes = []
            st.caption(f"Change markers unavailable: {md(exc, 200)}")
        st.markdown(f"**{md(w.name or f'window {i + 1}')}** · {len(w.points)} points"
                    f" · {len(changes)} change events")
        st.plotly_chart(case_charts.metric_window(w, case.onset_at, changes),
                        key=f"cd_window_{case.id}_{i}")
        st.caption(f"Query: {md(w.query, 300)}. Red dashed line: onset; dotted lines: "
                   "change events of the service.")


def _traces(case: Case) -> None:
    ids = case.trace_ids
    if not ids:
        st.info("No trace was linked to this case.")
        return
    total = case.trace_ids_total
    shown = f" (the first {MAX_TRACE_LINKS} shown)" if total > MAX_TRACE_LINKS else ""
    st.caption(f"{total} traces{shown}; each opens in the Traces page.")
    cols = st.columns(2)
    for i, trace_id in enumerate(ids[:MAX_TRACE_LINKS]):
        with cols[i % 2]:
            links.trace(trace_id)


def _summary(details: dict[str, Any]) -> str:
    text = json.dumps(details, ensure_ascii=False, separators=(", ", ": "))
    return text if len(text) <= 240 else text[:239] + "…"


def _timeline(case: Case) -> None:
    entries = case.timeline or []
    if not entries:
        st.info("No audit entries for this case.")
        return
    st.dataframe(pd.DataFrame([{"#": e.seq, "at (UTC)": _when(e.at), "actor": e.actor,
                                "action": e.action, "details": _summary(e.details)}
                               for e in entries]), hide_index=True)


def _notes(case: Case) -> None:
    notes = case.notes or []
    if not notes:
        st.caption("No notes yet.")
    for note in notes:
        st.caption(f"{md(note.author, 80)} · {_when(note.at)} UTC")
        st.text(note.text)


def _resolution(case: Case) -> None:
    res = case.resolution
    if res.resolved_at:
        st.markdown(f"Resolved by **{md(res.resolved_by)}** at {_when(res.resolved_at)} UTC")
        st.markdown("**Root cause**")
        st.text(res.root_cause or "")
        st.markdown("**Fix applied**")
        st.text(res.fix_applied or "")
    else:
        st.caption("Not resolved yet.")
    if not case.verifications:
        st.caption("No verification has run yet.")
        return
    last = case.verifications[-1]
    verdict = "back to baseline" if last.back_to_baseline else "not back to baseline"
    show = st.success if last.back_to_baseline else st.warning
    show(f"Last verification ({_when(last.at)} UTC, by {md(last.actor, 80)}): "
         f"**{verdict}**. {md(last.detail or '', 400)}")
    if last.checks:
        st.dataframe(pd.DataFrame([{"signal": c.signal, "value": round(c.value, 4),
                                    "baseline": None if c.baseline is None
                                    else round(c.baseline, 4)} for c in last.checks]),
                     hide_index=True)
    if res.verified_at:
        st.caption(f"Verified at {_when(res.verified_at)} UTC.")
