"""OTLP decode and row building: appliance.ingest.decode, .rows, .attributes, .genai
(rules in appliance.ingest.limits)."""

from __future__ import annotations

import base64
import gzip
import json
import tracemalloc
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from appliance.errors import MalformedPayload, PayloadTooLarge, UnsupportedMediaType
from appliance.ingest import conventions as cv
from appliance.ingest.decode import decode_body
from appliance.ingest.limits import IngestLimits
from appliance.ingest.rows import SpanRow, body_rows, to_rows

PB = "application/x-protobuf"
LIMITS = IngestLimits()
NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
T0 = 1_700_000_000_123_456_789
TRACE, SPAN, PARENT = bytes(range(1, 17)), bytes(range(21, 29)), bytes(range(31, 39))


def any_value(value: Any) -> AnyValue:
    if isinstance(value, AnyValue):
        return value
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list):
        out = AnyValue()
        out.array_value.values.extend(any_value(v) for v in value)
        return out
    if isinstance(value, dict):
        out = AnyValue()
        out.kvlist_value.values.extend(kv(k, v) for k, v in value.items())
        return out
    return AnyValue(string_value=value)


def kv(key: str, value: Any) -> KeyValue:
    return KeyValue(key=key, value=any_value(value))


def make_span(attributes: dict[str, Any] | None = None, **fields: Any) -> Span:
    span = Span(trace_id=TRACE, span_id=SPAN, name="chat gpt-4o", kind=Span.SPAN_KIND_CLIENT,
                start_time_unix_nano=T0, end_time_unix_nano=T0 + 1_500_000_000)
    span.attributes.extend(kv(k, v) for k, v in (attributes or {}).items())
    for name, value in fields.items():
        if name in ("events", "links"):
            getattr(span, name).extend(value)
        elif name == "status":
            span.status.CopyFrom(value)
        else:
            setattr(span, name, value)
    return span


def make_request(*spans: Span, service: str | None = "checkout") -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    if service is not None:
        rs.resource.attributes.append(kv("service.name", service))
    rs.resource.attributes.append(kv("host.name", "node-1"))
    ss = rs.scope_spans.add()
    ss.scope.name = "openai.instrumentation"
    ss.spans.extend(spans)
    return request


def rows_of(request: ExportTraceServiceRequest, limits: IngestLimits = LIMITS) -> list[SpanRow]:
    body = request.SerializeToString()
    batch = to_rows(decode_body(body, PB, None, limits), limits, NOW)
    assert batch.rejected_spans == 0
    # what ingest runs (the native walker, or Python where it leaves the request) agrees
    assert body_rows(body, PB, None, limits, NOW) == batch
    return batch.rows


def one_row(attributes: dict[str, Any] | None = None, **fields: Any) -> SpanRow:
    (row,) = rows_of(make_request(make_span(attributes, **fields)))
    return row


def otlp_json(request: ExportTraceServiceRequest) -> dict[str, Any]:
    """OTLP/JSON as the spec writes it: camelCase, ids in hex (protobuf JSON uses base64)."""
    doc = json_format.MessageToDict(request)
    for rs in doc.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for span in ss.get("spans", []):
                for holder in (span, *span.get("links", [])):
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if key in holder:
                            holder[key] = base64.b64decode(holder[key]).hex()
    return doc


# ------------------------------------------------------------------ protobuf rows


def test_protobuf_span_becomes_a_row_with_every_field() -> None:
    event = Span.Event(name="retry", time_unix_nano=T0 + 5_000, attributes=[kv("attempt", 2)])
    link = Span.Link(trace_id=bytes(16 * [9]), span_id=bytes(8 * [8]),
                     attributes=[kv("rel", "follows")])
    row = one_row(
        {"gen_ai.request.model": "gpt-4o", "flag": True, "ratio": 0.5, "n": 3,
         "tags": ["a", 1, 2.5, False], "nested": {"k": "v", "inner": [1, 2]},
         "blob": b"\x00\xffbin", "nan": float("nan"), "inf": float("-inf")},
        parent_span_id=PARENT, events=[event], links=[link], dropped_attributes_count=2,
        dropped_events_count=1, status=Status(code=Status.STATUS_CODE_ERROR, message="boom"))
    assert row.trace_id == TRACE.hex() and row.span_id == SPAN.hex()
    assert row.parent_span_id == PARENT.hex()
    assert (row.name, row.kind, row.service_name) == ("chat gpt-4o", "client", "checkout")
    assert row.scope_name == "openai.instrumentation"
    assert row.start_time == datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC)
    assert row.end_time - row.start_time == timedelta(seconds=1.5)
    assert row.duration_ms == 1500.0
    assert (row.status_code, row.status_message) == ("error", "boom")
    assert row.attributes == {
        "gen_ai.request.model": "gpt-4o", "flag": True, "ratio": 0.5, "n": 3,
        "tags": ["a", 1, 2.5, False], "nested": {"k": "v", "inner": [1, 2]},
        "blob": base64.b64encode(b"\x00\xffbin").decode(), "nan": "NaN", "inf": "-Infinity"}
    json.dumps(row.attributes, allow_nan=False)  # JSON-serialisable, strictly
    assert row.resource_attributes == {"service.name": "checkout", "host.name": "node-1"}
    assert row.events == [{"name": "retry", "time": "2023-11-14T22:13:20.123461789Z",
                           "attributes": {"attempt": 2}}]
    assert row.links == [{"trace_id": "09" * 16, "span_id": "08" * 8,
                          "attributes": {"rel": "follows"}}]
    assert row.genai["request_model"] == "gpt-4o"
    assert set(row.genai) == {f.column for f in cv.FIELDS}
    assert (row.dropped_attributes_count, row.dropped_events_count) == (2, 1)
    assert row.received_at == NOW


@pytest.mark.parametrize(("kind", "expected"), [
    (0, "unspecified"), (1, "internal"), (2, "server"), (3, "client"), (4, "producer"),
    (5, "consumer"), (42, "unspecified")])
def test_span_kind(kind: int, expected: str) -> None:
    assert one_row(kind=kind).kind == expected


@pytest.mark.parametrize(("code", "expected"), [(0, "unset"), (1, "ok"), (2, "error")])
def test_status_code(code: int, expected: str) -> None:
    assert one_row(status=Status(code=code)).status_code == expected


def test_missing_service_name_and_parent() -> None:
    (row,) = rows_of(make_request(make_span(), service=None))
    assert row.service_name == "unknown_service"
    assert row.parent_span_id is None


def test_to_rows_accepts_the_official_message_class() -> None:
    request = make_request(make_span({"gen_ai.request.model": "m"}))
    assert to_rows(request, LIMITS, NOW).rows == rows_of(request)


# ------------------------------------------------------------------ JSON and gzip


def test_json_gives_the_same_rows_as_protobuf() -> None:
    request = make_request(make_span(
        {"gen_ai.usage.input_tokens": 12, "gen_ai.response.finish_reasons": ["stop"],
         "x": 1.25, "b": b"\x01\x02"}, parent_span_id=PARENT,
        links=[Span.Link(trace_id=bytes(16 * [7]), span_id=bytes(8 * [6]))],
        events=[Span.Event(name="e", time_unix_nano=T0)]))
    body = json.dumps(otlp_json(request)).encode()
    rows = to_rows(decode_body(body, "application/json", None, LIMITS), LIMITS, NOW).rows
    assert rows == rows_of(request)
    assert rows[0].links[0]["trace_id"] == "07" * 16
    assert rows[0].parent_span_id == PARENT.hex()


def test_json_enum_numbers_or_names_and_int64_strings() -> None:
    span = {"traceId": TRACE.hex().upper(), "spanId": SPAN.hex(), "name": "s",
            "startTimeUnixNano": str(T0), "endTimeUnixNano": T0 + 2_000_000,
            "attributes": [{"key": "gen_ai.usage.output_tokens", "value": {"intValue": "42"}}],
            "status": {"code": "STATUS_CODE_OK"}, "unknownField": {"ignored": True}}
    doc = {"resourceSpans": [{"scopeSpans": [{"spans": [
        {**span, "kind": 2}, {**span, "spanId": PARENT.hex(), "kind": "SPAN_KIND_PRODUCER"}]}]}]}
    batch = to_rows(decode_body(json.dumps(doc).encode(), "application/json; charset=utf-8",
                                None, LIMITS), LIMITS, NOW)
    assert [r.kind for r in batch.rows] == ["server", "producer"]
    assert batch.rows[0].trace_id == TRACE.hex()
    assert batch.rows[0].genai["output_tokens"] == 42
    assert batch.rows[0].attributes["gen_ai.usage.output_tokens"] == 42
    assert batch.rows[0].status_code == "ok"
    assert batch.rows[0].duration_ms == 2.0


@pytest.mark.parametrize("content_type", [PB, "application/protobuf", "application/json"])
@pytest.mark.parametrize("encoding", ["gzip", "GZIP", None, "identity"])
def test_encodings(content_type: str, encoding: str | None) -> None:
    request = make_request(make_span({"gen_ai.request.model": "m"}))
    body = (json.dumps(otlp_json(request)).encode() if content_type.endswith("json")
            else request.SerializeToString())
    if encoding and encoding.lower() == "gzip":
        body = gzip.compress(body)
    rows = to_rows(decode_body(body, content_type, encoding, LIMITS), LIMITS, NOW).rows
    assert [r.genai["request_model"] for r in rows] == ["m"]


def test_multi_member_gzip_is_read_whole() -> None:
    request = make_request(make_span())
    raw = request.SerializeToString()
    body = gzip.compress(raw[:10]) + gzip.compress(raw[10:])
    assert to_rows(decode_body(body, PB, "gzip", LIMITS), LIMITS, NOW).rows == rows_of(request)


@pytest.mark.parametrize(("content_type", "encoding"), [
    ("text/plain", None), (None, None), ("application/grpc", None), (PB, "br"),
    (PB, "zstd"), ("application/json", "deflate")])
def test_unsupported_media(content_type: str | None, encoding: str | None) -> None:
    with pytest.raises(UnsupportedMediaType):
        decode_body(b"", content_type, encoding, LIMITS)


# ------------------------------------------------------------------ invalid UTF-8


def test_invalid_utf8_in_name_and_attribute_is_replaced_not_rejected() -> None:
    request = make_request(make_span({"gen_ai.request.model": "MODEL@@", "k": "VAL@@"},
                                     name="NAME@@"))
    body = request.SerializeToString()
    for marker in (b"MODEL@@", b"VAL@@", b"NAME@@"):
        body = body.replace(marker, marker[:-2] + b"\xff\xfe")
    with pytest.raises(DecodeError):  # what upb's strict classes do with it
        ExportTraceServiceRequest.FromString(body)
    (row,) = to_rows(decode_body(body, PB, None, LIMITS), LIMITS, NOW).rows
    assert row.name == "NAME\ufffd\ufffd"
    assert row.attributes["k"] == "VAL\ufffd\ufffd"
    assert row.genai["request_model"] == "MODEL\ufffd\ufffd"


def test_invalid_utf8_and_lone_surrogates_in_json() -> None:
    ids = f'"traceId":"{TRACE.hex()}","spanId":"{SPAN.hex()}"'
    span = ids + ',"name":"a\\ud800b","attributes":[{"key":"k","value":{"stringValue":"X@@"}}]'
    body = ('{"resourceSpans":[{"scopeSpans":[{"spans":[{' + span + '}]}]}]}').encode()
    body = body.replace(b"X@@", b"X\xff")
    (row,) = to_rows(decode_body(body, "application/json", None, LIMITS), LIMITS, NOW).rows
    assert row.name == "a\ufffdb"
    assert row.attributes["k"] == "X\ufffd"


# ------------------------------------------------------------------ GenAI columns


def _sample(kind: cv.Kind) -> tuple[Any, Any]:
    """(attribute value, expected column value) for a field kind."""
    return {"str": ("v-1", "v-1"), "int": (7, 7), "float": (0.25, 0.25),
            "str_list": ("stop", ["stop"]), "float_list": ([0.5, 1], [0.5, 1.0])}[kind]


def _field(canonical: str) -> cv.GenAIField:
    (field,) = [f for f in cv.FIELDS if f.attribute == canonical]
    return field


@pytest.mark.parametrize(("canonical", "alias"), cv.alias_pairs())
def test_every_alias_fills_its_column(canonical: str, alias: str) -> None:
    field = _field(canonical)
    value, expected = _sample(field.kind)
    row = one_row({alias: value})
    assert row.genai[field.column] == expected
    assert row.attributes[alias] == value  # the raw attribute is kept
    assert [c for c, v in row.genai.items() if v is not None] == [field.column]


@pytest.mark.parametrize("field", cv.FIELDS, ids=lambda f: f.column)
def test_canonical_attribute_fills_its_column_and_wins(field: cv.GenAIField) -> None:
    value, expected = _sample(field.kind)
    other = {"str": "other", "int": 99, "float": 9.5, "str_list": "x",
             "float_list": [9.0]}[field.kind]
    attrs = {alias: other for alias in field.aliases}
    attrs[field.attribute] = value  # last in wire order, still first in priority
    assert one_row(attrs).genai[field.column] == expected


def _distinct(kind: cv.Kind, i: int) -> tuple[Any, Any]:
    return {"str": (f"v{i}", f"v{i}"), "int": (i + 1, i + 1), "float": (i + 0.5, i + 0.5),
            "str_list": (f"r{i}", [f"r{i}"]), "float_list": ([i + 0.5], [i + 0.5])}[kind]


@pytest.mark.parametrize("field", [f for f in cv.FIELDS if len(f.aliases) > 1],
                         ids=lambda f: f.column)
def test_first_alias_in_declared_order_wins(field: cv.GenAIField) -> None:
    values = [_distinct(field.kind, i) for i in range(len(field.aliases))]
    attrs = {alias: values[i][0] for i, alias in reversed(list(enumerate(field.aliases)))}
    assert one_row(attrs).genai[field.column] == values[0][1]
    if field.kind in ("str", "str_list"):  # anything converts to text: take it away
        del attrs[field.aliases[0]]
    else:
        attrs[field.aliases[0]] = {"k": "v"}  # present but not a number: the next alias
    assert one_row(attrs).genai[field.column] == values[1][1]


def test_aliases_in_priority_order_and_unconvertible_values() -> None:
    row = one_row({"llm.token_count.prompt": 5, "gen_ai.usage.prompt_tokens": 4,
                   "gen_ai.usage.input_tokens": "many",  # canonical, does not convert
                   "gen_ai.usage.output_tokens": "17", "gen_ai.response.time_to_first_chunk": 2,
                   "tracehold.retrieval.scores": "[0.5, 0.25]",
                   "gen_ai.response.finish_reasons": ["stop", "length"],
                   "retrieval.scores": ["high"], "gen_ai.request.model": 12,
                   "gen_ai.input.messages": [{"role": "user"}]})
    assert row.genai["input_tokens"] == 4  # first alias in FIELDS order that converts
    assert row.genai["output_tokens"] == 17
    assert row.genai["ttft_s"] == 2.0 and isinstance(row.genai["ttft_s"], float)
    assert row.genai["retrieval_scores"] == [0.5, 0.25]
    assert row.genai["finish_reasons"] == ["stop", "length"]
    assert row.genai["request_model"] == "12"
    assert json.loads(row.genai["input_messages"]) == [{"role": "user"}]
    bad = one_row({"gen_ai.usage.input_tokens": "many", "retrieval.scores": ["high"],
                   "gen_ai.response.time_to_first_chunk": True})
    assert (bad.genai["input_tokens"], bad.genai["retrieval_scores"], bad.genai["ttft_s"]) == (
        None, None, None)
    assert bad.attributes["gen_ai.usage.input_tokens"] == "many"


@pytest.mark.parametrize(("oi_kind", "operation"), sorted(cv.OPENINFERENCE_KINDS.items()))
def test_openinference_kind_maps_to_operation(oi_kind: str, operation: str) -> None:
    assert one_row({cv.OPENINFERENCE_KIND: oi_kind}).genai["operation"] == operation


def test_openinference_kind_does_not_override_operation() -> None:
    row = one_row({cv.OPENINFERENCE_KIND: "LLM", "gen_ai.operation.name": "text_completion"})
    assert row.genai["operation"] == "text_completion"
    assert one_row({cv.OPENINFERENCE_KIND: "CHAIN"}).genai["operation"] is None


def test_evaluation_events_and_attributes_become_eval_scores() -> None:
    def evaluation(name: str, score: Any) -> Span.Event:
        return Span.Event(name=cv.EVALUATION_EVENT, time_unix_nano=T0, attributes=[
            kv(cv.EVALUATION_NAME, name), kv(cv.EVALUATION_SCORE, score)])

    row = one_row({"gen_ai.evaluation.relevance.score": 0.75,
                   "gen_ai.evaluation.tox.city.score": "0.5", "gen_ai.evaluation.score": 1.0},
                  events=[evaluation("faithfulness", 0.9), evaluation("groundedness", 1),
                          evaluation("", 0.1), evaluation("bad", "n/a"),
                          Span.Event(name="other", attributes=[kv(cv.EVALUATION_NAME, "x"),
                                                               kv(cv.EVALUATION_SCORE, 0.3)])])
    assert row.eval_scores == {"relevance": 0.75, "tox.city": 0.5, "faithfulness": 0.9,
                               "groundedness": 1.0}
    assert len(row.events) == 5


# ------------------------------------------------------------------ limits


def test_ten_thousand_attributes_are_truncated_by_the_documented_rule() -> None:
    attrs: dict[str, Any] = {f"junk.{i}": i for i in range(9_995)}
    attrs.update({"gen_ai.request.model": "gpt-4o", "llm.token_count.prompt": 11,
                  cv.OPENINFERENCE_KIND: "TOOL", "gen_ai.evaluation.acc.score": 0.5,
                  "zz.after": "x"})  # five more, all beyond the first 1024
    assert len(attrs) == 10_000
    row = one_row(attrs, dropped_attributes_count=3)
    kept = [f"junk.{i}" for i in range(1024)] + [
        "gen_ai.request.model", "llm.token_count.prompt", cv.OPENINFERENCE_KIND,
        "gen_ai.evaluation.acc.score"]
    assert list(row.attributes) == kept
    assert row.dropped_attributes_count == 3 + 10_000 - len(kept)
    assert row.genai["request_model"] == "gpt-4o"
    assert row.genai["input_tokens"] == 11
    assert row.genai["operation"] == "execute_tool"
    assert row.eval_scores == {"acc": 0.5}


def test_long_values_are_cut_at_a_utf8_boundary_and_marked() -> None:
    limits = IngestLimits(max_attribute_value_bytes=10)
    text = "abcdefghé€xyz"  # é is 2 bytes at 8-9, € is 3 bytes at 10-12
    request = make_request(make_span({
        "k": text, "arr": [text], "euro": "abcdefghi€", "blob": b"0123456789AB"}, name=text))
    assert rows_of(request)[0].attributes["k"] == text  # decoded (and cached) untruncated
    (row,) = rows_of(request, limits)
    assert row.attributes["k"] == "abcdefghé…[truncated 6 bytes]"
    assert row.attributes["arr"] == ["abcdefghé…[truncated 6 bytes]"]
    assert row.attributes["euro"] == "abcdefghi…[truncated 3 bytes]"  # € would cross 10
    assert row.attributes["blob"] == base64.b64encode(b"0123456789").decode() + \
        "…[truncated 2 bytes]"
    assert row.name == "abcdefghé…[truncated 6 bytes]"
    assert row.dropped_attributes_count == 0


@pytest.mark.parametrize(("limit", "raw", "expected"), [
    (1, "€uro".encode(), "…[truncated 6 bytes]"),
    (2, "a€".encode(), "a…[truncated 3 bytes]"),
    (1, b"\x80" * 3, "…[truncated 3 bytes]"),
    (3, b"\x80" * 5, "…[truncated 5 bytes]"),  # garbage: steps back at most 3 bytes
    (5, b"\x80" * 7, "\ufffd\ufffd…[truncated 5 bytes]"),
    (4, "€€".encode(), "€…[truncated 3 bytes]"),
])
def test_truncation_edges(limit: int, raw: bytes, expected: str) -> None:
    placeholder = "\x01" * len(raw)  # same length, so the framing stays valid
    body = make_request(make_span({"k": placeholder})).SerializeToString()
    body = body.replace(placeholder.encode(), raw)
    limits = IngestLimits(max_attribute_value_bytes=limit)
    (row,) = to_rows(decode_body(body, PB, None, limits), limits, NOW).rows
    assert row.attributes["k"] == expected


def test_events_beyond_the_limit_are_dropped_but_evaluations_still_count() -> None:
    events = [Span.Event(name=f"e{i}", time_unix_nano=T0) for i in range(5)]
    events.append(Span.Event(name=cv.EVALUATION_EVENT, attributes=[
        kv(cv.EVALUATION_NAME, "late"), kv(cv.EVALUATION_SCORE, 0.5)]))
    limits = IngestLimits(max_events_per_span=3)
    (row,) = rows_of(make_request(make_span(events=events, dropped_events_count=1)), limits)
    assert [e["name"] for e in row.events] == ["e0", "e1", "e2"]
    assert row.dropped_events_count == 1 + 3
    assert row.eval_scores == {"late": 0.5}


@pytest.mark.parametrize("encoding", [None, "gzip"])
def test_body_size_limit_is_exact(encoding: str | None) -> None:
    raw = make_request(make_span({"k": "v" * 500})).SerializeToString()
    body = gzip.compress(raw) if encoding else raw
    limit = len(raw) if encoding else len(body)
    decode_body(body, PB, encoding, IngestLimits(max_body_bytes=limit))
    with pytest.raises(PayloadTooLarge):
        decode_body(body, PB, encoding, IngestLimits(max_body_bytes=limit - 1))


def test_gzip_bomb_stops_at_the_limit() -> None:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = bytes(1 << 20)
    bomb = b"".join(compressor.compress(chunk) for _ in range(256)) + compressor.flush()
    assert len(bomb) < 1 << 20  # 256 MiB of zeros in well under 1 MiB
    limits = IngestLimits(max_body_bytes=4 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooLarge):
            decode_body(bomb, PB, "gzip", limits)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20  # never inflated much beyond the 4 MiB limit


# ------------------------------------------------------------------ malformed


@pytest.mark.parametrize(("body", "content_type", "encoding"), [
    (b"\x0a\xff\xff\xff\xff\x0f", PB, None),  # length prefix far beyond the body
    (b"\x08", PB, None),  # truncated varint
    (b"not protobuf at all \xff\xfe", PB, None),
    (b"{not json", "application/json", None),
    (b"[1, 2]", "application/json", None),
    (b'{"resourceSpans": 5}', "application/json", None),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"kind": "NOPE"}]}]}]}x',
     "application/json", None),
    (b"\x1f\x8b\x08\x00garbage", PB, "gzip"),
    (gzip.compress(b"abc")[:-4], PB, "gzip"),  # truncated stream
    (b"plain, not gzip", PB, "gzip"),
])
def test_garbage_is_malformed(body: bytes, content_type: str, encoding: str | None) -> None:
    with pytest.raises(MalformedPayload) as info:
        decode_body(body, content_type, encoding, LIMITS)
    assert str(info.value)


def test_decoded_values_are_not_shared_between_rows() -> None:
    attrs = {"list": ["a"], "map": {"k": "v"}, "s": "same"}
    first, second = rows_of(make_request(make_span(attrs), make_span(attrs, span_id=PARENT)))
    first.attributes["list"].append("mutated")
    first.attributes["map"]["k"] = "mutated"
    assert second.attributes == attrs


def test_garbage_inside_an_attribute_is_malformed() -> None:
    # Attributes are parsed lazily (by to_rows): the error still says MalformedPayload.
    body = make_request(make_span({"k": "GARBAGE!"})).SerializeToString()
    body = body.replace(b"\x12\x0a\x0a\x08GARBAGE!", b"\x12\x0a\x0a\x7fGARBAGE!")
    request = decode_body(body, PB, None, LIMITS)
    with pytest.raises(MalformedPayload):
        to_rows(request, LIMITS, NOW)


# ------------------------------------------------------------------ unkeyable spans


def test_spans_without_usable_ids_are_skipped_and_counted() -> None:
    good = make_span(name="good")
    bad = [make_span(trace_id=b""), make_span(span_id=b""), make_span(trace_id=b"\x01" * 8),
           make_span(span_id=b"\x01" * 16), make_span(trace_id=bytes(16)),
           make_span(span_id=bytes(8))]
    request = make_request(good, *bad)
    batch = to_rows(decode_body(request.SerializeToString(), PB, None, LIMITS), LIMITS, NOW)
    assert [r.name for r in batch.rows] == ["good"]
    assert batch.rejected_spans == 6
    doc = otlp_json(make_request(good))
    spans = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans += [{**spans[0], "traceId": "zz" * 16}, {**spans[0], "spanId": "abc"},
              {key: value for key, value in spans[0].items() if key != "spanId"}]
    batch = to_rows(decode_body(json.dumps(doc).encode(), "application/json", None, LIMITS),
                    LIMITS, NOW)
    assert ([r.name for r in batch.rows], batch.rejected_spans) == (["good"], 3)
