"""The signed-in user's side of a console session: a daemon client that acts as that user,
and the audit entry of the sign-in (once per Streamlit session)."""

from __future__ import annotations

import logging

import streamlit as st

from appliance.console import shared
from appliance.console.casework_client import CaseworkClient
from appliance.console.panels import BackendDown, BackendError

log = logging.getLogger("tracehold.console")
_LOGGED_IN = "_tracehold_login_recorded"


def client() -> CaseworkClient:
    return CaseworkClient(shared.config().daemon_url, shared.user())


def _peer() -> str | None:
    # The socket peer (Envoy on loopback). Envoy does not set X-Forwarded-For here, and a
    # header the browser sent could say anything, so it is not taken as the address.
    try:
        return st.context.ip_address
    except Exception:  # no request context (bare mode, tests)
        return None


def record_login() -> str | None:
    """Append ``console.login`` for the signed-in user on a session's first run.

    Returns a warning when it could not be recorded yet; the next run of the session
    tries again, so a daemon that was down does not lose the sign-in."""
    user = shared.user()
    if not user or st.session_state.get(_LOGGED_IN):
        return None
    try:
        client().login(user, _peer())
    except (BackendDown, BackendError) as exc:
        log.warning("console login of %r not recorded yet: %s", user, exc)
        return f"Sign-in not yet recorded in the audit log ({exc}); retrying on the next action."
    st.session_state[_LOGGED_IN] = True
    return None
