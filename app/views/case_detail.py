"""One case: what was detected (type, signals, metric windows with onset and change
markers), its traces, RCA, timeline and notes; the actions sit beside it."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import streamlit as st

from appliance.cases.model import UNDETERMINED
from appliance.console import case_actions, case_charts, links, session
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
    st.title(case["title"])
    st.caption(f"{md(case['id'])} · service **{md(case['service'])}** · onset "
               f"{_when(case.get('onset_at'))} UTC · opened {_when(case['opened_at'])} UTC · "
               f"updated {_when(case.get('updated_at'))} UTC")
    m = st.columns(4)
    m[0].metric("Status", case["status"])
    m[1].metric("Assignee", case.get("assignee") or "nobody")
    m[2].metric("Occurrences", case.get("occurrences", 1))
    m[3].metric("Linked traces", case.get("trace_ids_total", len(case.get("trace_ids") or [])))
    left, right = st.columns([2, 1], gap="medium")
    with left:
        with panel(f"Detected: {case['failure_type']}"):
            _detected(case)
        with panel("Metric windows"):
            _windows(client, case)
        with panel("Linked traces"):
            _traces(case)
        with panel("Root-cause analysis"):
            _rca(case)
        with panel("Timeline (audit entries of this case)"):
            _timeline(case)
        with panel("Notes"):
            _notes(case)
    with right:
        with panel("Actions"):
            case_actions.render(case)
        with panel("Resolution and verification"):
            _resolution(case)


def _when(value: str | None) -> str:
    return pd.Timestamp(value).strftime("%Y-%m-%d %H:%M:%S") if value else "—"


def _text(value: Any) -> str:
    """Signal values are numbers or categories: one text column keeps the table typed."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _detected(case: dict[str, Any]) -> None:
    facts = [f"**detected by** {md(case.get('detected_by') or 'a person')}"]
    if case.get("secondary_types"):
        facts.append(f"**secondary** {md(', '.join(case['secondary_types']))}")
    st.markdown(" · ".join(facts))
    signals = case.get("signals") or []
    if not signals:
        st.info("No signals were recorded with this case.")
        return
    st.dataframe(pd.DataFrame([{"signal": s["name"], "value": _text(s.get("value")),
                                "baseline": _text(s.get("baseline")),
                                "window": s.get("window") or ""} for s in signals]),
                 hide_index=True)


def _windows(client: CaseworkClient, case: dict[str, Any]) -> None:
    windows = (case.get("context") or {}).get("metric_windows") or []
    if not windows:
        st.info("No metric window was recorded with this case.")
        return
    for i, w in enumerate(windows):
        try:
            changes = client.changes(case["service"], w["start"], w["end"])
        except (BackendDown, BackendError) as exc:
            changes = []
            st.caption(f"Change markers unavailable: {md(exc, 200)}")
        st.markdown(f"**{md(w.get('name') or f'window {i + 1}')}** · {len(w['points'])} points"
                    f" · {len(changes)} change events")
        st.plotly_chart(case_charts.metric_window(w, case.get("onset_at"), changes),
                        key=f"cd_window_{case['id']}_{i}")
        st.caption(f"Query: {md(w['query'], 300)}. Red dashed line: onset; dotted lines: "
                   "change events of the service.")


def _traces(case: dict[str, Any]) -> None:
    ids = case.get("trace_ids") or []
    if not ids:
        st.info("No trace was linked to this case.")
        return
    total = case.get("trace_ids_total", len(ids))
    shown = f" (the first {MAX_TRACE_LINKS} shown)" if total > MAX_TRACE_LINKS else ""
    st.caption(f"{total} traces{shown}; each opens in the Traces page.")
    cols = st.columns(2)
    for i, trace_id in enumerate(ids[:MAX_TRACE_LINKS]):
        with cols[i % 2]:
            links.trace(trace_id)


def _rca(case: dict[str, Any]) -> None:
    if case.get("rca") is None and case.get("confidence") is None:
        st.info("No root-cause analysis has run for this case yet.")
        return
    confidence = case.get("confidence")
    if confidence is None or confidence < 0.5:
        st.warning(f"**Root cause**: {UNDETERMINED} (confidence {confidence or 0:.2f}, below "
                   "0.5).", icon=":material/help:")
    else:
        st.markdown(f"**Root cause** ({confidence:.0%} confidence)")
        st.text(case["root_cause"])
    hypotheses = case.get("hypotheses") or []
    if hypotheses:
        st.markdown("**Hypotheses**")
        st.dataframe(pd.DataFrame([{
            "rank": h["rank"], "cause": h["cause"], "type": h.get("failure_type") or "",
            "confidence": round(h["confidence"], 2),
            "evidence": ", ".join(h.get("evidence_ids") or [])} for h in hypotheses]),
            hide_index=True)
    for fix in case.get("suggested_fixes") or []:
        st.markdown(f"**Suggested fix**: {md(fix['title'], 200)}"
                    + (f" · source {md(fix['source'], 80)}" if fix.get("source") else ""))
        if fix.get("detail"):
            st.text(fix["detail"])


def _summary(details: dict[str, Any]) -> str:
    text = json.dumps(details, ensure_ascii=False, separators=(", ", ": "))
    return text if len(text) <= 240 else text[:239] + "…"


def _timeline(case: dict[str, Any]) -> None:
    entries = case.get("timeline") or []
    if not entries:
        st.info("No audit entries for this case.")
        return
    st.dataframe(pd.DataFrame([{"#": e["seq"], "at (UTC)": _when(e["at"]), "actor": e["actor"],
                                "action": e["action"], "details": _summary(e["details"])}
                               for e in entries]), hide_index=True)


def _notes(case: dict[str, Any]) -> None:
    notes = case.get("notes") or []
    if not notes:
        st.caption("No notes yet.")
    for note in notes:
        st.caption(f"{md(note['author'], 80)} · {_when(note['at'])} UTC")
        st.text(note["text"])


def _resolution(case: dict[str, Any]) -> None:
    res = case.get("resolution") or {}
    if res.get("resolved_at"):
        st.markdown(f"Resolved by **{md(res.get('resolved_by'))}** at {_when(res['resolved_at'])}"
                    " UTC")
        st.markdown("**Root cause**")
        st.text(res.get("root_cause") or "")
        st.markdown("**Fix applied**")
        st.text(res.get("fix_applied") or "")
    else:
        st.caption("Not resolved yet.")
    checks = case.get("verifications") or []
    if not checks:
        st.caption("No verification has run yet.")
        return
    last = checks[-1]
    verdict = "back to baseline" if last["back_to_baseline"] else "not back to baseline"
    show = st.success if last["back_to_baseline"] else st.warning
    show(f"Last verification ({_when(last['at'])} UTC, by {md(last['actor'], 80)}): "
         f"**{verdict}**. {md(last.get('detail') or '', 400)}")
    if last.get("checks"):
        st.dataframe(pd.DataFrame([{"signal": c["signal"], "value": round(c["value"], 4),
                                    "baseline": None if c.get("baseline") is None
                                    else round(c["baseline"], 4)} for c in last["checks"]]),
                     hide_index=True)
    if res.get("verified_at"):
        st.caption(f"Verified at {_when(res['verified_at'])} UTC.")
