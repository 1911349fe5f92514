"""Span store reads: health, numbers, one trace, a page of spans."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request

from appliance import errors
from appliance.api.ingest import counters_of
from appliance.api.state import store_of
from appliance.store.genai_content import with_content


def healthz(request: Request) -> dict[str, str]:
    # The store answers a query (its lock and connection work); not a count through the
    # spans view, which costs more as the store fills and runs every health check.
    store_of(request).read("SELECT 1 AS ok")
    return {"status": "ok"}


def stats(request: Request) -> dict[str, Any]:
    store = store_of(request)
    last = store.last_ingest()
    return {**store.stats(), "spans": store.count(),
            "last_ingest": last.isoformat() if last else None,
            "ingest": counters_of(request).as_dict()}


def count(request: Request, service: str | None = None) -> dict[str, Any]:
    return {"service": service, "spans": store_of(request).count(service)}


def trace(request: Request, trace_id: str) -> dict[str, Any]:
    spans = store_of(request).trace(trace_id.lower())
    if not spans:
        raise errors.NotFound(f"no spans for trace {trace_id}")
    return {"trace_id": trace_id.lower(), "spans": [with_content(sp) for sp in spans]}


def spans(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
    service: str | None = None,
    trace_id: str | None = None,
) -> dict[str, Any]:
    return {"spans": store_of(request).spans(limit=limit, offset=offset, service=service,
                                             trace_id=trace_id)}
