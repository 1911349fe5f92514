"""The native OTLP walker (appliance/ingest/_wire.c) against the Python path it stands in
for: the same rows for every request, or the same error; a request it cannot decode
exactly is left to Python (``walk`` returns None), never decoded differently."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from appliance.errors import MalformedPayload
from appliance.ingest import _wire
from appliance.ingest import conventions as cv
from appliance.ingest.attributes import pairs_cache
from appliance.ingest.decode import decode_body
from appliance.ingest.limits import IngestLimits
from appliance.ingest.rows import RowBatch, body_rows, to_rows
from tests.unit.test_otlp_decode import PARENT, PB, kv, make_request, make_span

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
SMALL = IngestLimits(max_attribute_value_bytes=64, max_attributes_per_span=6,
                     max_events_per_span=2)


def walked(body: bytes, limits: IngestLimits) -> bool:
    """Whether the native walker decodes this body itself (else it leaves it to Python)."""
    return _wire.walk(body, limits.max_attribute_value_bytes, limits.max_attributes_per_span,
                      limits.max_events_per_span,
                      pairs_cache(limits.max_attribute_value_bytes)) is not None


def outcome(fn: Any) -> RowBatch | str:
    try:
        result: RowBatch = fn()
    except MalformedPayload:
        return "malformed"
    return result


# Each path starts from an empty cache of decoded KeyValues: both fill and read the same
# one, so a value one path decoded wrongly would otherwise be served to the other.
def python_path(body: bytes, limits: IngestLimits) -> RowBatch | str:
    pairs_cache(limits.max_attribute_value_bytes).clear()
    return outcome(lambda: to_rows(decode_body(body, PB, None, limits), limits, NOW))


def ingest_path(body: bytes, limits: IngestLimits) -> RowBatch | str:
    pairs_cache(limits.max_attribute_value_bytes).clear()
    return outcome(lambda: body_rows(body, PB, None, limits, NOW))


def evaluation(name: str, score: Any) -> Span.Event:
    event = Span.Event(name=cv.EVALUATION_EVENT, time_unix_nano=5)
    event.attributes.extend([kv(cv.EVALUATION_NAME, name), kv(cv.EVALUATION_SCORE, score)])
    return event


def link(trace: bytes, span: bytes, **attrs: Any) -> Span.Link:
    out = Span.Link(trace_id=trace, span_id=span)
    out.attributes.extend(kv(k, v) for k, v in attrs.items())
    return out


GENAI = {"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 12,
         "gen_ai.request.temperature": 0.2, "gen_ai.response.finish_reasons": ["stop", "len"],
         "gen_ai.input.messages": '[{"role":"user","content":"hi é"}]',
         "gen_ai.evaluation.relevance.score": 0.5}
# Requests the walker decodes itself: every value type it reads, events, links, status.
WALKED = {
    "genai span": make_request(make_span(GENAI)),
    "value types": make_request(make_span({
        "s": "text", "empty": "", "i": -(2**63), "big": 2**63 - 1, "t": True, "f": False,
        "d": 1.5e-300, "nan": float("nan"), "inf": float("inf"), "-inf": float("-inf"),
        "nested": [[1, "a"], [], [2.5, [True]]], "unicode ключ": "значение ✓"})),
    "events and links": make_request(make_span(
        {"k": "v"}, parent_span_id=PARENT, dropped_attributes_count=3,
        dropped_events_count=4, status=Status(code=Status.STATUS_CODE_ERROR, message="boom"),
        events=[Span.Event(name="retrieve", time_unix_nano=1_700_000_000_987_654_321),
                evaluation("groundedness", 0.9), evaluation("bad", "x")],
        links=[link(bytes(16), bytes(8)), link(b"\x01\x02", b"", kind="follows")])),
    "repeated keys": make_request(make_span(), service="svc"),
    "no service": make_request(make_span({"a": 1}), service=None),
    "invalid utf-8": make_request(make_span(name="placeholder")),
    "odd enums": make_request(make_span(kind=99), make_span(kind=-1, span_id=PARENT)),
    "zero parent": make_request(make_span(parent_span_id=bytes(8)),
                                make_span(parent_span_id=b"\x01" * 4, span_id=PARENT)),
}
WALKED["no value"] = make_request(make_span())  # a KeyValue without a value
WALKED["no value"].resource_spans[0].scope_spans[0].spans[0].attributes.add(key="k")
_repeated = WALKED["repeated keys"].resource_spans[0].scope_spans[0].spans[0]
_repeated.attributes.extend([kv("k", 1), kv("other", 2), kv("k", "last")])
_invalid = WALKED["invalid utf-8"]
_invalid_body = _invalid.SerializeToString().replace(  # the same length
    b"placeholder", b"bad \xff\xfe x\xc3zz")


def body_of(name: str) -> bytes:
    return _invalid_body if name == "invalid utf-8" else WALKED[name].SerializeToString()


@pytest.mark.parametrize("name", sorted(WALKED))
def test_walked_requests_give_the_python_rows(name: str) -> None:
    body = body_of(name)
    assert walked(body, IngestLimits())
    rows = ingest_path(body, IngestLimits())
    assert isinstance(rows, RowBatch) and rows.rows
    assert rows == python_path(body, IngestLimits())


def test_several_resources_and_scopes_keep_their_service_and_scope() -> None:
    request = make_request(make_span(name="a"), service="one")
    request.resource_spans.extend(make_request(make_span(name="b"), service="two")
                                  .resource_spans)
    scope = request.resource_spans[1].scope_spans.add()
    scope.scope.name = "second"
    scope.spans.append(make_span(name="c", span_id=PARENT))
    body = request.SerializeToString()
    assert walked(body, IngestLimits())
    rows = ingest_path(body, IngestLimits())
    assert isinstance(rows, RowBatch)
    assert [(r.name, r.service_name, r.scope_name) for r in rows.rows] == [
        ("a", "one", "openai.instrumentation"), ("b", "two", "openai.instrumentation"),
        ("c", "two", "second")]
    assert rows == python_path(body, IngestLimits())


LEFT_TO_PYTHON = {
    "value over the limit": make_request(make_span({"k": "x" * 65})),
    "key over the limit": make_request(make_span({"k" * 65: 1})),
    "name over the limit": make_request(make_span(name="n" * 65)),
    "too many attributes": make_request(make_span({f"a{i}": i for i in range(7)}
                                                  | {"gen_ai.request.model": "m"})),
    "too many events": make_request(make_span(events=[
        Span.Event(name="e"), Span.Event(name="f"), evaluation("late", 0.3)])),
    "bytes value": make_request(make_span({"b": b"\x00\x01"})),
    "kvlist value": make_request(make_span({"m": {"k": "v"}})),
    "unkeyable span": make_request(make_span(name="good"), make_span(trace_id=b"")),
}


@pytest.mark.parametrize("name", sorted(LEFT_TO_PYTHON))
def test_what_the_walker_leaves_to_python_still_gives_the_python_rows(name: str) -> None:
    body = LEFT_TO_PYTHON[name].SerializeToString()
    assert not walked(body, SMALL)
    assert ingest_path(body, SMALL) == python_path(body, SMALL)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    """One protobuf field: tag, then the payload as given (already length-prefixed)."""
    return _varint(number << 3 | wire) + payload


def _delimited(data: bytes) -> bytes:
    assert len(data) < 128
    return bytes([len(data)]) + data


def test_unknown_fields_repeated_messages_and_wrong_wire_types_agree() -> None:
    span = make_span({"k": "v"}).SerializeToString()
    unknown = _field(20, 0, b"\x05") + _field(21, 2, _delimited(b"xyz")) + _field(22, 5, b"abcd")
    status_twice = (_field(15, 2, _delimited(_field(3, 0, b"\x02")))
                    + _field(15, 2, _delimited(_field(2, 2, _delimited(b"m")))))
    cases = {
        "unknown fields": (span + unknown, True),
        "status twice (merged)": (span + status_twice, False),
        "kind as a string": (span + _field(6, 2, _delimited(b"x")), False),
        "a group": (span + _varint(19 << 3 | 3) + _varint(19 << 3 | 4), False),
        # a KeyValue whose bool is the varint 2: true, as any non-zero varint is
        "bool not 0 or 1": (span + _field(9, 2, _delimited(
            _field(1, 2, _delimited(b"b")) + _field(2, 2, _delimited(_field(2, 0, b"\x02"))))),
            True),
    }
    named = _field(1, 2, _delimited(_field(1, 2, _delimited(b"lib"))))
    heads = {"": (b"", True), "scope twice (merged)": (named + named, False)}
    for name, (raw, native) in cases.items():
        for head_name, (head, head_native) in heads.items():
            body = _varint(1 << 3 | 2) + _scope_spans(raw, head)
            label = f"{name} {head_name}"
            assert walked(body, IngestLimits()) is (native and head_native), label
            assert ingest_path(body, IngestLimits()) == python_path(body, IngestLimits()), label


def _scope_spans(span: bytes, scope_head: bytes = b"") -> bytes:
    """A ResourceSpans holding one ScopeSpans (``scope_head``, then ``span``),
    length-prefixed."""
    scope = scope_head + _field(2, 2, _varint(len(span)) + span)
    resource = _field(2, 2, _varint(len(scope)) + scope)
    return _varint(len(resource)) + resource


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append(n & 0x7F | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def test_mutated_bodies_give_the_same_rows_or_the_same_error() -> None:
    """Differential fuzzing: bytes flipped, cut, duplicated or inserted anywhere in real
    bodies; the ingest path must answer exactly as the Python path does."""
    seeds = [body_of(name) for name in sorted(WALKED)]
    rng = random.Random(9)
    native = malformed = 0
    for _ in range(10_000):
        body = bytearray(rng.choice(seeds))
        for _ in range(rng.randrange(1, 4)):
            at = rng.randrange(len(body))
            op = rng.randrange(4)
            if op == 0:
                body[at] = rng.randrange(256)
            elif op == 1:
                del body[at:at + rng.randrange(1, 8)]
            elif op == 2:
                body[at:at] = body[at:at + rng.randrange(1, 16)]
            else:
                body[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4)))
        raw = bytes(body)
        for limits in (IngestLimits(), SMALL):
            expected = python_path(raw, limits)
            assert ingest_path(raw, limits) == expected, raw.hex()
            native += walked(raw, limits)
            malformed += expected == "malformed"
    # both sides of the comparison were exercised
    assert native > 1000 and malformed > 1000, (native, malformed)


def test_garbage_inside_an_attribute_is_malformed_on_the_ingest_path() -> None:
    body = make_request(make_span({"k": "GARBAGE!"})).SerializeToString()
    body = body.replace(b"\x12\x0a\x0a\x08GARBAGE!", b"\x12\x0a\x0a\x7fGARBAGE!")
    with pytest.raises(MalformedPayload):
        body_rows(body, PB, None, IngestLimits(), NOW)


def test_the_walker_fills_and_reads_the_python_decoders_cache() -> None:
    limits = IngestLimits(max_attribute_value_bytes=1000)  # a cache of its own
    cache = pairs_cache(1000)
    cache.clear()
    body = make_request(make_span({"small": "v", "list": [1], "long": "x" * 200}))
    assert walked(body.SerializeToString(), limits)
    keys = {key for key, _ in cache.values()}
    assert {"small", "service.name", "host.name"} <= keys  # small scalars remembered
    assert not {"list", "long"} & keys  # a list is mutable, a long value not hashed
    rows = ingest_path(body.SerializeToString(), limits)
    assert isinstance(rows, RowBatch) and rows == python_path(body.SerializeToString(), limits)


def test_the_cache_stays_bounded() -> None:
    limits = IngestLimits(max_attribute_value_bytes=999)
    pairs_cache(999).clear()
    spans = [make_span({f"k{s}-{i}": i for i in range(1000)}, span_id=bytes([s + 1]) * 8)
             for s in range(20)]  # 20,000 distinct small attributes
    body = make_request(*spans).SerializeToString()
    assert walked(body, limits)
    assert 0 < len(pairs_cache(999)) <= 16384


def test_an_inflated_body_is_walked_as_bytes_are() -> None:
    body = make_request(make_span(GENAI)).SerializeToString()  # gzip gives a bytearray
    assert _wire.walk(bytearray(body), 1024, 16, 16, {}) == _wire.walk(body, 1024, 16, 16, {})


def test_the_setting_turns_the_walker_off(monkeypatch: pytest.MonkeyPatch) -> None:
    body = make_request(make_span(GENAI)).SerializeToString()
    expected = python_path(body, IngestLimits())

    def broken(*_: Any) -> None:
        raise AssertionError("the native walker ran")

    monkeypatch.setattr(_wire, "walk", broken)
    assert body_rows(body, PB, None, IngestLimits(), NOW, native=False) == expected
    with pytest.raises(AssertionError, match="native walker ran"):
        body_rows(body, PB, None, IngestLimits(), NOW)
