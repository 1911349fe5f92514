"""The case page's diagnosis panel: the verdict, the evidence with links to its traces,
the ranked hypotheses, similar resolved cases, suggested fixes (each with "Resolve with
this fix"), the local model's explanation marked as its words, and "Run again".

The tables come from app/diagnosis.py. Text from traces, the knowledge base or the model
goes through ``md`` (literal, never Markdown) or into a dataframe (never rendered).
While a run is awaited (the case has just opened, or "Run again" was pressed) the
panel asks the daemon again every few seconds and redraws the page once it has landed.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pandas as pd
import streamlit as st

from appliance.cases.model import Case
from appliance.cases.transitions import ACTIVE
from appliance.console import case_actions, diagnosis, links, session
from appliance.console.panels import BackendDown, BackendError
from appliance.console.safe_text import md

POLL_S = 4
AWAIT_FIRST_RUN = timedelta(minutes=10)  # a case this new gets its first run by itself
AWAIT_RERUN_S = 600
MAX_TRACE_LINKS = 12
SHOWN_FIXES = 2  # the best ones; the rest fold away


def render(case: Case) -> None:
    if _awaited(case):
        _live(case.id)
    else:
        _draw(case)


def _awaited(case: Case) -> bool:
    """A run is on its way: "Run again" was pressed and has not landed yet, or an active
    case opened moments ago has no diagnosis yet (the worker runs one when a case opens)."""
    runs = case.rca.runs if case.rca else 0
    pending = case_actions.queued(case.id)
    if pending is not None:
        before, at = pending
        if runs > before:
            case_actions.forget_queued(case.id, landed_run=runs)
        elif time.monotonic() - at > AWAIT_RERUN_S:
            case_actions.forget_queued(case.id)
        else:
            return True
    opened = datetime.fromisoformat(case.opened_at.replace("Z", "+00:00"))
    return (case.rca is None and case.status in ACTIVE
            and datetime.now(UTC) - opened < AWAIT_FIRST_RUN)


@st.fragment(run_every=POLL_S)
def _live(case_id: str) -> None:
    try:
        case = session.client().case(case_id)
    except (BackendDown, BackendError) as exc:
        st.caption(f"Waiting for the RCA run; the daemon did not answer ({md(exc, 200)}).")
        return
    if not _awaited(case):
        st.rerun(scope="app")  # it landed: the whole page (timeline, status) is new too
    _draw(case)
    st.caption(":material/hourglass_top: An RCA run is queued or running; this panel "
               "updates by itself when it ends.")


def _draw(case: Case) -> None:
    if not diagnosis.has_diagnosis(case):
        st.info("No root-cause analysis has run for this case yet.")
        case_actions.show_outcome(case.id, "dx_outcome")
        _run_button(case, "Run now")
        return
    _verdict(case)
    _explanation(case)
    _hypotheses(case)
    with st.expander("Evidence", expanded=True):
        _evidence(case)
    _similar(case)
    _fixes(case)
    # the outcome of "Resolve with this fix" or "Run again", beside those buttons
    case_actions.show_outcome(case.id, "dx_outcome")
    _run_button(case, "Run again")


def _run_button(case: Case, label: str) -> None:
    st.button(label, on_click=case_actions.run_again,
              args=(case.id, case.rca.runs if case.rca else 0), key=f"dx_run_{case.id}",
              help="Queue an RCA run now (evidence, knowledge base, local model). It also "
                   "runs by itself when a case opens and when new evidence joins it.")


def _verdict(case: Case) -> None:
    v = diagnosis.verdict(case)
    confidence = "—" if v.confidence is None else f"{v.confidence:.0%}"
    m = st.columns(3)
    m[0].metric("Failure type", v.failure_type.replace("_", " "))
    m[1].metric("Confidence", confidence)
    m[2].metric("Determined", "yes" if v.determined else "no",
                help=f"Determined at a confidence of {diagnosis.DETERMINED:.0%} or more; "
                     "below it the answer is 'unable to determine root cause'.")
    if v.determined:
        st.success(f"**Root cause**: {md(v.root_cause, 1000)}", icon=":material/target:")
    else:
        st.warning(f"**Root cause**: {md(v.root_cause)} (confidence {confidence}, below "
                   f"{diagnosis.DETERMINED:.0%}). The hypotheses below are unconfirmed.",
                   icon=":material/help:")
    for note in v.notes:
        st.warning(f"**Degraded**: {md(note, 400)}", icon=":material/warning:")
    st.caption(f"Engine: {md(v.engine, 80)}" + (f" · {md(v.ran, 200)}" if v.ran else ""))


def _evidence(case: Case) -> None:
    rows = diagnosis.evidence_rows(case)
    if not rows:
        st.caption("This run recorded no evidence table.")
        return
    st.caption("Facts gathered before any model: each signal against its baseline, version "
               "cohorts, change events, providers, trace shapes. 'cited' marks the facts a "
               "hypothesis rests on.")
    st.dataframe(pd.DataFrame(rows), hide_index=True, key=f"dx_facts_{case.id}",
                 column_order=["id", "cited", "kind", "what", "value", "baseline", "more",
                               "traces"],
                 column_config={"id": st.column_config.TextColumn(width=48),
                                "cited": st.column_config.TextColumn(width=48),
                                "what": st.column_config.TextColumn(width="large"),
                                "value": st.column_config.TextColumn(width=110),
                                "baseline": st.column_config.TextColumn(width=110),
                                "more": st.column_config.TextColumn(width="large")})
    linked = diagnosis.trace_links(case)
    if linked:
        st.caption("Traces behind the evidence (cited facts first); each opens in the Traces "
                   "page.")
        cols = st.columns(2)
        for i, (trace_id, fact) in enumerate(linked[:MAX_TRACE_LINKS]):
            with cols[i % 2]:
                links.trace(trace_id, f"Trace {trace_id} ({fact})")


def _hypotheses(case: Case) -> None:
    rows = diagnosis.hypotheses(case)
    st.markdown("**Ranked hypotheses**")
    if not rows:
        st.caption("None: the evidence pointed at nothing in particular.")
        return
    st.dataframe(pd.DataFrame(rows), hide_index=True, key=f"dx_hyp_{case.id}",
                 column_order=["rank", "score", "blames", "evidence", "cause"],
                 column_config={"rank": st.column_config.TextColumn(width=48),
                                "score": st.column_config.TextColumn(width=56),
                                "cause": st.column_config.TextColumn(width="large")})


def _similar(case: Case) -> None:
    rows = diagnosis.similar(case)
    st.markdown("**Similar cases in the knowledge base**")
    if not rows:
        st.caption("None retrieved for this run.")
        return
    st.caption("Nearest first; distance is the cosine distance between the two cases' "
               "signatures (0 is identical).")
    st.dataframe(pd.DataFrame(rows), hide_index=True, key=f"dx_similar_{case.id}",
                 column_order=["distance", "id", "source", "type", "verified", "root cause",
                               "fix"],
                 column_config={"distance": st.column_config.TextColumn(width=72),
                                "root cause": st.column_config.TextColumn(width="large"),
                                "fix": st.column_config.TextColumn(width="large")})


def _fixes(case: Case) -> None:
    fixes = diagnosis.fixes(case)
    st.markdown("**Suggested fixes**")
    if not fixes:
        st.caption("No fix suggested: no playbook or resolved case matched.")
        return
    root = diagnosis.resolution_root_cause(case)
    resolvable = case.status in ACTIVE and root is not None
    for i, fix in enumerate(fixes):
        if i == SHOWN_FIXES:
            more = st.expander(f"{len(fixes) - SHOWN_FIXES} more suggested fixes")
        with more if i >= SHOWN_FIXES else st.container(), st.container(border=True):
            st.markdown(f"**{i + 1}. {md(fix.title, 300)}**")
            if diagnosis.shows_detail(fix):
                st.markdown("\n\n".join(md(line, 1000) for line in fix.detail.splitlines()
                                        if line.strip()))
            st.markdown(f"**How to verify**: {md(fix.verify, 600)}")
            about = ([f"confidence {fix.confidence:.2f}"] if fix.confidence is not None
                     else []) + (["a verified fix"] if fix.verified else []) + (
                [f"from {md(fix.source, 200)}"] if fix.source else [])
            if about:
                st.caption(" · ".join(about))
            if case.resolution.fix_applied == diagnosis.fix_text(fix):
                st.success("The fix applied when this case was resolved.",
                           icon=":material/check:")
            st.button("Resolve with this fix", key=f"dx_fix_{case.id}_{i}",
                      on_click=case_actions.resolve_with_fix,
                      args=(case.id, root or "", diagnosis.fix_text(fix)),
                      disabled=not resolvable,
                      help="Resolve the case with the diagnosis as its root cause and this "
                           "fix as the fix applied; the knowledge base learns from it."
                           if resolvable else f"Only an open, investigating or mitigated "
                           f"case with a diagnosis can be resolved (this one is {case.status}).")


def _explanation(case: Case) -> None:
    ex = diagnosis.explanation(case)
    if ex is None:
        return
    with st.container(border=True):
        if ex.by == "model":
            sha = f" (sha256 {md(ex.sha256[:12])}…)" if ex.sha256 else ""
            st.caption(f":material/smart_toy: **Written by the local model {md(ex.model, 120)}**"
                       f"{sha}: its wording of the evidence above, not a finding of its own. "
                       "Its ids and numbers were checked against the table.")
        else:
            st.caption(":material/rule: **Explanation templated by the rules** from the "
                       "evidence above (no model wrote it).")
        st.markdown("\n\n".join(f"_{md(line, 1500)}_" for line in ex.text.splitlines()
                                if line.strip()))
