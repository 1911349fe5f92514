"""Change events: recorded through the API, malformed times refused, and inferred
from spans when a prompt template, index or response model first appears."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.console import change_markers
from appliance.domain.change_kinds import CHANGE_KINDS, describe, kinds_text
from appliance.records import Records
from appliance.settings import PROJECT_ROOT
from appliance.store.spans import SpanStore
from tests.casework import audit_count, call, open_records
from tests.otlp_payloads import export_request, genai_span

PROTO = {"Content-Type": "application/x-protobuf"}


def test_record_and_list_changes(records: Records) -> None:
    store = records.store
    r = call(store, "POST", "/api/v1/changes", json={
        "kind": "prompt_template", "service": "rag-api", "from": "v6", "to": "v7",
        "at": "2024-05-01T10:00:00+02:00", "note": "new refusal wording"},
        headers={"x-tracehold-user": "ana"})
    assert r.status_code == 201, r.text
    event = r.json()
    assert (event["kind"], event["from"], event["to"], event["source"], event["actor"]) == (
        "prompt_template", "v6", "v7", "manual", "ana")
    assert event["at"] == "2024-05-01T08:00:00Z"  # normalised to UTC
    call(store, "POST", "/api/v1/changes", json={"kind": "deploy", "service": "other"})
    got = call(store, "GET", "/api/v1/changes", params={"service": "rag-api"}).json()["changes"]
    assert [c["id"] for c in got] == [event["id"]]
    window = {"since": "2024-05-01T07:00:00Z", "until": "2024-05-01T09:00:00Z"}
    assert len(call(store, "GET", "/api/v1/changes", params=window).json()["changes"]) == 1
    window["until"] = "2024-05-01T07:30:00Z"
    assert call(store, "GET", "/api/v1/changes", params=window).json()["changes"] == []
    audit = records.audit.entries(action="change.record")
    assert [e["subject"] for e in audit][0] == event["id"]


@pytest.mark.parametrize(("body", "field"), [
    ({"kind": "deploy", "service": "s", "at": "yesterday"}, "at"),
    ({"kind": "deploy", "service": "s", "at": "2024-13-45T99:00:00Z"}, "at"),
    ({"kind": "rollout", "service": "s"}, "kind"),
    ({"kind": "deploy"}, "service"),
    ({"kind": "deploy", "service": "s", "colour": "red"}, "colour"),
])
def test_bad_change_is_400_with_reason_and_writes_nothing(records: Records, body: dict[str, str],
                                                          field: str) -> None:
    before = audit_count(records.store)
    r = call(records.store, "POST", "/api/v1/changes", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["title"] == "Invalid request" and field in r.json()["error"]
    assert call(records.store, "GET", "/api/v1/changes").json()["changes"] == []
    assert audit_count(records.store) == before


@pytest.mark.parametrize("kind", CHANGE_KINDS)
def test_every_kind_is_accepted_and_documented(records: Records, kind: str) -> None:
    r = call(records.store, "POST", "/api/v1/changes",
             json={"kind": kind, "service": "s", "to": "x"})
    assert r.status_code == 201 and r.json()["kind"] == kind, r.text
    # one declaration: the docs' table, the CLI's help and the console's hover text say it
    meaning = describe(kind)
    assert f"| `{kind}` | {meaning}" in (PROJECT_ROOT / "docs" / "casework.md").read_text()
    assert kind in kinds_text() and kind in change_markers.hover(r.json())
    assert meaning in change_markers.hover(r.json())


def test_malformed_since_is_400(records: Records) -> None:
    r = call(records.store, "GET", "/api/v1/changes", params={"since": "last tuesday"})
    assert r.status_code == 400 and "since" in r.json()["error"]


def _ingest(store: SpanStore, service: str, **attrs: str) -> None:
    req = export_request(service, 0, spans=[genai_span(**attrs) for _ in range(3)])
    r = call(store, "POST", "/v1/traces", content=req.SerializeToString(), headers=PROTO)
    assert r.status_code == 200, r.text


def test_changes_are_inferred_from_spans_after_each_batch(records: Records,
                                                          tmp_path: Path) -> None:
    store = records.store
    attrs = {"tracehold.prompt.template.version": "v6", "gen_ai.response.model": "m1-0613"}
    _ingest(store, "rag-api", **attrs)
    assert call(store, "GET", "/api/v1/changes").json()["changes"] == []  # baseline only
    _ingest(store, "rag-api", **attrs)  # the same values again: nothing new
    _ingest(store, "rag-api", **{**attrs, "tracehold.prompt.template.version": "v7"})
    _ingest(store, "other", **{**attrs, "tracehold.prompt.template.version": "v7"})  # baseline
    changes = call(store, "GET", "/api/v1/changes").json()["changes"]
    assert [(c["service"], c["kind"], c["from"], c["to"], c["source"]) for c in changes] == [
        ("rag-api", "prompt_template", "v6", "v7", "inferred")]
    assert changes[0]["actor"] == "detector:change-inference"
    first_v7 = min(s["start_time"] for s in store.spans(100, service="rag-api")
                   if s["prompt_template_version"] == "v7")
    assert changes[0]["at"] == first_v7.isoformat().replace("+00:00", "Z")

    # a restarted daemon seeds what it has seen from the database: no repeats
    store.close()
    again = open_records(tmp_path)
    try:
        _ingest(again.store, "rag-api", **{**attrs, "tracehold.prompt.template.version": "v7"})
        _ingest(again.store, "rag-api", **{**attrs, "gen_ai.response.model": "m2-0125",
                                           "tracehold.index.version": "idx-1"})
        got = [(c["kind"], c["from"], c["to"]) for c in
               call(again.store, "GET", "/api/v1/changes").json()["changes"]]
        assert sorted(got) == [("model_swap", "m1-0613", "m2-0125"),
                               ("prompt_template", "v6", "v7")]
    finally:
        again.store.close()


def test_detectors_can_call_inference_with_span_dicts(records: Records) -> None:
    spans = [{"service_name": "svc", "start_time": None, "index_version": "a"},
             {"service_name": "svc", "start_time": None, "index_version": "b"}]
    recorded = records.inference.observe(spans)
    assert [(c["kind"], c["from"], c["to"]) for c in recorded] == [("index_refresh", "a", "b")]
    assert records.inference.observe(spans) == []
