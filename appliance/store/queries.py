"""Read queries over the span store for the console: trace search and facets.

Every filter value is a DuckDB parameter; the SQL text is built only from
fixed fragments chosen by which filters are set. The text filter is an ILIKE
pattern from ``appliance.filters.like_contains`` (wildcards typed by a user
match themselves).

Trace search groups the spans that *started* in the time range by trace, in
two steps: first the matching trace ids (one scan, filters as HAVING over the
trace's spans), then the details of only the page of traces returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from appliance.errors import InvalidRequest
from appliance.filters import LIKE_ESCAPE, like_contains
from appliance.store.spans import SpanStore

Status = Literal["ok", "error", "unset"]
MAX_LIMIT = 1000


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise InvalidRequest("start and end need a time zone (e.g. 2024-05-01T10:00:00Z)")
        if self.start >= self.end:
            raise InvalidRequest("start must be before end")

    @classmethod
    def last(cls, seconds: float, end: datetime | None = None) -> TimeRange:
        end = end or datetime.now(UTC)
        return cls(end - timedelta(seconds=seconds), end)

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    @property
    def params(self) -> list[datetime]:
        return [self.start, self.end]


@dataclass(frozen=True)
class TraceFilter:
    range: TimeRange
    service: str | None = None
    model: str | None = None
    status: Status | None = None
    text: str | None = None
    min_duration_ms: float | None = None
    limit: int = 50

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise InvalidRequest(f"limit must be between 1 and {MAX_LIMIT}")
        if self.status not in (None, "ok", "error", "unset"):
            raise InvalidRequest("status must be ok, error or unset")


# A trace's status: error if any span failed, else ok if any span says ok, else unset.
_STATUS_SQL = {
    "error": "count(*) FILTER (WHERE status_code = 'error') > 0",
    "ok": "count(*) FILTER (WHERE status_code = 'error') = 0 "
          "AND count(*) FILTER (WHERE status_code = 'ok') > 0",
    "unset": "count(*) FILTER (WHERE status_code IN ('error', 'ok')) = 0",
}


def search_traces(store: SpanStore, f: TraceFilter) -> list[dict[str, Any]]:
    """One row per trace, newest first: root span name, service, start, duration, span
    count, error flag, models, tokens."""
    having: list[str] = []
    params: list[Any] = [*f.range.params]
    if f.service:
        having.append("bool_or(service_name = ?)")
        params.append(f.service)
    if f.model:
        having.append("bool_or(request_model = ? OR response_model = ?)")
        params += [f.model, f.model]
    if f.text:
        having.append(f"bool_or(input_messages ILIKE ? ESCAPE '{LIKE_ESCAPE}' "
                      f"OR output_messages ILIKE ? ESCAPE '{LIKE_ESCAPE}')")
        params += [like_contains(f.text)] * 2
    if f.status:
        having.append(_STATUS_SQL[f.status])
    if f.min_duration_ms is not None:
        having.append("date_diff('microsecond', min(start_time), max(end_time)) / 1000.0 >= ?")
        params.append(f.min_duration_ms)
    clause = f"HAVING {' AND '.join(having)}" if having else ""
    ids = store.read(
        "SELECT trace_id, min(start_time) AS first FROM spans "
        f"WHERE start_time >= ? AND start_time < ? GROUP BY trace_id {clause} "
        "ORDER BY first DESC, trace_id LIMIT ?", [*params, f.limit])
    if not ids:
        return []
    return trace_summaries(store, [r["trace_id"] for r in ids])


def trace_summaries(store: SpanStore, trace_ids: list[str]) -> list[dict[str, Any]]:
    """Summary rows of the given traces (all their spans), newest first."""
    rows = store.read(
        """
        SELECT trace_id,
          coalesce(arg_min(name, start_time) FILTER (WHERE parent_span_id IS NULL),
                   arg_min(name, start_time)) AS root_name,
          coalesce(arg_min(service_name, start_time) FILTER (WHERE parent_span_id IS NULL),
                   arg_min(service_name, start_time)) AS service,
          min(start_time) AS start_time,
          date_diff('microsecond', min(start_time), max(end_time)) / 1000.0 AS duration_ms,
          count(*) AS span_count,
          count(*) FILTER (WHERE status_code = 'error') AS error_count,
          count(*) FILTER (WHERE status_code = 'ok') AS ok_count,
          list(DISTINCT coalesce(response_model, request_model) ORDER BY
               coalesce(response_model, request_model))
            FILTER (WHERE coalesce(response_model, request_model) IS NOT NULL) AS models,
          list(DISTINCT service_name ORDER BY service_name) AS services,
          sum(input_tokens) AS input_tokens,
          sum(output_tokens) AS output_tokens
        FROM spans WHERE trace_id IN (SELECT unnest(?::VARCHAR[]))
        GROUP BY trace_id ORDER BY start_time DESC, trace_id
        """, [trace_ids])
    for r in rows:
        r["start_time"] = r["start_time"].astimezone(UTC)
        r["error"] = r["error_count"] > 0
        ok = r.pop("ok_count") > 0
        r["status"] = "error" if r["error"] else ("ok" if ok else "unset")
        r["models"] = r["models"] or []
        r["input_tokens"] = int(r["input_tokens"] or 0)
        r["output_tokens"] = int(r["output_tokens"] or 0)
    return rows


def facets(store: SpanStore, rng: TimeRange) -> dict[str, list[str]]:
    """Services, models, agents, tools and operations seen in the time range."""
    row = store.read(
        """
        SELECT list(DISTINCT service_name) AS services,
               list(DISTINCT request_model) AS request_models,
               list(DISTINCT response_model) AS response_models,
               list(DISTINCT agent_name) AS agents,
               list(DISTINCT tool_name) AS tools,
               list(DISTINCT operation) AS operations
        FROM spans WHERE start_time >= ? AND start_time < ?
        """, rng.params)[0]

    def clean(*names: str) -> list[str]:
        return sorted({v for n in names for v in (row[n] or []) if v})

    return {"services": clean("services"), "models": clean("request_models", "response_models"),
            "agents": clean("agents"), "tools": clean("tools"),
            "operations": clean("operations")}
