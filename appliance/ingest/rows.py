"""Build span rows for the span store from a decoded OTLP export request.

``to_rows`` reads the protobuf objects directly (no ``MessageToDict``): it is the ingest
hot path, benchmarked by ``bench/bench_decode.py``. Attributes are decoded by
``appliance.ingest.attributes``, typed by ``appliance.ingest.genai``; size limits and the
truncation rule are documented in ``appliance.ingest.limits``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from google.protobuf.message import Message

from appliance.ingest import conventions as cv
from appliance.ingest.attributes import (
    NO_PROTECTION,
    RESOURCE_PROTECTED,
    decode_attributes,
    decode_text,
)
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


def to_rows(request: Message, limits: IngestLimits, received_at: datetime) -> RowBatch:
    """One SpanRow per keyable span of an export request (lenient or official class)."""
    if not isinstance(request, LenientRequest):
        request = LenientRequest.FromString(request.SerializeToString())
    rows: list[SpanRow] = []
    rejected = 0
    vlim, max_events = limits.max_attribute_value_bytes, limits.max_events_per_span
    for rs in request.resource_spans:  # type: ignore[attr-defined]
        resource, _ = decode_attributes(rs.resource.attributes, limits, RESOURCE_PROTECTED)
        service = resource.get("service.name")
        service = service if isinstance(service, str) and service else UNKNOWN_SERVICE
        for ss in rs.scope_spans:
            scope = decode_text(ss.scope.name, vlim)
            for span in ss.spans:
                trace_id, span_id = span.trace_id, span.span_id
                if (len(trace_id) != 16 or len(span_id) != 8
                        or not any(trace_id) or not any(span_id)):
                    rejected += 1
                    continue
                attrs, dropped = decode_attributes(span.attributes, limits, PROTECTED)
                # Cheap pre-checks: most spans carry no gen_ai.evaluation.* attribute and
                # no retrieved documents.
                keys = "\n".join(attrs)
                scores = attribute_scores(attrs) if EVAL_PREFIX in keys else {}
                events, links, status = span.events, span.links, span.status
                genai = genai_columns(attrs)
                kept = _events(events, limits, scores) if events else []
                if genai[RETRIEVAL_SCORES] is None and (kept or may_have_documents(keys)):
                    genai[RETRIEVAL_SCORES] = document_scores(attrs, kept)
                parent, name = span.parent_span_id, span.name
                start, end = span.start_time_unix_nano, span.end_time_unix_nano
                rows.append(SpanRow(
                    trace_id.hex(), span_id.hex(),
                    parent.hex() if len(parent) == 8 and any(parent) else None,
                    name.decode("utf-8", "replace") if len(name) <= vlim
                    else decode_text(name, vlim),
                    _KINDS.get(span.kind, "unspecified"),
                    service, scope, _time(start), _time(end), (end - start) / 1e6,
                    _STATUS.get(status.code, "unset"), decode_text(status.message, vlim),
                    genai, scores, attrs, resource, kept,
                    _links(links, limits) if links else [],
                    span.dropped_attributes_count + dropped,
                    span.dropped_events_count + max(0, len(events) - max_events),
                    received_at))
    return RowBatch(rows, rejected)


def _links(links: Any, limits: IngestLimits) -> list[dict[str, Any]]:
    return [{"trace_id": link.trace_id.hex(), "span_id": link.span_id.hex(),
             "attributes": decode_attributes(link.attributes, limits, NO_PROTECTION)[0]}
            for link in links]


def _events(events: Any, limits: IngestLimits, scores: dict[str, float]
            ) -> list[dict[str, Any]]:
    """Kept events as dicts; evaluation scores from all events (even cut ones) -> scores."""
    out: list[dict[str, Any]] = []
    vlim, max_events = limits.max_attribute_value_bytes, limits.max_events_per_span
    for index, event in enumerate(events):
        name = decode_text(event.name, vlim)
        is_eval = name == cv.EVALUATION_EVENT
        if index >= max_events and not is_eval:
            continue
        attrs, _ = decode_attributes(event.attributes, limits, PROTECTED)
        label = attrs.get(cv.EVALUATION_NAME) if is_eval else None
        if isinstance(label, str) and label and (
                score := as_float(attrs.get(cv.EVALUATION_SCORE))) is not None:
            scores[label] = score
        if index < max_events:
            out.append({"name": name, "time": _iso(event.time_unix_nano), "attributes": attrs})
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
