"""Where a case was sent and when (webhook, chat, e-mail, ticket comments), its ticket
with a "Create ticket" button, and, for the Stack page, each destination's health with
"Retry dead letters". Everything comes from the daemon's /api/v1/notify routes."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from appliance.cases.model import Case
from appliance.console import session
from appliance.console.casework_client import CaseworkClient, Refused
from appliance.console.panels import BackendDown, panel
from appliance.console.safe_text import md

_KEY = "cn_outcome_{}"


def _when(value: str | None) -> str:
    return pd.Timestamp(value).strftime("%Y-%m-%d %H:%M:%S") if value else "—"


def render(client: CaseworkClient, case: Case) -> None:
    """The "Sent to" panel of the case page."""
    with panel("Sent to"), st.container(key="cn_sent_to"):  # key: a handle for tests
        try:
            data: dict[str, Any] = client.get(f"/api/v1/cases/{case.id}/notifications")
        except (BackendDown, Refused) as exc:
            st.caption(f"Notifications unavailable: {md(exc, 200)}")
            return
        _ticket(case.id, data)
        messages = data["messages"]
        if not messages:
            st.caption("Not sent anywhere yet (no destination takes this case's events, or "
                       "none is configured: settings `notify.destinations`).")
            return
        # the panel sits in the narrow column: short columns, errors below the table
        st.table(pd.DataFrame([{
            "to": m["destination"], "event": m["event"], "state": m["state"],
            "at (UTC)": _short(m["sent_at"] or m["last_try_at"] or m["created_at"]),
            "tries": m["tries"]} for m in reversed(messages)]).set_index("to"))
        for m in messages:
            if m["state"] != "sent" and m["last_error"]:
                st.caption(f"{md(m['destination'], 40)} ({m['state']}, {m['event']}): "
                           f"{md(m['last_error'], 300)}")


def _short(value: str | None) -> str:
    return pd.Timestamp(value).strftime("%m-%d %H:%M:%S") if value else "—"


def _ticket(case_id: str, data: dict[str, Any]) -> None:
    outcome = st.session_state.get(_KEY.format(case_id))
    if outcome:
        (st.success if outcome[0] == "ok" else st.error)(outcome[1])
    ticket = data.get("ticket")
    if ticket and ticket["state"] == "created":
        st.markdown(f"**Ticket** in {md(ticket['tracker'])}: [{md(ticket['ref'])}]"
                    f"({ticket['url']}) · {_when(ticket['created_at'])} UTC")
    elif ticket:
        st.error(f"Creating the {md(ticket['tracker'])} ticket failed "
                 f"({_when(ticket['updated_at'])} UTC): {md(ticket['error'] or '', 400)}",
                 icon=":material/error:")
    trackers = data.get("trackers") or []
    if not trackers:
        if not ticket:
            st.caption("No ticket tracker is configured (settings `notify.github`, "
                       "`notify.jira`).")
        return
    if ticket and ticket["state"] == "created":
        return  # one ticket per case
    cols = st.columns(len(trackers))
    for col, name in zip(cols, trackers, strict=True):
        col.button(f"Create ticket ({name})", key=f"cn_ticket_{name}_{case_id}",
                   on_click=_create, args=(case_id, name))


def _create(case_id: str, tracker: str) -> None:
    try:
        t = session.client().post(f"/api/v1/cases/{case_id}/ticket", {"to": tracker},
                                  timeout=60)
        said = "already had" if t.get("existing") else "created"
        outcome = ("ok", f"{said} ticket {t['ref']} in {tracker}: {t['url']}")
    except Refused as exc:
        outcome = ("refused", exc.reason)
    except BackendDown as exc:
        outcome = ("refused", str(exc))
    st.session_state[_KEY.format(case_id)] = outcome


def destinations() -> None:
    """The Stack page's "Notifications" panel: each destination's health."""
    with panel("Notifications"):
        try:
            data = session.client().get("/api/v1/notify/health")
        except (BackendDown, Refused) as exc:
            st.caption(f"Notifications unavailable: {md(exc, 200)}")
            return
        error = st.session_state.pop("cn_retry_error", None)
        if error:
            st.error(md(error, 300))
        rows = data["destinations"]
        if not rows:
            st.caption("Nothing sent yet (settings `notify.destinations`).")
            return
        failing = [r["destination"] for r in rows if r["failing"]]
        if failing:
            st.warning("Failing: " + ", ".join(failing), icon=":material/warning:")
        st.table(pd.DataFrame([{
            "destination": r["destination"], "state": "FAILING" if r["failing"] else "ok",
            "pending": r["pending"], "dead letters": r["dead"],
            "last sent (UTC)": _when(r["last_sent_at"]), "last error": r["last_error"] or ""}
            for r in rows]).set_index("destination"))
        if any(r["dead"] for r in rows):
            st.button("Retry dead letters", key="cn_retry_all", on_click=_retry_all)


def _retry_all() -> None:
    try:
        session.client().post("/api/v1/notify/retry", {})
    except (BackendDown, Refused) as exc:
        st.session_state["cn_retry_error"] = str(exc)
