"""Which case events exist and which destination gets which.

Events come from the audit log, which already holds every case action with its
sequence number: the outbox worker reads it in order (``outbox.Outbox.enqueue``), so no
hook in the case store is needed and a restart resumes where the last one stopped.
"""

from __future__ import annotations

from typing import Any

from appliance.cases.model import Case
from appliance.settings import Destination

ACTIONS = ("case.open", "rca.run", "case.resolve", "case.verify", "case.status")


def event_of(entry: dict[str, Any]) -> str | None:
    """The notification event an audit entry is, if any."""
    action, details = entry["action"], entry.get("details") or {}
    if action == "case.open":
        return "opened"
    if action == "rca.run":
        return "diagnosis"
    if action == "case.resolve":
        return "resolved"
    if action == "case.verify":  # back to baseline -> verified, else the case reopened
        return "verified" if details.get("to") == "verified" else "reopened"
    if action == "case.status" and details.get("from") in ("resolved", "verified"):
        return "reopened"
    return None


def wants(dest: Destination, event: str, case: Case) -> bool:
    """Does ``dest`` take ``event`` of ``case`` (its events, failure type, service filters)?"""
    return (event in dest.events
            and (not dest.failure_types or str(case.failure_type) in dest.failure_types)
            and (not dest.services or case.service in dest.services))
