"""Audit entries for things another process does (the CLI's `keys create/revoke`, the
first key made by `up`).

Choice: when the daemon answers, the entry goes through its loopback-only
``POST /api/v1/audit`` (the daemon owns DuckDB). When no stack runs, the CLI opens the
DuckDB file itself for this one append (DuckDB's file lock keeps it to one process).
If neither works the caller gets an error to report; the key change has happened.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from appliance.cli.client import DaemonClient, cli_actor
from appliance.errors import DaemonUnavailable, TraceholdError

if TYPE_CHECKING:
    from appliance.settings import Settings


def daemon_running(s: Settings) -> bool:
    from appliance.stack import state  # the component declarations load only when asked

    return state.read(s.state_file) is not None


def record(s: Settings, action: str, subject: str, details: dict[str, Any]) -> dict[str, Any]:
    actor = cli_actor()
    try:
        entry: dict[str, Any] = DaemonClient(s, actor, timeout=10).json(
            "POST", "/api/v1/audit", json={"action": action, "subject": subject,
                                           "details": details})
        return entry
    except DaemonUnavailable:
        if daemon_running(s):
            raise
    from appliance.records import opened  # DuckDB loads only for this fallback

    with opened(s) as records:
        return records.audit.append(actor, action, subject, details)


def key_change(s: Settings, action: str, key_id: str, name: str) -> None:
    """Audit an API key change made by the CLI; the change is done either way, so a
    failure to record it is a warning on stderr, not an error."""
    try:
        record(s, action, f"key:{key_id}", {"name": name})
    except TraceholdError as exc:
        print(f"warning: {action} {key_id} is done but not in the audit log: {exc.message}",
              file=sys.stderr)
