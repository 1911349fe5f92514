"""Read queries over the span store for the console: trace search and facets.

Every filter value is a DuckDB parameter; the SQL text is built only from
fixed fragments chosen by which filters are set. The text filter matches the
text anywhere, case-insensitively, as ILIKE '%text%' would, with no wildcards
(``contains(lower(..), lower(text))``).

Trace search groups the spans that *started* in the time range by trace, in
two steps: first the matching trace ids, then the details of only the page of
traces returned. The ids, without a text filter, come from the per-seal trace
summaries (``partitions.TRACES``) where they answer exactly: a trace with one
summary row inside the range and no hot spans there is a top-N over single rows
(no grouping); traces with several rows or hot spans are grouped from their rows;
a trace whose row crosses an edge of the range is computed from its spans, in the
narrow time window it occupies. With a text filter the spans' text is scanned,
newest slices first, stopping once the page is full; past the first slice, sealed
blocks whose text-index filter rules the text out are skipped (``textindex``), so a
text that matches nothing reads only the blocks it might be in and the rows not
indexed yet.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import duckdb

from appliance.errors import InvalidRequest
from appliance.store import textindex
from appliance.store.partitions import (
    HOT,
    SUMMARY,
    TID,
    TRACE_BOUNDS,
    TRACE_FIRSTS,
    TRACES,
    hot_ids,
    hour_time,
)
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


def _span_filters(f: TraceFilter) -> tuple[list[str], list[Any]]:
    """HAVING conditions over a trace's spans (the definition of every filter)."""
    having: list[str] = []
    params: list[Any] = []
    if f.service:
        having.append("bool_or(service_name = ?)")
        params.append(f.service)
    if f.model:
        having.append("bool_or(request_model = ? OR response_model = ?)")
        params += [f.model, f.model]
    if f.text:
        # contains(lower(..)) is ILIKE '%text%' (DuckDB's ILIKE lowercases both sides) at
        # ~2.5x its speed (3.5M spans: 16.7 -> 6.8 s), and needs no escaping.
        having.append("bool_or(contains(lower(input_messages), lower(?)) "
                      "OR contains(lower(output_messages), lower(?)))")
        params += [f.text] * 2
    if f.status:
        having.append(_STATUS_SQL[f.status])
    if f.min_duration_ms is not None:
        having.append("(epoch_us(max(end_time)) - epoch_us(min(start_time))) / 1000.0 >= ?")
        params.append(f.min_duration_ms)
    return having, params


def _summary_filters(f: TraceFilter, agg: bool) -> tuple[str, list[Any]]:
    """The same filters over summary rows: one row (``agg`` False) or a trace's rows."""
    conds: list[str] = []
    params: list[Any] = []

    def any_of(cond: str) -> str:
        return f"bool_or({cond})" if agg else cond

    def total(col: str) -> str:
        return f"sum({col})" if agg else col

    if f.service:
        conds.append(any_of("list_contains(services, ?)"))
        params.append(f.service)
    if f.model:
        conds.append(any_of("list_contains(models, ?)"))
        params.append(f.model)
    if f.status == "error":
        conds.append(f"{total('errors')} > 0")
    elif f.status == "ok":
        conds.append(f"{total('errors')} = 0 AND {total('oks')} > 0")
    elif f.status == "unset":
        conds.append(f"{total('errors')} = 0 AND {total('oks')} = 0")
    if f.min_duration_ms is not None:
        # epoch_us differences: date_diff on TIMESTAMPTZ goes through the calendar
        # (~0.7 us a row: 0.5 s over 700k rows); in microseconds the result is the same.
        span = ("(epoch_us(max(end_max)) - epoch_us(min(first)))" if agg
                else "(epoch_us(end_max) - epoch_us(first))")
        conds.append(f"{span} / 1000.0 >= ?")
        params.append(f.min_duration_ms)
    return " AND ".join(conds) or "true", params


def _traces_from_spans(store: SpanStore, f: TraceFilter, start: datetime, end: datetime,
                       trace_ids: list[str] | None = None) -> list[tuple[datetime, str]]:
    """(first start, trace id) of the matching traces, computed from the spans that
    started in the range; only spans in [start, end) are read (all of a trace's spans in
    the range must lie there), of ``trace_ids`` if given."""
    having, params = _span_filters(f)
    clause = f"HAVING {' AND '.join(having)}" if having else ""
    only = ""
    if trace_ids is not None:
        only = "AND trace_id IN (SELECT unnest(?::VARCHAR[])) "
    rows = store.read(
        "SELECT trace_id, min(start_time) AS first FROM spans WHERE start_time >= ? "
        f"AND start_time < ? AND start_time >= ? AND start_time < ? {only}"
        f"GROUP BY trace_id {clause}",
        [*f.range.params, start, end, *([trace_ids] if trace_ids is not None else []),
         *params])
    return [(r["first"], r["trace_id"]) for r in rows]


def _newest(found: list[tuple[datetime, str]], limit: int) -> list[str]:
    found.sort(key=lambda r: r[1])
    found.sort(key=lambda r: r[0], reverse=True)
    return [tid for _, tid in found[:limit]]


def search_traces(store: SpanStore, f: TraceFilter) -> list[dict[str, Any]]:
    """One row per trace, newest first: root span name, service, start, duration, span
    count, error flag, models, tokens."""
    ids = _search_text(store, f) if f.text else _search_summaries(store, f)
    if not ids:
        return []
    return trace_summaries(store, ids)


def _search_summaries(store: SpanStore, f: TraceFilter) -> list[str]:
    one, one_params = _summary_filters(f, agg=False)
    many, many_params = _summary_filters(f, agg=True)
    one, many = _numbered(one, 4), _numbered(many, 4 + len(one_params))
    start, end = f.range.start, f.range.end
    # The hot spans' lists hold only what the filter asks for, if they have it: building
    # the full lists was a third of the statement (3.5M spans, 34k hot: ~40 of 126 ms).
    # $4 is the service when there is one, then the model (``_summary_filters``' order).
    summary = SUMMARY.replace(
        "list_distinct(list(service_name))",
        "CASE WHEN bool_or(service_name = $4) THEN [$4] ELSE CAST([] AS VARCHAR[]) END"
        if f.service else "NULL::VARCHAR[]")
    m = 5 if f.service else 4
    summary = summary.replace(
        "list_distinct(flatten(list([request_model, response_model])))",
        f"CASE WHEN bool_or(request_model = ${m} OR response_model = ${m}) THEN [${m}] "
        "ELSE CAST([] AS VARCHAR[]) END" if f.model else "NULL::VARCHAR[]")
    extra = 64  # single rows fetched beyond the page, for those of traces now also hot
    while True:
        rows = store.read(_SEARCH_SQL.format(tid=TID.format(x="trace_id"), summary=summary,
                                             traces=TRACES, one=one, many=many),
                          [start, end, f.limit + extra, *one_params, *many_params])
        fetched = sum(1 for r in rows if r["single"])
        rows = [r for r in rows if not r["in_hot"]]
        if fetched < f.limit + extra or sum(1 for r in rows if r["single"]) >= f.limit:
            break
        extra *= 16  # the page lost more than ``extra`` rows to hot traces: fetch more
    found = [(r["first"], r["trace_id"]) for r in rows if r["exact"]]
    # Traces crossing an edge of the range: from their spans, in the window they occupy.
    edge = [r for r in rows if not r["exact"]]
    before = [r for r in edge if r["first"] < start]
    for group in (before, [r for r in edge if r["first"] >= start]):
        if group:
            lo = max(start, min(r["first"] for r in group))
            hi = min(end, max(r["last"] for r in group) + timedelta(microseconds=1))
            found += _traces_from_spans(store, f, lo, hi, [r["trace_id"] for r in group])
    return _newest(found, f.limit)


# $1/$2: the range, $3: how many single rows to fetch. ``hot``: the hot spans in the range
# summarised per trace (exact: cut at the range). ``single``: the newest traces with one
# summary row, inside the range, matching: a top-N straight over the table (zone maps on
# ``first``, no grouping); those that also have hot spans are flagged and left out.
# ``grouped``: every other trace with a row overlapping the range (several rows, a row
# crossing an edge, hot spans), from its rows; ``exact`` false when a row crosses an edge.
# Each branch has only conjunctive filters (pushed into the scan). Rows of hot traces are
# matched by ``tid`` alone, then read by row id: a collision (two traces, one ``tid``, as
# every non-hex id has 0) only sends a trace to the grouped path, which is exact too.
_SEARCH_SQL = """
WITH hot AS MATERIALIZED (
  SELECT {tid} AS tid, {summary}, true AS inside FROM spans_recent
  WHERE start_time >= $1 AND start_time < $2 GROUP BY trace_id),
single AS (
  SELECT r.trace_id, r.first, h.tid IS NOT NULL AS in_hot FROM (
    SELECT tid, trace_id, first FROM {traces}
    WHERE first >= $1 AND first < $2 AND last < $2 AND NOT multi AND {one}
    ORDER BY first DESC, trace_id LIMIT $3) r
  LEFT JOIN (SELECT DISTINCT tid FROM hot) h ON h.tid = r.tid),
grouped AS (
  SELECT trace_id, min(first) AS first, max(last) AS last, bool_and(inside) AS exact,
         {many} AS matches
  FROM (SELECT trace_id, first, last, end_max, errors, oks, services, models,
               first >= $1 AND last < $2 AS inside
        FROM (SELECT * FROM {traces} WHERE first < $1 AND last >= $1
              UNION ALL
              SELECT * FROM {traces} WHERE first >= $1 AND first < $2 AND last >= $2
              UNION ALL
              SELECT * FROM {traces} WHERE first >= $1 AND last < $2 AND multi
              UNION ALL
              SELECT * FROM {traces} WHERE rowid IN (
                SELECT s.rowid FROM {traces} s SEMI JOIN hot h ON h.tid = s.tid
                WHERE s.first >= $1 AND s.last < $2) AND NOT multi)
        UNION ALL
        SELECT trace_id, first, last, end_max, errors, oks, services, models, inside FROM hot)
  GROUP BY trace_id)
SELECT trace_id, first, first AS last, true AS exact, true AS single, in_hot FROM single
UNION ALL
SELECT trace_id, first, last, exact, false, false FROM grouped WHERE matches OR NOT exact
"""


def _numbered(sql: str, first: int) -> str:
    """``?`` placeholders as ``$first``, ``$first+1``, ... (DuckDB does not mix them)."""
    parts = sql.split("?")
    return "".join(f"{p}${first + i}" if i < len(parts) - 1 else p
                   for i, p in enumerate(parts))


# The text search's first slice of the range (newest; narrower where traces are dense,
# ``_first_slice``), 4x longer for each next slice: short, so a common word stops after
# a few thousand candidate traces (a 5-minute slice of the 3.5M-span fill: ~60k, 3.1 s);
# x4, so a text that matches nothing costs 8 slices over 7 days, not 16.
_FIRST_SLICE = timedelta(seconds=10)
_FIRST_SLICE_TRACES = 2000
_SLICE_GROWTH = 4


def _search_text(store: SpanStore, f: TraceFilter) -> list[str]:
    """Slices of the range, newest first: the traces with a matching span in the slice,
    then their exact row over the whole range. Stops once ``limit`` traces started at or
    after the slice's start: any trace not found yet has no matching span that late, so
    it started before all of them."""
    start, end = f.range.start, f.range.end
    oldest = store.read(f"SELECT least((SELECT min(first) FROM {TRACES}), "
                        f"(SELECT min(start_time) FROM {HOT})) AS t")[0]["t"]
    if oldest is None:
        return []
    start = max(start, oldest)  # no slices before the oldest span
    found: dict[str, datetime] = {}
    seen: set[str] = set()
    text = f.text or ""
    rows_of: dict[str, str] | None = None  # the text index's answer, once past one slice
    hi, width = end, _first_slice(store, end)
    while hi > start:
        lo = max(start, hi - width)
        if rows_of is None and hi < end:
            lowered = str(store.read("SELECT lower(?) AS t", [text])[0]["t"]).encode()
            rows_of = textindex.candidate_rows(store.db, [p for p, _, _ in _partitions(
                store, start, end)], lowered)
        new = [t for t in _with_text(store, lo, hi, text, rows_of or {}) if t not in seen]
        seen.update(new)
        for first, tid in _newest_matching(store, f, new):
            found[tid] = first
        if sum(1 for t in found.values() if t >= lo) >= f.limit:
            break
        hi, width = lo, width * _SLICE_GROWTH
    return _newest([(t, tid) for tid, t in found.items()], f.limit)


def _first_slice(store: SpanStore, end: datetime) -> timedelta:
    """``_FIRST_SLICE``, narrowed where the newest traces are dense to hold about
    ``_FIRST_SLICE_TRACES`` (10M fill: ~12,000 traces in 10 s, whose exact rows a common
    word then computed). Any width gives the same answer; a narrow one costs a slice."""
    n = store.read(f"SELECT (SELECT count(*) FROM {TRACES} WHERE first >= $1 AND "
                   f"first < $2) + (SELECT count(*) FROM {HOT} WHERE start_time >= $1 AND "
                   "start_time < $2) AS n", [end - _FIRST_SLICE, end])[0]["n"]
    return max(timedelta(milliseconds=1),
               _FIRST_SLICE * min(1.0, _FIRST_SLICE_TRACES / max(1, int(n))))


def _matching(store: SpanStore, f: TraceFilter, ids: list[str]) -> list[tuple[datetime, str]]:
    """(first start in the range, id) of the traces of ``ids`` that match ``f``, from
    their spans, read only within the start times their spans have (``_bounds``)."""
    bounds = _bounds(store, ids) if ids else None
    if bounds is None:
        return []
    window = (max(f.range.start, bounds[0]),
              min(f.range.end, bounds[1] + timedelta(microseconds=1)))
    return _traces_from_spans(store, f, *window, ids)


# Below this many traces found in a slice, all are computed exactly; above, the newest
# first (a common word: one 10 s slice of the 10M fill holds ~12,000 traces, and
# computing them all was ~60 % of the search).
_EXACT_ALL = 256
_EXACT_CHUNK = 64


def _newest_matching(store: SpanStore, f: TraceFilter,
                     ids: list[str]) -> list[tuple[datetime, str]]:
    """``_matching``, or for many ids, enough of them to hold the ``limit`` newest
    matching ones. A trace's first start over all its spans (summary rows and hot rows)
    is its first start in the range when it is inside the range, and every id has a
    span in the range; so the traces are computed newest first, in chunks (ties whole),
    until ``limit`` match and the next is older than all of them. Traces that began
    before the range are always computed."""
    if len(ids) <= max(_EXACT_ALL, 4 * f.limit):
        return _matching(store, f, ids)
    firsts = _first_starts(store, ids)
    edge = [t for t in ids if firsts.get(t) is None or firsts[t] < f.range.start]
    out = _matching(store, f, edge)
    inner = sorted((t for t in ids if t in firsts and firsts[t] >= f.range.start),
                   key=lambda t: t)
    inner.sort(key=lambda t: firsts[t], reverse=True)
    verified: list[datetime] = []
    i = 0
    while i < len(inner):
        j = min(len(inner), i + max(_EXACT_CHUNK, f.limit))
        while j < len(inner) and firsts[inner[j]] == firsts[inner[j - 1]]:
            j += 1
        got = _matching(store, f, inner[i:j])
        out += got
        verified += [first for first, _ in got]
        i = j
        if len(verified) >= f.limit and (i == len(inner) or firsts[inner[i]] < sorted(
                verified, reverse=True)[f.limit - 1]):
            break
    return out


def _first_starts(store: SpanStore, ids: list[str]) -> dict[str, datetime]:
    """Each trace's first span start over all its stored spans (``TRACE_FIRSTS``)."""
    return {r["trace_id"]: r["first"] for r in store.read(TRACE_FIRSTS, [ids])}


_HAS_TEXT = ("(contains(lower(input_messages), lower($3)) "
             "OR contains(lower(output_messages), lower($3)))")


def _partitions(store: SpanStore, start: datetime,
                end: datetime) -> list[tuple[str, datetime, datetime]]:
    """The sealed partitions whose hours overlap [start, end): (name, first, end)."""
    found = [(r["name"], hour_time(r["first_hour"]), hour_time(r["end_hour"]))
             for r in store.read("SELECT name, first_hour, end_hour FROM span_partitions")]
    return [p for p in found if p[1] < end and p[2] > start]


def _with_text(store: SpanStore, lo: datetime, hi: datetime, text: str,
               rows_of: dict[str, str]) -> list[str]:
    """The ids of the traces with a span started in [lo, hi) whose messages hold
    ``text``. ``rows_of``: row id conditions from the text index (``textindex``) for
    some partitions; the others, and the hot rows, are read whole. The hot rows are read
    with their copies (the view's dedup left out): a copy has its span's trace id."""
    plain = ("SELECT DISTINCT trace_id FROM spans WHERE start_time >= $1 AND "
             f"start_time < $2 AND {_HAS_TEXT}")
    if rows_of:
        where = f"start_time >= $1 AND start_time < $2 AND {_HAS_TEXT}"
        sources = [f"SELECT trace_id FROM {name} WHERE {rows_of.get(name, 'true')} AND "
                   f"{where}" for name, _, _ in _partitions(store, lo, hi)]
        sql = ("SELECT DISTINCT trace_id FROM (" + " UNION ALL ".join(
            [*sources, f"SELECT trace_id FROM {HOT} WHERE {where}"]) + ")")
        with contextlib.suppress(duckdb.CatalogException):  # a partition just dropped
            ids: list[str] = store.db.read_arrow(sql, [lo, hi, text]).column(
                "trace_id").to_pylist()
            return ids
    return [r["trace_id"] for r in store.read(plain, [lo, hi, text])]


_DETAIL = ("trace_id, parent_span_id, name, service_name, start_time, end_time, status_code, "
           "request_model, response_model, input_tokens, output_tokens")


def _bounds(store: SpanStore, trace_ids: list[str]) -> tuple[datetime, datetime] | None:
    """``partitions.TRACE_BOUNDS`` of these traces, None if they have no spans (50 newest
    traces over 3.5M spans: the page's details ~100 -> ~45 ms)."""
    row = store.read(TRACE_BOUNDS, [trace_ids])[0]
    return None if row["lo"] is None else (row["lo"], row["hi"])


def trace_summaries(store: SpanStore, trace_ids: list[str]) -> list[dict[str, Any]]:
    """Summary rows of the given traces (all their spans), newest first."""
    bounds = _bounds(store, trace_ids)
    if bounds is None:
        return []
    # The spans of these traces: sealed ones within the bounds, hot ones shown (the hot
    # anti-join built on these traces' rows alone, not the whole hot table).
    rows = store.read(
        f"""
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
        FROM (SELECT {_DETAIL} FROM spans_sealed WHERE trace_id IN (SELECT unnest($1))
                AND start_time BETWEEN $2 AND $3
              UNION ALL
              SELECT {_DETAIL} FROM {HOT} WHERE rowid IN (
                {hot_ids("WHERE trace_id IN (SELECT unnest($1))")}))
        GROUP BY trace_id ORDER BY start_time DESC, trace_id
        """, [trace_ids, *bounds])
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
