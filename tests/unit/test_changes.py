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


def _changes(store: SpanStore) -> list[tuple[str, str, str | None, str | None]]:
    return [(c["service"], c["kind"], c["from"], c["to"]) for c in
            call(store, "GET", "/api/v1/changes").json()["changes"]]


def test_a_fresh_start_records_no_change(records: Records, tmp_path: Path) -> None:
    """The demo's services route between several models, call an embedding model beside a
    chat model and read an index: all of it is the baseline on a fresh start."""
    from appliance.demo.replay import replay

    replay(records.store, tmp_path, 120, 1.5, seed=11)
    models = records.store.read("SELECT service_name, count(DISTINCT response_model) AS n "
                                "FROM spans GROUP BY ALL")
    assert max(r["n"] for r in models) >= 3  # several models per service, and yet:
    assert _changes(records.store) == []


def test_one_batch_of_a_new_service_is_its_baseline(records: Records) -> None:
    store = records.store
    _ingest(store, "router", **{"gen_ai.request.model": "m1", "gen_ai.response.model": "m1-a"})
    _ingest(store, "router", **{"gen_ai.request.model": "m2", "gen_ai.response.model": "m2-a",
                                "tracehold.prompt.template.version": "v1",
                                "gen_ai.data_source.id": "kb",
                                "tracehold.index.version": "idx-1"})
    assert _changes(store) == []


def test_a_new_value_after_the_baseline_is_a_change_from_to(records: Records) -> None:
    store = records.store
    base = {"gen_ai.request.model": "m1", "gen_ai.response.model": "m1-a",
            "tracehold.prompt.template.version": "v1", "gen_ai.data_source.id": "kb",
            "tracehold.index.version": "idx-1"}
    _ingest(store, "rag", **base)
    _ingest(store, "rag", **{**base, "gen_ai.response.model": "m1-a-q4",
                             "tracehold.index.version": "idx-2"})
    _ingest(store, "rag", **{**base, "tracehold.prompt.template.version": "v2"})
    assert sorted(_changes(store)) == [("rag", "index_refresh", "idx-1", "idx-2"),
                                       ("rag", "model_swap", "m1-a", "m1-a-q4"),
                                       ("rag", "prompt_template", "v1", "v2")]
    notes = {c["kind"]: c["note"] for c in records.changes.list()}
    assert notes["model_swap"] == "first seen in spans (request_model m1)"
    assert notes["index_refresh"] == "first seen in spans (data_source_id kb)"
    # a value the slot has shown before is not a new change (a canary flipping back),
    # but it is the value the next change starts from
    _ingest(store, "rag", **base)
    assert len(_changes(store)) == 3
    _ingest(store, "rag", **{**base, "tracehold.prompt.template.version": "v3"})
    assert ("rag", "prompt_template", "v1", "v3") in _changes(store)


def test_a_late_batch_of_the_old_value_is_not_a_change(records: Records) -> None:
    old = [genai_span(**{"tracehold.prompt.template.version": "v0"})]
    for span in old:  # started an hour before the baseline's spans, delivered after them
        span.start_time_unix_nano -= 3_600 * 10**9
    _ingest(records.store, "svc", **{"tracehold.prompt.template.version": "v1"})
    req = export_request("svc", 0, spans=old)
    assert call(records.store, "POST", "/v1/traces", content=req.SerializeToString(),
                headers=PROTO).status_code == 200
    assert _changes(records.store) == []
    _ingest(records.store, "svc", **{"tracehold.prompt.template.version": "v2"})
    assert _changes(records.store) == [("svc", "prompt_template", "v1", "v2")]


def test_a_restart_keeps_the_baseline(records: Records, tmp_path: Path) -> None:
    """Nothing was ever recorded before the restart: the baseline comes from the spans."""
    _ingest(records.store, "svc", **{"tracehold.prompt.template.version": "v1"})
    _ingest(records.store, "svc", **{"tracehold.prompt.template.version": "v2"})
    _ingest(records.store, "svc", **{"tracehold.prompt.template.version": "v1"})  # rollback
    _ingest(records.store, "quiet", **{"tracehold.prompt.template.version": "q1"})
    assert _changes(records.store) == [("svc", "prompt_template", "v1", "v2")]
    records.store.close()
    again = open_records(tmp_path)
    try:
        _ingest(again.store, "quiet", **{"tracehold.prompt.template.version": "q1"})
        _ingest(again.store, "svc", **{"tracehold.prompt.template.version": "v1"})
        assert len(_changes(again.store)) == 1  # seen before the restart: not new
        _ingest(again.store, "quiet", **{"tracehold.prompt.template.version": "q2"})
        _ingest(again.store, "svc", **{"tracehold.prompt.template.version": "v3"})
        assert sorted(_changes(again.store)) == [
            ("quiet", "prompt_template", "q1", "q2"),
            ("svc", "prompt_template", "v1", "v2"),
            ("svc", "prompt_template", "v1", "v3")]  # from the current value (the rollback)
    finally:
        again.store.close()
