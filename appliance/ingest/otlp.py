"""Decode OTLP/HTTP trace exports into span rows for the span store.

Why it is built this way:

* The collector's otlphttp exporter drops a batch for good on any 4xx/5xx other than
  429/502/503/504, so decoding must accept everything the collector could accept. Go does
  not validate UTF-8 in protobuf strings, python upb does; so protobuf is parsed with a
  lenient copy of the OTLP descriptors in which every ``string`` field is ``bytes`` (same
  wire format) and text is decoded with ``errors="replace"``.
* OTLP/JSON (hex ids, enum names or numbers, int64 as strings) is parsed with the official
  classes after turning hex ids into base64, then re-serialised and parsed like protobuf,
  so both encodings go through one row-building path (``to_rows``).
* ``to_rows`` reads the protobuf objects directly (no ``MessageToDict``): it is the
  ingest hot path, benchmarked by ``bench/bench_decode.py``. In the lenient classes every
  ``attributes`` list is a list of still-encoded KeyValues (again the same wire format):
  attributes that recur from span to span (model, provider, operation...) are decoded once
  and then found by their bytes in a bounded cache. An attribute is therefore parsed only
  by ``to_rows``, which raises ``MalformedPayload`` if one is not valid protobuf.

Size limits and the truncation rule are documented in ``appliance.ingest.limits``.
"""

from __future__ import annotations

import base64
import json
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from appliance.errors import MalformedPayload, PayloadTooLarge, UnsupportedMediaType
from appliance.ingest import conventions as cv
from appliance.ingest.limits import IngestLimits


def _lenient_classes() -> tuple[type[Message], type[Message]]:
    """ExportTraceServiceRequest and KeyValue from a private pool where every string field
    is bytes, and every ``attributes`` list is a list of raw (still encoded) KeyValues."""
    kind = descriptor_pb2.FieldDescriptorProto
    key_value = "." + common_pb2.KeyValue.DESCRIPTOR.full_name

    def strings_to_bytes(msg: descriptor_pb2.DescriptorProto) -> None:
        for field in msg.field:
            if field.type == kind.TYPE_STRING:
                field.type = kind.TYPE_BYTES
            elif field.name == "attributes" and field.type_name == key_value:
                field.type = kind.TYPE_BYTES  # same wire format: length-delimited
                field.ClearField("type_name")
        for nested in msg.nested_type:
            strings_to_bytes(nested)

    pool = descriptor_pool.DescriptorPool()
    for module in (common_pb2, resource_pb2, trace_pb2, trace_service_pb2):
        proto = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(proto)
        for msg in proto.message_type:
            strings_to_bytes(msg)
        pool.Add(proto)
    return tuple(  # type: ignore[return-value]
        message_factory.GetMessageClass(pool.FindMessageTypeByName(cls.DESCRIPTOR.full_name))
        for cls in (trace_service_pb2.ExportTraceServiceRequest, common_pb2.KeyValue))


LenientRequest, _KeyValue = _lenient_classes()
PROTOBUF_TYPES = frozenset({"application/x-protobuf", "application/protobuf"})
JSON_TYPE = "application/json"


def decode_body(body: bytes, content_type: str | None, content_encoding: str | None,
                limits: IngestLimits) -> Message:
    """Decode an OTLP/HTTP trace export body into a ``LenientRequest`` for ``to_rows``.

    The message has the OTLP shape, but strings are bytes and attribute lists hold encoded
    KeyValues. Raises UnsupportedMediaType, PayloadTooLarge or MalformedPayload (with why).
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media not in PROTOBUF_TYPES and media != JSON_TYPE:
        raise UnsupportedMediaType(f"Content-Type {content_type!r} not supported; use "
                                   "application/x-protobuf or application/json")
    encoding = (content_encoding or "").strip().lower()
    if encoding not in ("", "identity", "gzip", "x-gzip"):
        raise UnsupportedMediaType(f"Content-Encoding {content_encoding!r} not supported; "
                                   "use gzip or identity")
    if len(body) > limits.max_body_bytes:
        raise PayloadTooLarge(f"body is {len(body)} bytes, limit {limits.max_body_bytes}")
    data: bytes | bytearray = body
    if encoding in ("gzip", "x-gzip"):
        data = _gunzip(body, limits.max_body_bytes)
    if media == JSON_TYPE:
        return _from_json(data)
    try:
        return LenientRequest.FromString(data)
    except DecodeError as exc:
        raise MalformedPayload(f"invalid protobuf: {exc}") from None


def _gunzip(data: bytes, limit: int) -> bytearray:
    """Inflate (multi-member) gzip, never producing more than ``limit + 1`` bytes."""
    out = bytearray()
    while data:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out += inflater.decompress(data, limit + 1 - len(out))
        except zlib.error as exc:
            raise MalformedPayload(f"invalid gzip: {exc}") from None
        if len(out) > limit:
            raise PayloadTooLarge(f"decompressed body exceeds limit {limit} bytes")
        if not inflater.eof:
            raise MalformedPayload("invalid gzip: truncated stream")
        data = inflater.unused_data
    return out


_LONE_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")
_ID_KEYS = ("traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id")


def _from_json(data: bytes | bytearray) -> Message:
    """OTLP/JSON -> LenientRequest. Invalid UTF-8 and lone surrogates become U+FFFD."""
    text = data.decode("utf-8", "replace")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise MalformedPayload(f"invalid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise MalformedPayload("invalid OTLP/JSON: top level is not an object")
    try:
        if _LONE_SURROGATE.search(text):
            doc = _scrub(doc)
        for holder in _id_holders(doc):
            for key in _ID_KEYS:
                if isinstance(value := holder.get(key), str):
                    try:  # OTLP/JSON ids are hex; ParseDict wants base64. Bad hex = no id.
                        holder[key] = base64.b64encode(bytes.fromhex(value)).decode("ascii")
                    except ValueError:
                        holder[key] = ""
        strict = trace_service_pb2.ExportTraceServiceRequest()
        json_format.ParseDict(doc, strict, ignore_unknown_fields=True)
        return LenientRequest.FromString(strict.SerializeToString())
    except (json_format.ParseError, DecodeError, TypeError, ValueError, AttributeError,
            RecursionError) as exc:
        raise MalformedPayload(f"invalid OTLP/JSON: {exc}") from None


def _scrub(obj: Any) -> Any:
    if isinstance(obj, str):
        return obj.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if isinstance(obj, list):
        return [_scrub(item) for item in obj]
    if isinstance(obj, dict):
        return {_scrub(key): _scrub(value) for key, value in obj.items()}
    return obj


def _id_holders(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The spans and links of an OTLP/JSON document (the objects carrying hex ids)."""
    def items(obj: Any, *keys: str) -> Iterator[Any]:
        for key in keys:
            if isinstance(obj, dict) and isinstance(obj.get(key), list):
                yield from (item for item in obj[key] if isinstance(item, dict))

    for rs in items(doc, "resourceSpans", "resource_spans"):
        for ss in items(rs, "scopeSpans", "scope_spans"):
            for span in items(ss, "spans"):
                yield span
                yield from items(span, "links")


# ---------------------------------------------------------------- rows

_KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer",
          5: "consumer"}
_STATUS = {0: "unset", 1: "ok", 2: "error"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)
_EVAL_PREFIX, _EVAL_SUFFIX = "gen_ai.evaluation.", ".score"  # gen_ai.evaluation.<name>.score
_OPERATION = cv.BY_COLUMN["operation"].column
UNKNOWN_SERVICE = "unknown_service"


@dataclass(slots=True)
class SpanRow:
    """One span, ready for the span store. Times are UTC datetimes; ids lowercase hex.

    * ``parent_span_id``: None unless 8 bytes and not all zero.
    * ``genai``: one entry per ``conventions.FIELDS`` column, typed by the field's kind
      (str, int, float, list[str], list[float]): the first of the canonical attribute and
      then its aliases, in declared order, whose value converts (a single value becomes a
      one-element list; arrays/kvlists become JSON text for str); else None. ``operation``
      falls back to ``openinference.span.kind`` mapped by ``OPENINFERENCE_KINDS``.
    * ``eval_scores``: ``gen_ai.evaluation.<name>.score`` span attributes, then evaluation
      events (``EVALUATION_NAME``/``EVALUATION_SCORE``), later ones winning.
    * ``attributes``, ``resource_attributes``: JSON-serialisable dicts (arrays -> lists,
      kvlists -> dicts, bytes -> base64, NaN/inf -> "NaN"/"Infinity"; a repeated key keeps
      its last value). ``events``: ``{name, time, attributes}`` with time ISO 8601 UTC in
      nanoseconds (``2023-11-14T22:13:20.123456789Z``). ``links``: ``{trace_id, span_id,
      attributes}``.
    * ``dropped_*_count``: the sender's count plus what the limits dropped.
    """

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str  # unspecified/internal/server/client/producer/consumer
    service_name: str
    scope_name: str
    start_time: datetime
    end_time: datetime
    duration_ms: float
    status_code: str  # unset/ok/error
    status_message: str
    genai: dict[str, Any]
    eval_scores: dict[str, float]
    attributes: dict[str, Any]
    resource_attributes: dict[str, Any]
    events: list[dict[str, Any]]
    links: list[dict[str, Any]]
    dropped_attributes_count: int
    dropped_events_count: int
    received_at: datetime


class RowBatch(NamedTuple):
    """The rows of a request, and how many spans could not be keyed (OTLP rejectedSpans):
    a trace id that is not 16 bytes or a span id that is not 8, or either all zero."""

    rows: list[SpanRow]
    rejected_spans: int


def to_rows(request: Message, limits: IngestLimits, received_at: datetime) -> RowBatch:
    """One SpanRow per keyable span of an export request (lenient or official class)."""
    if not isinstance(request, LenientRequest):
        request = LenientRequest.FromString(request.SerializeToString())
    rows: list[SpanRow] = []
    rejected = 0
    vlim, max_events = limits.max_attribute_value_bytes, limits.max_events_per_span
    for rs in request.resource_spans:  # type: ignore[attr-defined]
        resource, _ = _attributes(rs.resource.attributes, limits, _RESOURCE_PROTECTED)
        service = resource.get("service.name")
        service = service if isinstance(service, str) and service else UNKNOWN_SERVICE
        for ss in rs.scope_spans:
            scope = _text(ss.scope.name, vlim)
            for span in ss.spans:
                trace_id, span_id = span.trace_id, span.span_id
                if (len(trace_id) != 16 or len(span_id) != 8
                        or not any(trace_id) or not any(span_id)):
                    rejected += 1
                    continue
                attrs, dropped = _attributes(span.attributes, limits, _PROTECTED)
                # Cheap pre-check: most spans carry no gen_ai.evaluation.* attribute.
                scores = _attribute_scores(attrs) if _EVAL_PREFIX in "\n".join(attrs) else {}
                events, links, status = span.events, span.links, span.status
                parent, name = span.parent_span_id, span.name
                start, end = span.start_time_unix_nano, span.end_time_unix_nano
                rows.append(SpanRow(
                    trace_id.hex(), span_id.hex(),
                    parent.hex() if len(parent) == 8 and any(parent) else None,
                    name.decode("utf-8", "replace") if len(name) <= vlim else _text(name, vlim),
                    _KINDS.get(span.kind, "unspecified"),
                    service, scope, _time(start), _time(end), (end - start) / 1e6,
                    _STATUS.get(status.code, "unset"), _text(status.message, vlim),
                    _genai(attrs), scores, attrs, resource,
                    _events(events, limits, scores) if events else [],
                    _links(links, limits) if links else [],
                    span.dropped_attributes_count + dropped,
                    span.dropped_events_count + max(0, len(events) - max_events),
                    received_at))
    return RowBatch(rows, rejected)


def _links(links: Any, limits: IngestLimits) -> list[dict[str, Any]]:
    return [{"trace_id": link.trace_id.hex(), "span_id": link.span_id.hex(),
             "attributes": _attributes(link.attributes, limits, _NONE)[0]} for link in links]


def _time(unix_nanos: int) -> datetime:
    return _EPOCH + timedelta(microseconds=unix_nanos // 1000)


_ISO_SECONDS: dict[int, str] = {}  # isoformat() is slow; a batch's events share seconds


def _iso(unix_nanos: int) -> str:
    """ISO 8601 UTC with nanoseconds, e.g. 2023-11-14T22:13:20.123456789Z."""
    seconds, nanos = divmod(unix_nanos, 1_000_000_000)
    if (prefix := _ISO_SECONDS.get(seconds)) is None:
        if len(_ISO_SECONDS) >= 4096:
            _ISO_SECONDS.clear()
        prefix = _ISO_SECONDS[seconds] = (_EPOCH_NAIVE + timedelta(seconds=seconds)).isoformat()
    return f"{prefix}.{nanos:09d}Z"


def _text(raw: bytes, limit: int) -> str:
    """Decode lenient UTF-8; over ``limit`` bytes, cut at a character boundary and mark."""
    if len(raw) <= limit:
        return raw.decode("utf-8", "replace")
    cut, floor = limit, max(0, limit - 3)  # a character has at most 3 continuation bytes
    while cut > floor and raw[cut] & 0xC0 == 0x80:
        cut -= 1
    return raw[:cut].decode("utf-8", "replace") + f"…[truncated {len(raw) - cut} bytes]"


def _value(v: Any, limit: int) -> Any:
    """AnyValue -> JSON-serialisable Python value."""
    which = v.WhichOneof("value")
    if which == "string_value":
        return _text(v.string_value, limit)
    if which == "int_value":
        return v.int_value
    if which == "double_value":
        d = v.double_value
        return d if d - d == 0 else ("NaN" if d != d else "Infinity" if d > 0 else "-Infinity")
    if which == "bool_value":
        return v.bool_value
    if which == "array_value":
        return [_value(item, limit) for item in v.array_value.values]
    if which == "kvlist_value":
        return {_text(kv.key, limit): _value(kv.value, limit) for kv in v.kvlist_value.values}
    if which == "bytes_value":
        raw = v.bytes_value
        text = base64.b64encode(raw[:limit]).decode("ascii")
        return text if len(raw) <= limit else f"{text}…[truncated {len(raw) - limit} bytes]"
    return None


_NONE: frozenset[str] = frozenset()
_RESOURCE_PROTECTED = frozenset({"service.name"})
_PROTECTED = frozenset({name for field in cv.FIELDS for name in field.names}
                       | {cv.OPENINFERENCE_KIND, cv.EVALUATION_NAME, cv.EVALUATION_SCORE})
_SCALARS = frozenset({"int_value", "bool_value"})
_IMMUTABLE = frozenset({str, int, float, bool, type(None)})
_CACHED_SIZE = 128  # encoded KeyValues up to this size are remembered
# Decoded (key, value) of small scalar KeyValues by their encoded bytes, one dict per value
# limit. Most attributes (model, provider, operation, ports...) recur from span to span;
# a hit costs a dict lookup instead of a parse. Bounded: cleared when full.
_PAIRS: dict[int, dict[bytes, tuple[str, Any]]] = {}


def _pair(raw: bytes, vlim: int, cache: dict[bytes, tuple[str, Any]]) -> tuple[str, Any]:
    """Decode one encoded KeyValue (not in the cache)."""
    try:
        kv = _KeyValue.FromString(raw)
    except DecodeError as exc:
        raise MalformedPayload(f"invalid protobuf attribute: {exc}") from None
    key, v = kv.key, kv.value
    if text := v.string_value:  # non-empty string_value: it is the oneof's member
        value = text.decode("utf-8", "replace") if len(text) <= vlim else _text(text, vlim)
    elif (which := v.WhichOneof("value")) in _SCALARS:
        value = getattr(v, which)
    else:
        value = _value(v, vlim)
    pair = (key.decode("utf-8", "replace") if len(key) <= vlim else _text(key, vlim), value)
    if len(raw) <= _CACHED_SIZE and type(value) in _IMMUTABLE:
        if len(cache) >= 16384:
            cache.clear()
        cache[raw] = pair
    return pair


def _attributes(kvs: Any, limits: IngestLimits, protected: frozenset[str]
                ) -> tuple[dict[str, Any], int]:
    """Encoded KeyValues -> (dict, number dropped) under the limits.py truncation rule."""
    vlim = limits.max_attribute_value_bytes
    cache = _PAIRS.get(vlim) or _PAIRS.setdefault(vlim, {})
    if len(kvs) > limits.max_attributes_per_span:
        return _truncated_attributes(kvs, limits, protected, cache)
    out: dict[str, Any] = {}
    for raw in kvs:  # the hot loop; big values are not hashed (never cached)
        pair = cache.get(raw) if len(raw) <= _CACHED_SIZE else None
        key, value = pair or _pair(raw, vlim, cache)
        out[key] = value
    return out, 0


def _truncated_attributes(kvs: Any, limits: IngestLimits, protected: frozenset[str],
                          cache: dict[bytes, tuple[str, Any]]) -> tuple[dict[str, Any], int]:
    vlim, first = limits.max_attribute_value_bytes, limits.max_attributes_per_span
    out: dict[str, Any] = {}
    kept = 0
    for index, raw in enumerate(kvs):
        key, value = _pair(raw, vlim, cache)
        if index < first or key in protected or (protected and _eval_name(key)):
            out[key] = value
            kept += 1
    return out, len(kvs) - kept


def _eval_name(key: str) -> str:
    """``<name>`` of a ``gen_ai.evaluation.<name>.score`` key, else ""."""
    if key.startswith(_EVAL_PREFIX) and key.endswith(_EVAL_SUFFIX):
        return key[len(_EVAL_PREFIX):-len(_EVAL_SUFFIX)]
    return ""


def _attribute_scores(attrs: dict[str, Any]) -> dict[str, float]:
    scores: dict[str, float] = {}
    for key, value in attrs.items():
        if (name := _eval_name(key)) and (score := _as_float(value)) is not None:
            scores[name] = score
    return scores


def _events(events: Any, limits: IngestLimits, scores: dict[str, float]
            ) -> list[dict[str, Any]]:
    """Kept events as dicts; evaluation scores from all events (even cut ones) -> scores."""
    out: list[dict[str, Any]] = []
    vlim, max_events = limits.max_attribute_value_bytes, limits.max_events_per_span
    for index, event in enumerate(events):
        name = _text(event.name, vlim)
        is_eval = name == cv.EVALUATION_EVENT
        if index >= max_events and not is_eval:
            continue
        attrs, _ = _attributes(event.attributes, limits, _PROTECTED)
        label = attrs.get(cv.EVALUATION_NAME) if is_eval else None
        if isinstance(label, str) and label and (
                score := _as_float(attrs.get(cv.EVALUATION_SCORE))) is not None:
            scores[label] = score
        if index < max_events:
            out.append({"name": name, "time": _iso(event.time_unix_nano), "attributes": attrs})
    return out


def _genai(attrs: dict[str, Any]) -> dict[str, Any]:
    """Typed GenAI columns: the first name (canonical, then aliases) whose value converts."""
    out = dict.fromkeys(_COLUMN_NAMES)
    aliases = []
    for name in attrs.keys() & _FIELD_NAMES:
        column, rank, python_type, convert = _BY_NAME[name]
        if rank:
            aliases.append((rank, name))
        else:
            raw = attrs[name]
            out[column] = raw if type(raw) is python_type else convert(raw)
    for _, name in sorted(aliases):
        column, _, python_type, convert = _BY_NAME[name]
        if out[column] is None:
            raw = attrs[name]
            out[column] = raw if type(raw) is python_type else convert(raw)
    if out[_OPERATION] is None and isinstance(kind := attrs.get(cv.OPENINFERENCE_KIND), str):
        out[_OPERATION] = cv.OPENINFERENCE_KINDS.get(kind.upper())
    return out


def _as_str(v: Any) -> str | None:
    if isinstance(v, str) or v is None:
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v) if isinstance(v, int | float) else json.dumps(v, ensure_ascii=False)


def _as_int(v: Any) -> int | None:
    if isinstance(v, str):
        try:
            v = int(v.strip())
        except ValueError:
            v = _as_float(v)
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return v if type(v) is int and -(2**63) <= v < 2**63 else None


def _as_float(v: Any) -> float | None:
    if type(v) is int or type(v) is float:
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def _as_str_list(v: Any) -> list[str | None] | None:
    if isinstance(v, list):
        return [_as_str(item) for item in v]
    return None if (text := _as_str(v)) is None else [text]


def _as_float_list(v: Any) -> list[float] | None:
    if isinstance(v, str) and v.lstrip().startswith("["):
        try:
            v = json.loads(v)
        except ValueError:
            return None
    values = [_as_float(item) for item in (v if isinstance(v, list) else [v])]
    return None if any(item is None for item in values) else values  # type: ignore[return-value]


# kind -> (Python type passed through unconverted, converter)
_KIND: dict[str, tuple[type | None, Any]] = {
    "str": (str, _as_str), "int": (int, _as_int), "float": (float, _as_float),
    "str_list": (None, _as_str_list), "float_list": (None, _as_float_list)}
_COLUMN_NAMES = tuple(field.column for field in cv.FIELDS)
_BY_NAME = {name: (field.column, rank, *_KIND[field.kind])
            for field in cv.FIELDS for rank, name in enumerate(field.names)}
_FIELD_NAMES = frozenset(_BY_NAME)
