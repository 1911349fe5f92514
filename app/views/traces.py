"""Traces: search the span store, then one trace as a waterfall with its GenAI content."""

from __future__ import annotations

import re
from typing import Any

import pandas as pd
import streamlit as st

from appliance.console import charts, shared
from appliance.console.panels import panel
from appliance.console.safe_text import md
from appliance.console.timerange import Window
from appliance.store.genai_content import messages

TRACE_ID = re.compile(r"[0-9a-fA-F]{32}")
STATUSES = ["(any)", "error", "ok", "unset"]


def render() -> None:
    st.title("Traces")
    filters: dict[str, Any] | None = None
    picked: str | None = None  # a panel that fails leaves these unset
    with panel("Search"):
        filters = _search_form()
    if filters is not None:
        with panel("Matching traces"):
            picked = _results(filters)
    typed = st.query_params.get("trace", "")
    trace_id = picked or (typed if TRACE_ID.fullmatch(typed) else None)
    if trace_id:
        with panel(f"Trace {trace_id}"):
            _trace(trace_id.lower())


def _search_form() -> dict[str, Any]:
    label = st.session_state.get("tr_range", "1 hour")
    options = shared.facets(Window.last(label)) or {}
    with st.form("trace_search", border=False):
        c1, c2, c3, c4 = st.columns(4)
        with c1:
            window = shared.time_window("tr_range", "1 hour")
        with c2:
            service = shared.choice("Service", options.get("services"), "tr_service")
        with c3:
            model = shared.choice("Model", options.get("models"), "tr_model")
        with c4:
            status = st.selectbox("Status", STATUSES, key="tr_status")
        c5, c6, c7 = st.columns([3, 1, 1])
        with c5:
            text = st.text_input("Text in prompt or output (any case)", key="tr_text")
        with c6:
            min_ms = st.number_input("Min duration (ms)", min_value=0, value=0, step=100,
                                     key="tr_min")
        with c7:
            limit = st.number_input("Max traces", min_value=1, max_value=1000, value=50,
                                    key="tr_limit")
        st.form_submit_button("Search", type="primary")
    return {"start": window.start, "end": window.end, "service": service, "model": model,
            "status": None if status == "(any)" else status, "text": text or None,
            "min_duration_ms": min_ms or None, "limit": int(limit)}


def _results(filters: dict[str, Any]) -> str | None:
    rows = shared.daemon().search(**filters)
    if not rows:
        st.info("No trace matches.")
        return None
    table = pd.DataFrame([{
        "start (UTC)": pd.Timestamp(r["start_time"]).strftime("%Y-%m-%d %H:%M:%S"),
        "root span": r["root_name"], "service": r["service"],
        "duration ms": round(r["duration_ms"], 1), "spans": r["span_count"],
        "error": r["error"], "models": ", ".join(r["models"]),
        "tokens": r["input_tokens"] + r["output_tokens"], "trace id": r["trace_id"],
    } for r in rows])
    st.caption(f"{len(rows)} traces, newest first. Select a row to open it.")
    event = st.dataframe(table, hide_index=True, on_select="rerun",
                         selection_mode="single-row", key="tr_table")
    selected = event.selection.rows if event is not None else []
    if selected:
        return str(rows[selected[0]]["trace_id"])
    return None


def _trace(trace_id: str) -> None:
    data = shared.daemon().trace(trace_id)
    if data is None:
        st.info("This trace is not (or no longer) in the span store.")
        return
    spans = data["spans"]
    t0 = min(pd.Timestamp(s["start_time"]) for s in spans)
    t1 = max(pd.Timestamp(s["end_time"]) for s in spans)
    c = st.columns(5)
    c[0].metric("Spans", len(spans))
    c[1].metric("Duration", f"{(t1 - t0).total_seconds() * 1000:.0f} ms")
    c[2].metric("Errors", sum(s["status_code"] == "error" for s in spans))
    c[3].metric("Input tokens", sum(s.get("input_tokens") or 0 for s in spans))
    c[4].metric("Output tokens", sum(s.get("output_tokens") or 0 for s in spans))
    st.plotly_chart(charts.waterfall(spans), key=f"waterfall-{trace_id}")
    for span, depth in charts.tree_order(spans):
        if _has_content(span):
            _span_content(span, depth)
    with st.expander("All spans (attributes, events)"):
        st.json(spans, expanded=False)


def _has_content(span: dict[str, Any]) -> bool:
    return bool(span.get("input_messages") or span.get("output_messages")
                or span.get("retrieved_chunks") or span.get("eval_scores")
                or span.get("input_tokens") is not None)


def _span_content(span: dict[str, Any], depth: int) -> None:
    title = (f"{'· ' * depth}{md(span['name'], 80)} — {md(span.get('service_name'), 40)}, "
             f"{float(span['duration_ms'] or 0):.0f} ms"
             + (" — error" if span["status_code"] == "error" else ""))
    with st.expander(title, expanded=True):
        facts = {k: span.get(k) for k in ("operation", "provider", "request_model",
                                          "response_model", "agent_name", "tool_name",
                                          "input_tokens", "output_tokens", "ttft_s",
                                          "finish_reasons", "error_type")}
        facts = {k: v for k, v in facts.items() if v not in (None, [], "")}
        if facts:
            st.markdown(" · ".join(f"**{k}** {md(v, 80)}" for k, v in facts.items()))
        if span.get("status_message"):
            st.markdown(f"**status** {md(span['status_message'])}")
        _messages("Prompt", span.get("input_messages"))
        chunks = span.get("retrieved_chunks") or []
        if chunks:
            st.markdown(f"**Retrieved chunks** ({len(chunks)})")
            for i, chunk in enumerate(chunks, 1):
                score = chunk.get("score")
                head = f"#{i}" + (f" · score {score:.3f}" if isinstance(score, int | float)
                                  else "")
                if chunk.get("id"):
                    head += f" · {md(chunk['id'], 60)}"
                st.caption(head)
                st.code(chunk.get("content") or "(no content recorded)", language=None,
                        wrap_lines=True)
        _messages("Output", span.get("output_messages"))
        scores = span.get("eval_scores") or {}
        if scores:
            st.markdown("**Evaluation scores**")
            cols = st.columns(min(len(scores), 5))
            for i, (name, value) in enumerate(sorted(scores.items())):
                cols[i % len(cols)].metric(md(name, 40), f"{value:.2f}")


def _messages(label: str, value: str | None) -> None:
    parsed = messages(value)
    if not parsed:
        return
    st.markdown(f"**{label}**")
    for m in parsed:
        st.code((f"[{m['role']}] " if m["role"] else "") + m["content"], language=None,
                wrap_lines=True)
