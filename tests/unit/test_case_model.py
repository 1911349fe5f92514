"""The Case model is the API's case JSON: every answer about a case parses into ``Case``
and serialises back to exactly the same JSON (same keys, same order, same values), so
the CLI, the console, the export and the report read it typed without changing it."""

from __future__ import annotations

import json
from typing import Any

from appliance.cases.model import Case
from appliance.records import Records
from tests.casework import call, case_body

ANA = {"x-tracehold-user": "ana"}


def _ok(r: Any) -> Any:
    assert r.status_code in (200, 201), r.text
    return r.json()


def _same(data: dict[str, Any]) -> Case:
    case = Case.model_validate(data)
    assert json.dumps(case.model_dump(mode="json")) == json.dumps(data)
    return case


def test_every_case_answer_round_trips(records: Records) -> None:
    s = records.store
    _ok(call(s, "POST", "/api/v1/changes",
             json={"kind": "model_swap", "service": "rag-api", "from": "m1", "to": "m2"}))
    window = {"name": "g", "query": "avg(x)", "start": "2024-01-01T00:00:00Z",
              "end": "2024-01-01T01:00:00Z", "points": [[1704067200, 0.5], [1704067260, 3]]}
    answers = [_ok(call(s, "POST", "/api/v1/cases", json=case_body(
        metric_windows=[window], secondary_types=["agent_loop"],
        context={"provider": "p", "nested": {"n": [1, "x", None]}},
        signals=[{"name": "a", "value": 3, "baseline": 1}, {"name": "b", "value": "m2"}])))]
    cid = answers[0]["id"]
    answers.append(_ok(call(s, "POST", "/api/v1/cases", json=case_body(trace_ids=["cd" * 16]))))
    assert answers[-1]["deduplicated"] is True
    for method, suffix, body in (
        ("POST", "assign", {"assignee": "ana"}),
        ("POST", "status", {"status": "investigating", "reason": "look"}),
        ("POST", "notes", {"text": "é <b>x</b>"}),
        ("PUT", "rca", {"confidence": 0.3}),
        ("PUT", "rca", {"root_cause": "swap", "confidence": 0.8, "model": "m",
                        "failure_type": "hallucination", "secondary_types": ["retrieval_drift"],
                        "details": {"k": [1, "x"]},
                        "hypotheses": [{"rank": 2, "cause": "b", "confidence": 0.1},
                                       {"rank": 1, "cause": "a", "confidence": 0.8,
                                        "evidence_ids": ["t"]}],
                        "suggested_fixes": [{"title": "pin", "source": "kb"}]}),
        ("POST", "resolve", {"root_cause": "r", "fix_applied": "f"}),
        ("POST", "verify", {"back_to_baseline": False, "detail": "no",
                            "checks": [{"signal": "g", "value": 0.5, "baseline": 0.9}]}),
        ("POST", "resolve", {"root_cause": "r2", "fix_applied": "f2"}),
        ("POST", "verify", {"back_to_baseline": True, "checks": [{"signal": "g", "value": 1}]}),
    ):
        answers.append(_ok(call(s, method, f"/api/v1/cases/{cid}/{suffix}", json=body,
                                headers=ANA)))
    answers.append(_ok(call(s, "GET", f"/api/v1/cases/{cid}")))
    listed = _ok(call(s, "GET", "/api/v1/cases"))["cases"]
    for data in answers + listed:
        _same(data)

    case = _same(answers[-1])
    assert case.status == "verified" and case.resolution.verified_at is not None
    assert case.context is not None and case.context.changes[0].from_ == "m1"
    assert case.provider == "p" and case.closed_at == case.resolution.resolved_at
    assert [h.rank for h in case.hypotheses] == [1, 2] and case.rca and case.rca.runs == 2
    assert [e.action for e in case.timeline or []][-1] == "case.verify"
    # the store's own Case is what the API answered
    assert records.cases.get(cid).model_dump(mode="json") == answers[-1]
    # a list answer leaves out context and notes; only an open answers deduplicated
    summary = _same(listed[0])
    assert summary.context is None and summary.notes is None and summary.timeline is None
    assert {"context", "notes", "timeline", "deduplicated"}.isdisjoint(listed[0])
    assert "deduplicated" not in answers[-1] and answers[0]["deduplicated"] is False


def test_the_stored_document_is_the_case_without_answer_only_keys(records: Records) -> None:
    cid = _ok(call(records.store, "POST", "/api/v1/cases", json=case_body()))["id"]
    (row,) = records.store.read("SELECT doc FROM cases WHERE id = ?", [cid])
    doc = json.loads(row["doc"])
    assert "timeline" not in doc and "deduplicated" not in doc
    assert Case.model_validate(doc).model_dump(mode="json") == doc
