"""The one message every destination formats: a case event as plain JSON (the webhook
body as is; chat, e-mail and ticket comments render it as text)."""

from __future__ import annotations

from typing import Any

from appliance.cases.model import UNDETERMINED, Case

HEADLINES = {"opened": "Case opened", "diagnosis": "Diagnosis ready",
             "resolved": "Case resolved", "verified": "Case verified",
             "reopened": "Case reopened", "test": "Test message"}


def case_link(console_url: str, case_id: str) -> str | None:
    return f"{console_url.rstrip('/')}/cases?case={case_id}" if console_url else None


def build(event: str, case: Case, console_url: str, at: str) -> dict[str, Any]:
    """The message of ``event`` for ``case`` as it stands now."""
    diagnosis = case.root_cause if case.root_cause not in (None, UNDETERMINED) else None
    return {"event": event, "at": at, "case_id": case.id, "title": case.title,
            "type": str(case.failure_type), "service": case.service, "status": case.status,
            "onset": case.onset_at, "diagnosis": diagnosis, "confidence": case.confidence,
            "resolution": case.resolution.fix_applied if event in ("resolved", "verified")
            else None,
            "link": case_link(console_url, case.id)}


def as_of(msg: dict[str, Any], details: dict[str, Any]) -> None:
    """Set what the event's audit entry itself says (an RCA run's diagnosis and
    confidence, a status change's new status): the case may have moved on since."""
    if "to" in details and isinstance(details["to"], str):
        msg["status"] = details["to"]
    if msg["event"] == "diagnosis" and "confidence" in details:
        cause = details.get("root_cause")
        msg["diagnosis"] = cause if cause not in (None, UNDETERMINED) else None
        msg["confidence"] = details["confidence"]


def headline(msg: dict[str, Any]) -> str:
    return (f"[Tracehold] {HEADLINES.get(msg['event'], msg['event'])}: "
            f"{msg['type'].replace('_', ' ')} in {msg['service']} ({msg['case_id']})")


def lines(msg: dict[str, Any]) -> list[tuple[str, str]]:
    """The facts as (label, value) rows, the same in every text rendering."""
    conf = msg.get("confidence")
    rows = [("Case", f"{msg['case_id']}: {msg['title']}"), ("Type", msg["type"]),
            ("Service", msg["service"]), ("Status", msg["status"]), ("Onset", msg["onset"]),
            ("Diagnosis", msg.get("diagnosis") or UNDETERMINED if conf is not None
             else "not run yet"),
            ("Confidence", f"{conf:.0%}" if conf is not None else "-")]
    if msg.get("resolution"):
        rows.append(("Fix applied", msg["resolution"]))
    if msg.get("link"):
        rows.append(("Console", msg["link"]))
    return rows


def text(msg: dict[str, Any]) -> str:
    return "\n".join([headline(msg), ""] + [f"{k}: {v}" for k, v in lines(msg)])
