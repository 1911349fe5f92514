"""Encoded OTLP KeyValues -> JSON-serialisable dicts, under the limits of
``appliance.ingest.limits`` (the attribute count rule and the value truncation rule).

Values: arrays -> lists, kvlists -> dicts, bytes -> base64, NaN/inf -> "NaN"/"Infinity";
a repeated key keeps its last value; text is lenient UTF-8 (U+FFFD for invalid bytes).

This is the ingest hot loop (``bench/bench_decode.py``). Most attributes (model, provider,
operation, ports...) recur from span to span, so small scalar KeyValues are decoded once
and then found by their encoded bytes in a bounded cache: a hit costs a dict lookup
instead of a parse. An attribute is therefore parsed only here, which raises
``MalformedPayload`` if one is not valid protobuf.
"""

from __future__ import annotations

import base64
from typing import Any

from google.protobuf.message import DecodeError

from appliance.errors import MalformedPayload
from appliance.ingest.genai import feeds_column
from appliance.ingest.lenient import LenientKeyValue
from appliance.ingest.limits import IngestLimits

NO_PROTECTION: frozenset[str] = frozenset()
RESOURCE_PROTECTED = frozenset({"service.name"})
_SCALARS = frozenset({"int_value", "bool_value"})
_IMMUTABLE = frozenset({str, int, float, bool, type(None)})
_CACHED_SIZE = 128  # encoded KeyValues up to this size are remembered
# Decoded (key, value) of small scalar KeyValues by their encoded bytes, one dict per value
# limit. Bounded: cleared when full.
_PAIRS: dict[int, dict[bytes, tuple[str, Any]]] = {}


def pairs_cache(vlim: int) -> dict[bytes, tuple[str, Any]]:
    """The cache of decoded small KeyValues for a value limit (the native walker of
    ``appliance/ingest/_wire.c`` reads and fills the same one, by the same rule)."""
    return _PAIRS.get(vlim) or _PAIRS.setdefault(vlim, {})


def decode_text(raw: bytes, limit: int) -> str:
    """Decode lenient UTF-8; over ``limit`` bytes, cut at a character boundary and mark."""
    if len(raw) <= limit:
        return raw.decode("utf-8", "replace")
    cut, floor = limit, max(0, limit - 3)  # a character has at most 3 continuation bytes
    while cut > floor and raw[cut] & 0xC0 == 0x80:
        cut -= 1
    return raw[:cut].decode("utf-8", "replace") + f"…[truncated {len(raw) - cut} bytes]"


def any_value(v: Any, limit: int) -> Any:
    """AnyValue -> JSON-serialisable Python value."""
    which = v.WhichOneof("value")
    if which == "string_value":
        return decode_text(v.string_value, limit)
    if which == "int_value":
        return v.int_value
    if which == "double_value":
        d = v.double_value
        return d if d - d == 0 else ("NaN" if d != d else "Infinity" if d > 0 else "-Infinity")
    if which == "bool_value":
        return v.bool_value
    if which == "array_value":
        return [any_value(item, limit) for item in v.array_value.values]
    if which == "kvlist_value":
        return {decode_text(kv.key, limit): any_value(kv.value, limit)
                for kv in v.kvlist_value.values}
    if which == "bytes_value":
        raw = v.bytes_value
        text = base64.b64encode(raw[:limit]).decode("ascii")
        return text if len(raw) <= limit else f"{text}…[truncated {len(raw) - limit} bytes]"
    return None


def decode_attributes(kvs: Any, limits: IngestLimits, protected: frozenset[str]
                      ) -> tuple[dict[str, Any], int]:
    """Encoded KeyValues -> (dict, number dropped) under the limits.py truncation rule.
    ``protected`` names are kept beyond the count limit (and, when it is not empty,
    the keys ``genai.feeds_column`` names too: evaluation and document scores)."""
    vlim = limits.max_attribute_value_bytes
    cache = pairs_cache(vlim)
    if len(kvs) > limits.max_attributes_per_span:
        return _truncated(kvs, limits, protected, cache)
    out: dict[str, Any] = {}
    for raw in kvs:  # the hot loop; big values are not hashed (never cached)
        pair = cache.get(raw) if len(raw) <= _CACHED_SIZE else None
        key, value = pair or _pair(raw, vlim, cache)
        out[key] = value
    return out, 0


def _pair(raw: bytes, vlim: int, cache: dict[bytes, tuple[str, Any]]) -> tuple[str, Any]:
    """Decode one encoded KeyValue (not in the cache)."""
    try:
        kv = LenientKeyValue.FromString(raw)
    except DecodeError as exc:
        raise MalformedPayload(f"invalid protobuf attribute: {exc}") from None
    key, v = kv.key, kv.value  # type: ignore[attr-defined]
    if text := v.string_value:  # non-empty string_value: it is the oneof's member
        value = text.decode("utf-8", "replace") if len(text) <= vlim else decode_text(text, vlim)
    elif (which := v.WhichOneof("value")) in _SCALARS:
        value = getattr(v, which)
    else:
        value = any_value(v, vlim)
    pair = (key.decode("utf-8", "replace") if len(key) <= vlim else decode_text(key, vlim),
            value)
    if len(raw) <= _CACHED_SIZE and type(value) in _IMMUTABLE:
        if len(cache) >= 16384:
            cache.clear()
        cache[raw] = pair
    return pair


def _truncated(kvs: Any, limits: IngestLimits, protected: frozenset[str],
               cache: dict[bytes, tuple[str, Any]]) -> tuple[dict[str, Any], int]:
    vlim, first = limits.max_attribute_value_bytes, limits.max_attributes_per_span
    out: dict[str, Any] = {}
    kept = 0
    for index, raw in enumerate(kvs):
        key, value = _pair(raw, vlim, cache)
        if index < first or key in protected or (protected and feeds_column(key)):
            out[key] = value
            kept += 1
    return out, len(kvs) - kept
