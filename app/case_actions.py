"""The actions on one case: assign, change status, note, resolve, verify, export; and
the diagnosis' own two, "Run again" and "Resolve with this fix" (their buttons sit in the
diagnosis panel, app/case_diagnosis.py, which shows their outcome).

Each runs in its button's callback, before the page reruns, so the case drawn after
it is the one the daemon just wrote. The daemon is the judge of every action: a
transition it refuses shows its own reason. The outcome stays beside the actions
until the next one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

import streamlit as st

from appliance.cases.model import STATUSES, Case
from appliance.cases.transitions import TRANSITIONS
from appliance.console import session, shared
from appliance.console.casework_client import CaseworkClient, Refused
from appliance.console.panels import BackendDown
from appliance.console.safe_text import md

T = TypeVar("T")
OUTCOMES = ("outcome", "dx_outcome")


def _key(case_id: str, name: str) -> str:
    return f"ca_{name}_{case_id}"


def show_outcome(cid: str, where: str = "outcome") -> None:
    """The last action's outcome, where its button was (``outcome``: beside the actions;
    ``dx_outcome``: in the diagnosis panel)."""
    outcome = st.session_state.get(_key(cid, where))
    if outcome:
        kind, text = outcome
        {"ok": st.success, "refused": st.error, "down": st.warning}[kind](text)


def render(case: Case) -> None:
    cid = case.id
    show_outcome(cid)

    with st.form(_key(cid, "assign_form"), border=False):
        st.text_input("Assignee", value=case.assignee or shared.user() or "",
                      key=_key(cid, "assignee"), max_chars=200)
        st.form_submit_button("Assign", on_click=_assign, args=(cid,))

    _status_form(case)

    with st.form(_key(cid, "note_form"), border=False, clear_on_submit=True):
        st.text_area("Note", key=_key(cid, "note"), height=80)
        st.form_submit_button("Add note", on_click=_note, args=(cid,))

    with st.form(_key(cid, "resolve_form"), border=False):
        st.text_area("Root cause", key=_key(cid, "root_cause"), height=80)
        st.text_area("Fix applied", key=_key(cid, "fix"), height=80)
        st.form_submit_button("Resolve", on_click=_resolve, args=(cid,))

    st.button("Verify now", on_click=_verify, args=(cid,), key=_key(cid, "verify"),
              help="The case's own detector judges the current window: back to baseline "
                   "makes the case verified, otherwise it goes back to investigating. "
                   "Only a resolved case can be verified.")
    _export(cid)


def _status_form(case: Case) -> None:
    cid, current = case.id, case.status
    allowed = sorted(t for (f, t), how in TRANSITIONS.items() if f == current and how == "status")
    # every other status is offered: the daemon says why one is not possible
    options = allowed + [s for s in STATUSES if s != current and s not in allowed]
    with st.form(_key(cid, "status_form"), border=False):
        st.selectbox("New status", options, key=_key(cid, "status"),
                     help=f"From {current}: " + (", ".join(allowed) or "none by a status change")
                     + ". Resolve and verify have their own actions.")
        st.text_input("Reason (optional)", key=_key(cid, "reason"), max_chars=4000)
        st.form_submit_button("Change status", on_click=_set_status, args=(cid,))


# ---------------------------------------------------------------- callbacks

def _run(cid: str, call: Callable[[CaseworkClient], T], done: Callable[[T], str],
         where: str = "outcome") -> bool:
    """Do one action; its outcome replaces the previous one (wherever that was shown)."""
    try:
        result = call(session.client())
    except Refused as exc:
        outcome = ("refused", f"Refused by the daemon: {md(exc.reason, 600)}")
    except BackendDown as exc:
        outcome = ("down", f"Not done: {md(exc, 300)}. Try again once it is back.")
    else:
        outcome = ("ok", done(result))
    for name in OUTCOMES:
        st.session_state.pop(_key(cid, name), None)
    st.session_state[_key(cid, where)] = outcome
    return outcome[0] == "ok"


def _assign(cid: str) -> None:
    name = (st.session_state.get(_key(cid, "assignee")) or "").strip() or None
    _run(cid, lambda c: c.assign(cid, name),
         lambda case: f"Assigned to {md(case.assignee)}." if case.assignee else "Unassigned.")


def _set_status(cid: str) -> None:
    status = st.session_state[_key(cid, "status")]
    reason = (st.session_state.get(_key(cid, "reason")) or "").strip()
    _run(cid, lambda c: c.set_status(cid, status, reason),
         lambda case: f"Status is now {md(case.status)}.")


def _note(cid: str) -> None:
    text = st.session_state.get(_key(cid, "note")) or ""
    if not text.strip():
        st.session_state[_key(cid, "outcome")] = ("refused", "A note needs some text.")
        return
    _run(cid, lambda c: c.note(cid, text), lambda case: "Note added.")


def _resolve(cid: str) -> None:
    root = (st.session_state.get(_key(cid, "root_cause")) or "").strip()
    fix = (st.session_state.get(_key(cid, "fix")) or "").strip()
    if not root or not fix:
        st.session_state[_key(cid, "outcome")] = (
            "refused", "Resolving needs both the root cause and the fix applied.")
        return
    _run(cid, lambda c: c.resolve(cid, root, fix), lambda case: "Resolved.")


def run_again(cid: str, runs: int) -> None:
    """Queue another RCA run; ``runs`` (the runs so far) lets the panel wait for the next."""
    if _run(cid, lambda c: c.run_rca(cid),
            lambda _: "Queued: the RCA worker runs it next; this diagnosis updates by "
                      "itself when it ends.", where="dx_outcome"):
        st.session_state[_key(cid, "rca_queued")] = (runs, time.monotonic())


def resolve_with_fix(cid: str, root_cause: str, fix: str) -> None:
    """Resolve with the diagnosis as root cause and the suggested fix as the fix applied;
    the daemon adds the resolved case to the knowledge base."""
    _run(cid, lambda c: c.resolve(cid, root_cause, fix),
         lambda case: f"Resolved with this fix; the case is now **{md(case.status)}**. "
                      "Press Verify now once it has had time to work.", where="dx_outcome")


def queued(cid: str) -> tuple[int, float] | None:
    """(runs when "Run again" was pressed, when) while that run is awaited."""
    value = st.session_state.get(_key(cid, "rca_queued"))
    return value if isinstance(value, tuple) else None


def forget_queued(cid: str, landed_run: int | None = None) -> None:
    """Stop waiting; once the run has landed its "Queued" outcome says so instead."""
    st.session_state.pop(_key(cid, "rca_queued"), None)
    if landed_run is not None and _key(cid, "dx_outcome") in st.session_state:
        st.session_state[_key(cid, "dx_outcome")] = (
            "ok", f"Run {landed_run} has finished: the diagnosis above is its answer.")


def _verify(cid: str) -> None:
    def done(case: Case) -> str:
        detail = case.verifications[-1].detail if case.verifications else None
        return f"Verification: the case is now **{md(case.status)}**. {md(detail or '', 400)}"
    _run(cid, lambda c: c.check(cid), done)


# ---------------------------------------------------------------- export

def _export(cid: str) -> None:
    """One click: the zip is built only when the button is pressed (each export is audited).

    The bytes come from a callable Streamlit runs on its own thread, where no Streamlit
    command works; its outcome goes into a plain dict the next run shows."""
    client = session.client()  # made here: the signed-in user is known in the script run
    log: dict[str, str] = st.session_state.setdefault(_key(cid, "export"), {})

    def build() -> bytes:
        try:
            data = client.export(cid)
        except (Refused, BackendDown) as exc:
            log.update(error=str(exc), at=datetime.now(UTC).strftime("%H:%M:%S"))
            raise
        log.update(error="", ok=f"{len(data):,} bytes", at=datetime.now(UTC).strftime("%H:%M:%S"))
        return data

    st.download_button("Export evidence (signed zip)", data=build, file_name=f"tracehold-{cid}.zip",
                       mime="application/zip", on_click="ignore", key=_key(cid, "export_btn"),
                       help="Spans, metric windows, RCA, audit chain proof and the report, "
                            "signed; check it offline with `tracehold verify-export`.")
    if log.get("error"):
        st.warning(f"The export at {log['at']} UTC failed: {md(log['error'], 300)}")
    elif log.get("ok"):
        st.caption(f"Last export at {log['at']} UTC: {log['ok']}.")
