"""Audit log: the hash-chained entries, paged in chain order and filtered by subject or
action, and a check of the whole chain (the first broken entry is named)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import streamlit as st

from appliance.console import session
from appliance.console.panels import BackendDown, BackendError, panel
from appliance.console.safe_text import md

PAGE_SIZES = [50, 100, 500]
_CURSORS = "au_cursors"  # the `after` of each page seen so far: Previous pops one
_FILTER = "au_filter_seen"
_VERIFIED = "au_verified"


def render() -> None:
    st.title("Audit log")
    with panel("Chain"):
        _chain()
    with panel("Entries"):
        _entries()


def _chain() -> None:
    st.caption("Every case action, RCA run, export, report, change event, key change and "
               "console sign-in is an entry; each entry's hash covers the one before it, and "
               "the daemon signs the head.")
    st.button("Verify chain", type="primary", on_click=_verify)
    result = st.session_state.get(_VERIFIED)
    if result is None:
        return
    at, outcome = result
    if "error" in outcome:
        st.warning(f"Chain not checked ({at} UTC): {md(outcome['error'], 300)}")
        return
    head = outcome.get("head") or {}
    signed = outcome.get("last_signed_head") or {}
    if outcome["ok"]:
        st.success(f"Chain ok ({at} UTC): {outcome['entries']} entries, head #{head.get('seq')} "
                   f"`{str(head.get('hash'))[:16]}…`; {outcome.get('signed_heads', 0)} signed "
                   f"heads, the last signed at {md(signed.get('signed_at') or '—')}.")
    else:
        broken = outcome.get("first_broken") or {}
        st.error(f"Chain broken ({at} UTC) at entry #{broken.get('seq')}: "
                 f"{md(broken.get('reason') or 'unknown reason', 400)}")


def _verify() -> None:
    at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    try:
        outcome: dict[str, Any] = session.client().verify_chain()
    except (BackendDown, BackendError) as exc:
        outcome = {"error": str(exc)}
    st.session_state[_VERIFIED] = (at, outcome)


def _entries() -> None:
    c1, c2, c3, c4 = st.columns([2, 2, 1, 1])
    with c1:
        subject = st.text_input("Subject (exact, e.g. a case id or user:NAME)",
                                key="au_subject").strip() or None
    with c2:
        action = st.text_input("Action (exact, e.g. case.status)", key="au_action").strip() or None
    with c3:
        size = st.selectbox("Page size", PAGE_SIZES, key="au_size")
    with c4:
        start = int(st.number_input("From entry #", min_value=1, value=1, step=1, key="au_from"))
    seen = (subject, action, size, start)
    if st.session_state.get(_FILTER) != seen:  # new filters start from the first page
        st.session_state[_FILTER] = seen
        st.session_state[_CURSORS] = [start - 1]
    cursors: list[int] = st.session_state[_CURSORS]
    entries = session.client().audit(subject, action, cursors[-1], int(size))
    b1, b2, info = st.columns([1, 1, 4])
    b1.button("Previous", disabled=len(cursors) <= 1, on_click=cursors.pop)
    b2.button("Next", disabled=len(entries) < size,
              on_click=lambda: cursors.append(entries[-1]["seq"]))
    if not entries:
        info.caption("No entries" + (" on this page." if len(cursors) > 1 else " match."))
        return
    info.caption(f"Page {len(cursors)}: entries #{entries[0]['seq']} to #{entries[-1]['seq']} "
                 "in chain order.")
    st.dataframe(pd.DataFrame([{
        "#": e["seq"], "at (UTC)": pd.Timestamp(e["ts"]).strftime("%Y-%m-%d %H:%M:%S"),
        "actor": e["actor"], "action": e["action"], "subject": e["subject"],
        "details": json.dumps(e["details"], ensure_ascii=False)[:300],
        "hash": e["hash"][:16] + "…"} for e in entries]), hide_index=True)
