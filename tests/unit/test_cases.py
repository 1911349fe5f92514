"""Cases through the API: dedup, the status transition table, unknown ids, note size,
RCA rules, and who did what."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.cases.model import STATUSES, UNDETERMINED
from appliance.cases.transitions import TRANSITIONS
from appliance.records import Records
from appliance.store.spans import SpanStore
from tests.casework import audit_count, call, case_body, open_records

USER = {"x-tracehold-user": "ana"}


@pytest.fixture
def records(tmp_path: Path) -> Iterator[Records]:
    r = open_records(tmp_path, case_note_max_kib=64)  # the default, pinned: tests rely on it
    yield r
    r.store.close()


def _open(store: SpanStore, **extra: Any) -> dict[str, Any]:
    r = call(store, "POST", "/api/v1/cases", json=case_body(**extra))
    assert r.status_code in (200, 201), r.text
    data: dict[str, Any] = r.json()
    return data


def test_open_returns_the_case_json(records: Records) -> None:
    call(records.store, "POST", "/api/v1/changes",
         json={"kind": "model_swap", "service": "rag-api", "from": "m1", "to": "m2"})
    r = call(records.store, "POST", "/api/v1/cases", json=case_body())
    assert r.status_code == 201
    case = r.json()
    for key in ("id", "status", "service", "failure_type", "opened_at", "signals", "trace_ids",
                "root_cause", "confidence", "hypotheses", "suggested_fixes", "resolution",
                "context", "timeline", "onset_at", "detected_by", "notes", "assignee"):
        assert key in case, key
    assert case["id"].startswith("case_") and case["status"] == "open"
    assert case["deduplicated"] is False and case["trace_ids"] == ["ab" * 16]
    assert [c["to"] for c in case["context"]["changes"]] == ["m2"]  # change near the onset
    assert case["timeline"][0]["action"] == "case.open"
    assert case["timeline"][0]["actor"] == "detector:eval-drop"


def test_same_signature_joins_the_open_case(records: Records) -> None:
    first = _open(records.store)
    again = _open(records.store, trace_ids=["cd" * 16, "ab" * 16],
                  signals=[{"name": "groundedness", "value": 0.3, "baseline": 0.88,
                            "window": "15m"}])
    assert again["deduplicated"] is True and again["id"] == first["id"]
    assert again["trace_ids"] == ["ab" * 16, "cd" * 16] and again["occurrences"] == 2
    assert again["signals"][0]["value"] == 0.3
    assert [e["action"] for e in again["timeline"]] == ["case.open", "case.evidence"]
    other_service = _open(records.store, service="billing")
    other_type = _open(records.store, failure_type="retrieval_drift")
    assert len({first["id"], other_service["id"], other_type["id"]}) == 3
    # a resolved case is not joined: the same failure again is a new incident
    call(records.store, "POST", f"/api/v1/cases/{first['id']}/resolve",
         json={"root_cause": "x", "fix_applied": "y"})
    assert _open(records.store)["id"] != first["id"]
    assert len(call(records.store, "GET", "/api/v1/cases").json()["cases"]) == 4


def test_list_filters(records: Records) -> None:
    a = _open(records.store)
    _open(records.store, service="billing", failure_type="provider_error")
    got = call(records.store, "GET", "/api/v1/cases",
               params={"service": "rag-api", "status": "open"}).json()["cases"]
    assert [c["id"] for c in got] == [a["id"]]
    got = call(records.store, "GET", "/api/v1/cases",
               params={"failure_type": "provider_error"}).json()["cases"]
    assert [c["service"] for c in got] == ["billing"]
    r = call(records.store, "GET", "/api/v1/cases", params={"status": "closed"})
    assert r.status_code == 400 and "status must be one of" in r.json()["error"]


# How to bring a fresh case into each status, by the API.
_PATHS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "open": [],
    "investigating": [("status", {"status": "investigating"})],
    "mitigated": [("status", {"status": "mitigated"})],
    "resolved": [("resolve", {"root_cause": "r", "fix_applied": "f"})],
    "verified": [("resolve", {"root_cause": "r", "fix_applied": "f"}),
                 ("verify", {"back_to_baseline": True})],
}


def _case_in(store: SpanStore, status: str) -> str:
    case_id = _open(store, signature=f"sig-{status}")["id"]
    for action, body in _PATHS[status]:
        r = call(store, "POST", f"/api/v1/cases/{case_id}/{action}", json=body)
        assert r.status_code == 200, r.text
    return case_id


def _action_for(target: str) -> tuple[str, dict[str, Any]]:
    if target == "resolved":
        return "resolve", {"root_cause": "r", "fix_applied": "f"}
    if target == "verified":
        return "verify", {"back_to_baseline": True}
    return "status", {"status": target}


INVALID = [(a, b) for a in STATUSES for b in STATUSES if (a, b) not in TRANSITIONS]


@pytest.mark.parametrize(("current", "target"), INVALID)
def test_every_invalid_transition_is_409(records: Records, current: str, target: str) -> None:
    case_id = _case_in(records.store, current)
    before = (call(records.store, "GET", f"/api/v1/cases/{case_id}").json(),
              audit_count(records.store))
    action, body = _action_for(target)
    r = call(records.store, "POST", f"/api/v1/cases/{case_id}/{action}", json=body)
    assert r.status_code == 409, (current, target, r.text)
    assert r.json()["title"] == "Conflict" and current in r.json()["error"]
    after = (call(records.store, "GET", f"/api/v1/cases/{case_id}").json(),
             audit_count(records.store))
    assert after == before  # nothing written


@pytest.mark.parametrize(("current", "target"), sorted(TRANSITIONS))
def test_every_valid_transition_works(records: Records, current: str, target: str) -> None:
    case_id = _case_in(records.store, current)
    action, body = _action_for(target)
    if (current, target) == ("resolved", "investigating"):
        body = {"status": "investigating", "reason": "came back"}
    r = call(records.store, "POST", f"/api/v1/cases/{case_id}/{action}", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == target


def test_status_cannot_shortcut_resolve_or_verify(records: Records) -> None:
    case_id = _case_in(records.store, "open")
    r = call(records.store, "POST", f"/api/v1/cases/{case_id}/status",
             json={"status": "resolved"})
    assert r.status_code == 409 and "`resolve`" in r.json()["error"]


def test_failed_verification_reopens(records: Records) -> None:
    case_id = _case_in(records.store, "resolved")
    r = call(records.store, "POST", f"/api/v1/cases/{case_id}/verify", headers={
        "x-tracehold-user": "detector:verifier"}, json={
        "back_to_baseline": False,
        "checks": [{"signal": "groundedness", "value": 0.5, "baseline": 0.88}]})
    case = r.json()
    assert case["status"] == "investigating" and case["resolution"]["verified_at"] is None
    assert case["verifications"][0]["checks"][0]["value"] == 0.5
    assert case["timeline"][-1]["actor"] == "detector:verifier"


@pytest.mark.parametrize(("method", "suffix", "body"), [
    ("GET", "", None), ("GET", "/export", None),
    ("POST", "/assign", {"assignee": "x"}), ("POST", "/status", {"status": "mitigated"}),
    ("POST", "/notes", {"text": "x"}), ("POST", "/resolve", {"root_cause": "r",
                                                             "fix_applied": "f"}),
    ("POST", "/verify", {"back_to_baseline": True}),
    ("PUT", "/rca", {"root_cause": "r", "confidence": 0.9}),
])
def test_unknown_case_is_404(records: Records, method: str, suffix: str,
                             body: dict[str, Any] | None) -> None:
    before = audit_count(records.store)
    r = call(records.store, method, f"/api/v1/cases/case_nope{suffix}", json=body)
    assert r.status_code == 404, r.text
    assert r.json() == {"ok": False, "status": 404, "type": "not_found", "title": "Not found",
                        "error": "no case with id 'case_nope'",
                        "request_id": r.headers["x-request-id"]}
    assert audit_count(records.store) == before


def test_ten_megabyte_note_is_413_and_nothing_is_written(records: Records) -> None:
    case_id = _open(records.store)["id"]
    before = (call(records.store, "GET", f"/api/v1/cases/{case_id}").json(),
              audit_count(records.store))
    r = call(records.store, "POST", f"/api/v1/cases/{case_id}/notes",
             content=json.dumps({"text": "x" * (10 * 1024 * 1024)}),
             headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["title"] == "Content too large"
    # just over the limit by its text (the body itself is small enough to read)
    r = call(records.store, "POST", f"/api/v1/cases/{case_id}/notes",
             json={"text": "é" * (32 * 1024 + 1)})
    assert r.status_code == 413 and "65536 bytes" in r.json()["error"]
    after = (call(records.store, "GET", f"/api/v1/cases/{case_id}").json(),
             audit_count(records.store))
    assert after == before
    r = call(records.store, "POST", f"/api/v1/cases/{case_id}/notes", headers=USER,
             json={"text": "n" * 64 * 1024})
    assert r.status_code == 200 and r.json()["notes"][0]["author"] == "ana"
    note_entry = r.json()["timeline"][-1]
    assert note_entry["action"] == "case.note" and note_entry["details"]["bytes"] == 65536


def test_rca_rules_and_result(records: Records) -> None:
    case_id = _open(records.store)["id"]
    url = f"/api/v1/cases/{case_id}/rca"
    guess = call(records.store, "PUT", url, json={"root_cause": "model swap",
                                                  "confidence": 0.3})
    assert guess.status_code == 400 and "never a guess" in guess.json()["error"]
    low = call(records.store, "PUT", url, json={"confidence": 0.3}).json()
    assert low["root_cause"] == UNDETERMINED
    r = call(records.store, "PUT", url, headers={"x-tracehold-user": "detector:rca"}, json={
        "root_cause": "response model changed to m2", "confidence": 0.82,
        "failure_type": "hallucination",
        "hypotheses": [{"rank": 2, "cause": "index stale", "confidence": 0.1,
                        "evidence_ids": ["span:1"]},
                       {"rank": 1, "cause": "model swap", "confidence": 0.82,
                        "evidence_ids": ["chg_1", "trace:ab"]}],
        "suggested_fixes": [{"title": "pin the model", "detail": "m1-0613"}]})
    case = r.json()
    assert r.status_code == 200 and case["confidence"] == 0.82
    assert [h["rank"] for h in case["hypotheses"]] == [1, 2]
    assert case["suggested_fixes"][0]["title"] == "pin the model" and case["rca"]["runs"] == 2
    assert [e["action"] for e in case["timeline"]].count("rca.run") == 2
    dup = call(records.store, "PUT", url, json={"root_cause": "x", "confidence": 0.9,
                                                "hypotheses": [
                                                    {"rank": 1, "cause": "a", "confidence": 1},
                                                    {"rank": 1, "cause": "b", "confidence": 1}]})
    assert dup.status_code == 400


@pytest.mark.parametrize(("body", "field"), [
    ({"service": "s", "failure_type": "gremlins"}, "failure_type"),
    ({"service": "s", "failure_type": "agent_loop", "trace_ids": ["xyz"]}, "trace_ids"),
    ({"service": "s", "failure_type": "agent_loop", "onset_at": "soon"}, "onset_at"),
    ({"failure_type": "agent_loop"}, "service"),
])
def test_bad_case_body_is_400(records: Records, body: dict[str, Any], field: str) -> None:
    r = call(records.store, "POST", "/api/v1/cases", json=body)
    assert r.status_code == 400 and field in r.json()["error"], r.text
    assert call(records.store, "GET", "/api/v1/cases").json()["cases"] == []


def test_actor_of_every_action_is_recorded(records: Records) -> None:
    case_id = _open(records.store)["id"]
    call(records.store, "POST", f"/api/v1/cases/{case_id}/assign", headers=USER,
         json={"assignee": "bob"})
    call(records.store, "POST", f"/api/v1/cases/{case_id}/status",
         headers={"x-tracehold-user": "cli:root"}, json={"status": "investigating"})
    timeline = call(records.store, "GET", f"/api/v1/cases/{case_id}").json()["timeline"]
    assert [(e["actor"], e["action"]) for e in timeline] == [
        ("detector:eval-drop", "case.open"), ("ana", "case.assign"),
        ("cli:root", "case.status")]
    bad = call(records.store, "POST", f"/api/v1/cases/{case_id}/assign",
               headers={"x-tracehold-user": "<script>"}, json={"assignee": "x"})
    assert bad.status_code == 400


def test_a_detector_finding_opens_a_case_as_is(records: Records) -> None:
    """The body the detectors send (appliance.detect.model.Finding.as_case_request)."""
    from appliance.detect.model import Finding, Signal

    finding = Finding(failure_type="latency_cost_regression", service="rag-api",
                      signature="ttft:p95:up", detector="latency",
                      signals=[Signal("ttft_p95_s", 2.4, 0.6, "recent 90s vs baseline 1800s"),
                               Signal("response_model", "m2", "m1", "recent 90s")],
                      context={"windows": {"recent_s": 90}})
    r = call(records.store, "POST", "/api/v1/cases", json=finding.as_case_request())
    assert r.status_code == 201, r.text
    case = r.json()
    assert case["detected_by"] == "latency"
    assert case["timeline"][0]["actor"] == "detector:latency"
    assert case["signals"][1]["value"] == "m2"
    assert case["context"]["detector"] == {"windows": {"recent_s": 90}}
