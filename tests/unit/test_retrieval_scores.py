"""Retrieval scores in every common instrumentation's form feed one signal: the plain
list (``tracehold.retrieval.scores``), the GenAI conventions' ``gen_ai.retrieval.documents``
(JSON text, structured, or on an event) and OpenInference's flattened
``retrieval.documents.N.document.score``. Spans go through the real OTLP encoding,
decoding and row building into a real span store, and the retrieval-drift detector
fires the same on each form."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from appliance.detect import quality
from appliance.detect.windows import Windows
from appliance.ingest.decode import decode_body
from appliance.ingest.limits import IngestLimits
from appliance.ingest.rows import to_rows
from appliance.settings import DetectConfig
from appliance.store.genai_content import retrieved_chunks
from appliance.store.spans import SpanStore

CFG = DetectConfig()
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
PB = "application/x-protobuf"
HEALTHY = [0.3, 0.9, 0.8, 0.85]  # top three average 0.85 (unsorted on purpose)
DRIFTED = [0.2, 0.6, 0.5, 0.55]  # top three average 0.55


def value(v: Any) -> AnyValue:
    """Any Python value as an OTLP AnyValue (lists as arrays, dicts as kvlists)."""
    if isinstance(v, dict):
        return AnyValue(kvlist_value=KeyValueList(
            values=[KeyValue(key=k, value=value(x)) for k, x in v.items()]))
    if isinstance(v, list):
        return AnyValue(array_value=ArrayValue(values=[value(x) for x in v]))
    if isinstance(v, float):
        return AnyValue(double_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    return AnyValue(string_value=str(v))


def _docs(scores: list[float]) -> list[dict[str, Any]]:
    return [{"id": f"doc-{i}", "score": s, "content": f"chunk {i}"} for i, s in enumerate(scores)]


def plain_list(scores: list[float]) -> tuple[dict[str, Any], dict[str, Any]]:
    return {"gen_ai.operation.name": "retrieval", "tracehold.retrieval.scores": scores}, {}


def genai_json(scores: list[float]) -> tuple[dict[str, Any], dict[str, Any]]:
    return {"gen_ai.operation.name": "retrieval",
            "gen_ai.retrieval.documents": json.dumps(
                [{"id": d["id"], "score": d["score"]} for d in _docs(scores)])}, {}


def genai_structured(scores: list[float]) -> tuple[dict[str, Any], dict[str, Any]]:
    return {"gen_ai.operation.name": "retrieval", "gen_ai.retrieval.documents": _docs(scores)}, {}


def genai_on_event(scores: list[float]) -> tuple[dict[str, Any], dict[str, Any]]:
    return ({"gen_ai.operation.name": "retrieval"},
            {"gen_ai.retrieval.documents": json.dumps(_docs(scores))})


def openinference(scores: list[float]) -> tuple[dict[str, Any], dict[str, Any]]:
    attrs: dict[str, Any] = {"openinference.span.kind": "RETRIEVER"}
    for i, d in enumerate(_docs(scores)):
        attrs |= {f"retrieval.documents.{i}.document.{k}": v for k, v in d.items()}
    return attrs, {}


Form = Callable[[list[float]], tuple[dict[str, Any], dict[str, Any]]]
FORMS: dict[str, Form] = {"list": plain_list, "genai-json": genai_json,
                          "genai-structured": genai_structured,
                          "genai-on-event": genai_on_event, "openinference": openinference}


def _span(form: Form, n: int, service_no: int, end: datetime, scores: list[float]) -> Span:
    attrs, event_attrs = form(scores)
    end_ns = int(end.timestamp() * 1e9)
    span = Span(trace_id=bytes([service_no + 1]) + n.to_bytes(15, "big"),
                span_id=(n + 1).to_bytes(8, "big"), name="retrieve handbook",
                kind=Span.SPAN_KIND_CLIENT, start_time_unix_nano=end_ns - 120_000_000,
                end_time_unix_nano=end_ns,
                attributes=[KeyValue(key=k, value=value(v)) for k, v in attrs.items()])
    if event_attrs:
        span.events.add(time_unix_nano=end_ns, name="gen_ai.retrieval.result",
                        attributes=[KeyValue(key=k, value=value(v))
                                    for k, v in event_attrs.items()])
    return span


def _ingest(store: SpanStore, service: str, form: Form, service_no: int) -> None:
    """40 healthy retrievals over the baseline window, then 15 drifted in the recent one."""
    ends = ([(NOW - timedelta(seconds=1700 - 40 * i), HEALTHY) for i in range(40)]
            + [(NOW - timedelta(seconds=85 - 5 * i), DRIFTED) for i in range(15)])
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.append(KeyValue(key="service.name", value=value(service)))
    rs.scope_spans.add().spans.extend(
        _span(form, n, service_no, end, scores) for n, (end, scores) in enumerate(ends))
    limits = IngestLimits()
    rows = to_rows(decode_body(req.SerializeToString(), PB, None, limits), limits, NOW).rows
    for row in rows:
        row.received_at = row.end_time  # arrived as it ended (simulated time)
    store.insert(rows)


@pytest.mark.parametrize("name", sorted(FORMS))
def test_each_form_fills_the_retrieval_scores_column(store: SpanStore, name: str) -> None:
    _ingest(store, name, FORMS[name], 0)
    got = store.read("SELECT retrieval_scores AS s, attributes, events FROM spans "
                     "ORDER BY end_time")
    assert [r["s"] for r in got] == [HEALTHY] * 40 + [DRIFTED] * 15
    # the console's chunk view reads the same documents, with the same scores
    span = {"attributes": json.loads(got[0]["attributes"]), "events": json.loads(got[0]["events"]),
            "retrieval_scores": got[0]["s"]}
    assert [c["score"] for c in retrieved_chunks(span)] == HEALTHY


def test_retrieval_drift_fires_the_same_on_every_form(store: SpanStore) -> None:
    for no, (name, form) in enumerate(sorted(FORMS.items())):
        _ingest(store, name, form, no)
    findings = {f.service: f for f in quality.retrieval_drift(store, CFG, Windows.at(NOW, CFG))}
    assert set(findings) == set(FORMS)
    want = findings["list"]
    assert [(s.name, s.value, s.baseline) for s in want.signals] == [
        ("retrieval_score", 0.55, 0.85)]
    for name, finding in findings.items():
        assert finding.failure_type == want.failure_type
        assert finding.signals == want.signals, name
        assert finding.onset_at == want.onset_at, name
        assert len(finding.trace_ids) == len(want.trace_ids) == 10, name


def test_a_plain_list_wins_and_documents_without_scores_give_no_signal(
        store: SpanStore) -> None:
    both: Form = lambda s: ({**plain_list(s)[0], **genai_json([0.1] * len(s))[0]}, {})  # noqa: E731
    no_scores: Form = lambda s: ({"gen_ai.retrieval.documents": json.dumps(  # noqa: E731
        [{"id": "a", "content": "x"}, "plain text"])}, {})
    _ingest(store, "both", both, 0)
    _ingest(store, "none", no_scores, 1)
    rows = store.read("SELECT service_name AS s, any_value(retrieval_scores) AS v "
                      "FROM spans GROUP BY ALL ORDER BY s")
    assert [(r["s"], r["v"]) for r in rows] == [("both", HEALTHY), ("none", None)]


def test_openinference_document_scores_survive_the_attribute_limit() -> None:
    """An attribute that feeds a typed column is kept beyond the count limit."""
    limits = IngestLimits(max_attributes_per_span=4)
    attrs, _ = openinference(HEALTHY)  # 1 + 4 x 3 attributes
    req = ExportTraceServiceRequest()
    req.resource_spans.add().scope_spans.add().spans.append(Span(
        trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="r", start_time_unix_nano=1,
        end_time_unix_nano=2, attributes=[KeyValue(key=k, value=value(v))
                                          for k, v in attrs.items()]))
    (row,) = to_rows(decode_body(req.SerializeToString(), PB, None, limits), limits, NOW).rows
    assert row.genai["retrieval_scores"] == HEALTHY
    assert row.dropped_attributes_count > 0
