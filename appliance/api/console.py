"""Read API the console draws from: trace search, facets, call graph, cost, storage.

Times are ISO 8601 with a zone (``2024-05-01T10:00:00Z``); without ``start`` and
``end`` a route covers the last hour. Every filter reaches DuckDB as a
parameter (appliance/store/queries.py). Handlers are plain functions, so
FastAPI runs them in its thread pool and DuckDB work never blocks ingest.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import Query, Request

from appliance.api.state import settings_of, store_of
from appliance.store import callgraph, queries, storage
from appliance.store.costs import CostQuery

Start = Annotated[datetime | None, Query(description="range start, ISO 8601 with zone")]
End = Annotated[datetime | None, Query(description="range end (default now)")]


def _range(start: datetime | None, end: datetime | None) -> queries.TimeRange:
    end = end or datetime.now(UTC)
    return queries.TimeRange(start or end - timedelta(hours=1), end)


def search_traces(
    request: Request, start: Start = None, end: End = None,
    service: str | None = None,
    model: Annotated[str | None, Query(description="request or response model")] = None,
    status: Annotated[queries.Status | None, Query(description="ok, error or unset")] = None,
    text: Annotated[str | None, Query(description="in prompt or output, any case")] = None,
    min_duration_ms: Annotated[float | None, Query(ge=0)] = None,
    limit: Annotated[int, Query(ge=1, le=queries.MAX_LIMIT)] = 50,
) -> dict[str, Any]:
    f = queries.TraceFilter(_range(start, end), service=service or None, model=model or None,
                            status=status, text=text or None, min_duration_ms=min_duration_ms,
                            limit=limit)
    return {"start": f.range.start, "end": f.range.end,
            "traces": queries.search_traces(store_of(request), f)}


def facets(request: Request, start: Start = None, end: End = None) -> dict[str, Any]:
    return queries.facets(store_of(request), _range(start, end))


def graph(request: Request, start: Start = None, end: End = None) -> dict[str, Any]:
    return callgraph.call_graph(store_of(request), _range(start, end))


def cost(
    request: Request, start: Start = None, end: End = None,
    service: str | None = None, model: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="most expensive requests")] = 50,
) -> dict[str, Any]:
    q = CostQuery(store_of(request), settings_of(request).prices, _range(start, end),
                  service=service or None, model=model or None)
    return q.report(limit)


def storage_stats(request: Request) -> dict[str, Any]:
    return storage.storage_report(store_of(request), settings_of(request))
