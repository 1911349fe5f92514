"""Audit entries for things another process does (the CLI's `keys create/revoke`, the
first key made by `up`).

Choice: when the daemon answers, the entry goes through its loopback-only
``POST /api/v1/audit`` (the daemon owns DuckDB). When no stack runs, the CLI opens the
DuckDB file itself for this one append (DuckDB's file lock keeps it to one process).
If neither works the caller gets an error to report; the key change has happened.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from appliance.casework.client import DaemonClient, cli_actor
from appliance.casework.services import Records, records_for
from appliance.errors import DaemonUnavailable, TraceholdError
from appliance.settings import Settings
from appliance.stack import state
from appliance.store.spans import SpanStore


@contextlib.contextmanager
def local_records(s: Settings) -> Iterator[Records]:
    """The record stores on the DuckDB file, for when no daemon owns it."""
    store = SpanStore(s.span_db)
    try:
        yield records_for(store, s)
    finally:
        store.close()


def daemon_running(s: Settings) -> bool:
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
    with local_records(s) as records:
        return records.audit.append(actor, action, subject, details)


def key_change(s: Settings, action: str, key_id: str, name: str) -> None:
    """Audit an API key change made by the CLI; the change is done either way, so a
    failure to record it is a warning on stderr, not an error."""
    try:
        record(s, action, f"key:{key_id}", {"name": name})
    except TraceholdError as exc:
        print(f"warning: {action} {key_id} is done but not in the audit log: {exc.message}",
              file=sys.stderr)
