"""Decode an OTLP/HTTP trace export body (protobuf or JSON, gzip or not) into a
``LenientRequest`` for ``appliance.ingest.rows.to_rows``.

* Protobuf is parsed with the lenient classes (``appliance.ingest.lenient``), so invalid
  UTF-8 is accepted as the collector accepts it.
* OTLP/JSON (hex ids, enum names or numbers, int64 as strings) is parsed with the official
  classes after turning hex ids into base64, then re-serialised and parsed like protobuf,
  so both encodings go through one row-building path.
* The body size limit is checked before and after inflating; see ``appliance.ingest.limits``.
"""

from __future__ import annotations

import base64
import json
import re
import zlib
from collections.abc import Iterator
from typing import Any, cast

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from appliance.errors import MalformedPayload, PayloadTooLarge, UnsupportedMediaType
from appliance.ingest.lenient import LenientRequest
from appliance.ingest.limits import IngestLimits

PROTOBUF_TYPES = frozenset({"application/x-protobuf", "application/protobuf"})
JSON_TYPE = "application/json"


def decode_body(body: bytes, content_type: str | None, content_encoding: str | None,
                limits: IngestLimits) -> Message:
    """Decode an OTLP/HTTP trace export body into a ``LenientRequest`` for ``to_rows``.

    The message has the OTLP shape, but strings are bytes and attribute lists hold encoded
    KeyValues. Raises UnsupportedMediaType, PayloadTooLarge or MalformedPayload (with why).
    """
    return parse_body(*unpack_body(body, content_type, content_encoding, limits))


def unpack_body(body: bytes, content_type: str | None, content_encoding: str | None,
                limits: IngestLimits) -> tuple[str, bytes | bytearray]:
    """(media type, body inflated): the media type, encoding and sizes checked. Raises
    UnsupportedMediaType, PayloadTooLarge or MalformedPayload (bad gzip)."""
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
    return media, data


def parse_body(media: str, data: bytes | bytearray) -> Message:
    """An unpacked body (``unpack_body``) -> ``LenientRequest``; raises MalformedPayload."""
    if media == JSON_TYPE:
        return _from_json(data)
    try:  # a bytearray parses as well as bytes; bytes(data) would copy the whole body
        return LenientRequest.FromString(cast(bytes, data))
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
