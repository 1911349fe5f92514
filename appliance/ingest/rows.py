"""Build span rows for the span store from an OTLP export request.

``body_rows`` takes an OTLP/HTTP body; ``to_rows`` a parsed request. A request is first
walked (the spans' fields decoded: natively from the body's bytes by ``_wire.c``, or in
Python from the protobuf objects), then typed by one builder (``_build``). It is the
ingest hot path, benchmarked by ``bench/bench_decode.py``. Attributes are decoded by
``appliance.ingest.attributes``, typed by ``appliance.ingest.genai``; size limits and the
truncation rule are documented in ``appliance.ingest.limits``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from google.protobuf.message import Message

from appliance.ingest import _wire
from appliance.ingest import conventions as cv
from appliance.ingest.attributes import (
    NO_PROTECTION,
    RESOURCE_PROTECTED,
    decode_attributes,
    decode_text,
    pairs_cache,
)
from appliance.ingest.decode import JSON_TYPE, parse_body, unpack_body
from appliance.ingest.genai import (
    EVAL_PREFIX,
    PROTECTED,
    as_float,
    attribute_scores,
    genai_columns,
)
from appliance.ingest.lenient import LenientRequest
from appliance.ingest.limits import IngestLimits
from appliance.ingest.retrieval import COLUMN as RETRIEVAL_SCORES
from appliance.ingest.retrieval import document_scores, may_have_documents

_KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer",
          5: "consumer"}
_STATUS = {0: "unset", 1: "ok", 2: "error"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)
UNKNOWN_SERVICE = "unknown_service"


@dataclass(slots=True)
class SpanRow:
    """One span, ready for the span store. Times are UTC datetimes; ids lowercase hex.

    * ``parent_span_id``: None unless 8 bytes and not all zero.
    * ``genai``: one entry per ``conventions.FIELDS`` column, typed as documented in
      ``appliance.ingest.genai``; ``retrieval_scores`` falls back to the scores of the
      retrieved documents (``appliance.ingest.retrieval``).
    * ``eval_scores``: ``gen_ai.evaluation.<name>.score`` span attributes, then evaluation
      events (``EVALUATION_NAME``/``EVALUATION_SCORE``), later ones winning.
    * ``attributes``, ``resource_attributes``: JSON-serialisable dicts (see
      ``appliance.ingest.attributes``). ``events``: ``{name, time, attributes}`` with time
      ISO 8601 UTC in nanoseconds (``2023-11-14T22:13:20.123456789Z``). ``links``:
      ``{trace_id, span_id, attributes}``.
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


# A request's spans decoded but not yet typed, the shape both walkers give: the native one
# (``_wire.walk``, from the body's bytes) and the Python one (``walk``, from a parsed
# ``LenientRequest``). Per resource: its attributes and its scopes; per scope: its name
# and its keyable spans. Texts decoded and ids in hex; dropped counts include the limits'.
Event = tuple[str, int, dict[str, Any] | None]  # name, time (ns), attributes (None: cut)
Link = tuple[str, str, dict[str, Any]]  # trace id, span id, attributes
WalkedSpan = tuple[str, str, str | None, str, int, int, int, int, str, dict[str, Any], int,
                   list[Event], list[Link], int]
# (trace_id, span_id, parent_span_id, name, kind, start ns, end ns, status code,
#  status message, attributes, dropped_attributes_count, events, links,
#  dropped_events_count)
Walked = list[tuple[dict[str, Any], list[tuple[str, list[WalkedSpan]]]]]


def body_rows(body: bytes, content_type: str | None, content_encoding: str | None,
              limits: IngestLimits, received_at: datetime, native: bool = True) -> RowBatch:
    """One SpanRow per keyable span of an OTLP/HTTP body (see ``decode.decode_body`` for
    its errors). OTLP/protobuf goes through the native walker (``_wire.c``) unless the
    request holds something only the Python path decodes; then, and for OTLP/JSON, the
    body is parsed into a ``LenientRequest`` and walked in Python. Same rows either way.
    ``native=False`` (setting ``ingest_native_walker``) walks every request in Python."""
    media, data = unpack_body(body, content_type, content_encoding, limits)
    if native and media != JSON_TYPE:
        walked = _wire.walk(data, limits.max_attribute_value_bytes,
                            limits.max_attributes_per_span, limits.max_events_per_span,
                            pairs_cache(limits.max_attribute_value_bytes))
        if walked is not None:
            return RowBatch(_build(walked, limits, received_at), 0)
    return to_rows(parse_body(media, data), limits, received_at)


def to_rows(request: Message, limits: IngestLimits, received_at: datetime) -> RowBatch:
    """One SpanRow per keyable span of an export request (lenient or official class)."""
    if not isinstance(request, LenientRequest):
        request = LenientRequest.FromString(request.SerializeToString())
    walked, rejected = walk(request, limits)
    return RowBatch(_build(walked, limits, received_at), rejected)


def walk(request: Message, limits: IngestLimits) -> tuple[Walked, int]:
    """The Python walker: a ``LenientRequest`` -> (walked spans, spans rejected)."""
    walked: Walked = []
    rejected = 0
    vlim, max_events = limits.max_attribute_value_bytes, limits.max_events_per_span
    for rs in request.resource_spans:  # type: ignore[attr-defined]
        resource, _ = decode_attributes(rs.resource.attributes, limits, RESOURCE_PROTECTED)
        scopes: list[tuple[str, list[WalkedSpan]]] = []
        for ss in rs.scope_spans:
            spans: list[WalkedSpan] = []
            for span in ss.spans:
                trace_id, span_id = span.trace_id, span.span_id
                if (len(trace_id) != 16 or len(span_id) != 8
                        or not any(trace_id) or not any(span_id)):
                    rejected += 1
                    continue
                attrs, dropped = decode_attributes(span.attributes, limits, PROTECTED)
                events, parent, name = span.events, span.parent_span_id, span.name
                spans.append((
                    trace_id.hex(), span_id.hex(),
                    parent.hex() if len(parent) == 8 and any(parent) else None,
                    name.decode("utf-8", "replace") if len(name) <= vlim
                    else decode_text(name, vlim),
                    span.kind, span.start_time_unix_nano, span.end_time_unix_nano,
                    span.status.code, decode_text(span.status.message, vlim),
                    attrs, span.dropped_attributes_count + dropped,
                    _walk_events(events, limits) if events else [],
                    [(link.trace_id.hex(), link.span_id.hex(),
                      decode_attributes(link.attributes, limits, NO_PROTECTION)[0])
                     for link in span.links],
                    span.dropped_events_count + max(0, len(events) - max_events)))
            scopes.append((decode_text(ss.scope.name, vlim), spans))
        walked.append((resource, scopes))
    return walked, rejected


def _walk_events(events: Any, limits: IngestLimits) -> list[Event]:
    """Every event's name and time; attributes of those kept and of evaluation events (cut
    ones too: their scores are never lost to the cut)."""
    vlim, max_events = limits.max_attribute_value_bytes, limits.max_events_per_span
    out: list[Event] = []
    for index, event in enumerate(events):
        name = decode_text(event.name, vlim)
        attrs = (decode_attributes(event.attributes, limits, PROTECTED)[0]
                 if index < max_events or name == cv.EVALUATION_EVENT else None)
        out.append((name, event.time_unix_nano, attrs))
    return out


def _build(walked: Walked, limits: IngestLimits, received_at: datetime) -> list[SpanRow]:
    """Walked spans -> typed SpanRows (GenAI columns, evaluation and document scores)."""
    rows: list[SpanRow] = []
    max_events = limits.max_events_per_span
    for resource, scopes in walked:
        service = resource.get("service.name")
        service = service if isinstance(service, str) and service else UNKNOWN_SERVICE
        for scope, spans in scopes:
            for (trace_id, span_id, parent, name, kind, start, end, code, message, attrs,
                 dropped_attributes, events, links, dropped_events) in spans:
                # Cheap pre-checks: most spans carry no gen_ai.evaluation.* attribute and
                # no retrieved documents.
                keys = "\n".join(attrs)
                scores = attribute_scores(attrs) if EVAL_PREFIX in keys else {}
                genai = genai_columns(attrs)
                kept = _events(events, max_events, scores) if events else []
                if genai[RETRIEVAL_SCORES] is None and (kept or may_have_documents(keys)):
                    genai[RETRIEVAL_SCORES] = document_scores(attrs, kept)
                rows.append(SpanRow(
                    trace_id, span_id, parent, name, _KINDS.get(kind, "unspecified"),
                    service, scope, _time(start), _time(end), (end - start) / 1e6,
                    _STATUS.get(code, "unset"), message, genai, scores, attrs, resource,
                    kept,
                    [{"trace_id": t, "span_id": s, "attributes": a} for t, s, a in links],
                    dropped_attributes, dropped_events, received_at))
    return rows


def _events(events: list[Event], max_events: int, scores: dict[str, float]
            ) -> list[dict[str, Any]]:
    """Kept events as dicts; evaluation scores from all events (even cut ones) -> scores."""
    out: list[dict[str, Any]] = []
    for index, (name, time_unix_nano, attrs) in enumerate(events):
        if attrs is None:  # cut, and not an evaluation
            continue
        label = attrs.get(cv.EVALUATION_NAME) if name == cv.EVALUATION_EVENT else None
        if isinstance(label, str) and label and (
                score := as_float(attrs.get(cv.EVALUATION_SCORE))) is not None:
            scores[label] = score
        if index < max_events:
            out.append({"name": name, "time": _iso(time_unix_nano), "attributes": attrs})
    return out


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
