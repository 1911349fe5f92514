"""Read API the console draws from: trace search, facets, call graph, cost, storage.

Times are ISO 8601 with a zone (``2024-05-01T10:00:00Z``); without ``start`` and
``end`` a route covers the last hour. Every filter reaches DuckDB as a
parameter (appliance/store/queries.py). Handlers are plain functions, so
FastAPI runs them in its thread pool and DuckDB work never blocks ingest.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from appliance.settings import Settings
from appliance.store import callgraph, queries, storage
from appliance.store.costs import CostQuery
from appliance.store.spans import SpanStore

router = APIRouter(prefix="/api/v1", tags=["console"])

Start = Annotated[datetime | None, Query(description="range start, ISO 8601 with zone")]
End = Annotated[datetime | None, Query(description="range end (default now)")]


def _store(request: Request) -> SpanStore:
    store: SpanStore = request.app.state.store
    return store


def settings_of(request: Request) -> Settings:
    """The daemon's settings: set on app.state by whoever builds the app, else the
    resolved settings of the data folder that holds the span store."""
    s: Settings | None = getattr(request.app.state, "settings", None)
    if s is None:
        from appliance.daemon import settings_for

        s = request.app.state.settings = settings_for(_store(request).path.parent)
    return s


def _range(start: datetime | None, end: datetime | None) -> queries.TimeRange:
    end = end or datetime.now(UTC)
    return queries.TimeRange(start or end - timedelta(hours=1), end)


@router.get("/traces", summary="Search traces: one row per trace, newest first")
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
            "traces": queries.search_traces(_store(request), f)}


@router.get("/facets", summary="Services, models, agents and tools seen in a time range")
def facets(request: Request, start: Start = None, end: End = None) -> dict[str, Any]:
    return queries.facets(_store(request), _range(start, end))


@router.get("/graph", summary="Agent/tool/service call graph with call and error rates")
def graph(request: Request, start: Start = None, end: End = None) -> dict[str, Any]:
    return callgraph.call_graph(_store(request), _range(start, end))


@router.get("/cost", summary="Cost per request, service, model and day from token counts")
def cost(
    request: Request, start: Start = None, end: End = None,
    service: str | None = None, model: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="most expensive requests")] = 50,
) -> dict[str, Any]:
    q = CostQuery(_store(request), settings_of(request).prices, _range(start, end),
                  service=service or None, model=model or None)
    return q.report(limit)


@router.get("/storage", summary="Spans stored, ingest rate, disk per store, retention")
def storage_stats(request: Request) -> dict[str, Any]:
    return storage.storage_report(_store(request), settings_of(request))
