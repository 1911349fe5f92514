"""The daemon's HTTP API on loopback: OTLP/HTTP trace ingest and the JSON read API.

``/v1/traces`` answers 200 only after the batch is committed to DuckDB, so
the collector's on-disk queue keeps anything not yet stored. A transient
store failure answers 503 (the collector retries); a body that can never be
stored answers 4xx with the reason.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from appliance import errors
from appliance.api import routes_console
from appliance.api.body import read_limited, validation_message
from appliance.api.errors import error_response, from_exception
from appliance.casework import routes as casework_routes
from appliance.detect import verify as detect_verify
from appliance.ingest.limits import IngestLimits
from appliance.ingest.otlp import decode_body, to_rows
from appliance.store.genai_content import with_content
from appliance.store.spans import SpanStore


class IngestCounters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = self.spans_received = self.spans_new = self.spans_rejected = 0
        self.last_ingest: datetime | None = None

    def add(self, received: int, new: int, rejected: int) -> None:
        with self._lock:
            self.requests += 1
            self.spans_received += received
            self.spans_new += new
            self.spans_rejected += rejected
            self.last_ingest = datetime.now(UTC)

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "spans_received": self.spans_received,
                "spans_new": self.spans_new, "spans_rejected": self.spans_rejected}


def _ingest(store: SpanStore, body: bytes, content_type: str | None,
            encoding: str | None, limits: IngestLimits) -> tuple[int, int, int]:
    request = decode_body(body, content_type, encoding, limits)
    batch = to_rows(request, limits, datetime.now(UTC))
    new = store.insert(batch.rows) if batch.rows else 0
    return len(batch.rows), new, batch.rejected_spans


def _otlp_response(content_type: str, rejected: int) -> Response:
    msg = ExportTraceServiceResponse()
    if rejected:
        msg.partial_success.rejected_spans = rejected
        msg.partial_success.error_message = "spans without a valid trace or span id"
    if "json" in content_type:
        body = {"partialSuccess": {"rejectedSpans": rejected,
                                   "errorMessage": msg.partial_success.error_message}}
        return JSONResponse(body if rejected else {})
    return Response(msg.SerializeToString(), media_type="application/x-protobuf")


def create_app(store: SpanStore, limits: IngestLimits | None = None) -> FastAPI:
    limits = limits or IngestLimits()
    counters = IngestCounters()
    app = FastAPI(title="Tracehold daemon", version="0.1.0")
    app.state.store, app.state.counters = store, counters

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        # FastAPI's own 422 shape would be the one error not in ours.
        return error_response(400, "Invalid request", validation_message(exc))

    @app.exception_handler(errors.TraceholdError)
    async def _tracehold_error(request: Request, exc: errors.TraceholdError) -> Response:
        return from_exception(exc)

    @app.post("/v1/traces", summary="OTLP/HTTP trace export (protobuf or JSON, gzip)")
    async def ingest(request: Request) -> Response:
        content_type = request.headers.get("content-type", "")
        body = await read_limited(request, limits.max_body_bytes, errors.PayloadTooLarge)
        received, new, rejected = await run_in_threadpool(
            _ingest, store, body, content_type, request.headers.get("content-encoding"), limits
        )
        counters.add(received, new, rejected)
        return _otlp_response(content_type, rejected)

    @app.get("/healthz", summary="Liveness: the span store answers")
    def healthz() -> dict[str, str]:
        store.count()
        return {"status": "ok"}

    @app.get("/api/v1/stats", summary="Span store and ingest numbers")
    def stats() -> dict[str, Any]:
        last = store.last_ingest()
        return {**store.stats(), "spans": store.count(),
                "last_ingest": last.isoformat() if last else None,
                "ingest": counters.as_dict()}

    @app.get("/api/v1/count", summary="Number of spans stored, optionally for one service")
    def count(service: str | None = None) -> dict[str, Any]:
        return {"service": service, "spans": store.count(service)}

    @app.get("/api/v1/traces/{trace_id}", summary="Every span of one trace, by start time")
    def trace(trace_id: str) -> dict[str, Any]:
        spans = store.trace(trace_id.lower())
        if not spans:
            raise errors.NotFound(f"no spans for trace {trace_id}")
        return {"trace_id": trace_id.lower(), "spans": [with_content(sp) for sp in spans]}

    @app.get("/api/v1/spans", summary="Spans, newest first, optionally filtered")
    def spans(
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
        service: str | None = None,
        trace_id: str | None = None,
    ) -> dict[str, Any]:
        return {"spans": store.spans(limit=limit, offset=offset, service=service,
                                     trace_id=trace_id)}

    # -- routers from other modules (one line each) --
    app.include_router(routes_console.router)
    app.include_router(casework_routes.router)  # changes, cases, audit, report
    app.include_router(detect_verify.router)  # cases/{id}/check: verification by detector

    @app.exception_handler(404)
    async def _not_found(request: Request, exc: Exception) -> Response:
        return error_response(404, "Not found", f"no route {request.url.path}")

    return app
