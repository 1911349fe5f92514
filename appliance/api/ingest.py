"""``POST /v1/traces``: OTLP/HTTP trace export, protobuf or JSON, gzip or plain.

It answers 200 only after the batch is committed to DuckDB, so the collector's
on-disk queue keeps anything not yet stored. A transient store failure answers 503
(the collector retries); a body that can never be stored answers 4xx with the reason.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any

from fastapi import Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from appliance import errors
from appliance.api.body import read_limited
from appliance.api.state import limits_of, store_of
from appliance.ingest.limits import IngestLimits
from appliance.ingest.rows import body_rows
from appliance.store.spans import SpanStore

log = logging.getLogger("tracehold.api.ingest")


class IngestCounters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = self.spans_received = self.spans_written = self.spans_rejected = 0
        self.last_ingest: datetime | None = None

    def add(self, received: int, written: int, rejected: int) -> None:
        with self._lock:
            self.requests += 1
            self.spans_received += received
            self.spans_written += written  # retries included: the store drops them at its seal
            self.spans_rejected += rejected
            self.last_ingest = datetime.now(UTC)

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "spans_received": self.spans_received,
                "spans_written": self.spans_written, "spans_rejected": self.spans_rejected}


def counters_of(request: Request) -> IngestCounters:
    counters: IngestCounters = request.app.state.counters
    return counters


def _ingest(store: SpanStore, body: bytes, content_type: str | None,
            encoding: str | None, limits: IngestLimits, native: bool = True
            ) -> tuple[int, int, int]:
    batch = body_rows(body, content_type, encoding, limits, datetime.now(UTC), native)
    try:
        written = store.insert(batch.rows) if batch.rows else 0  # committed on return
    except errors.StoreUnavailable:
        raise
    except errors.StoreError as exc:
        # Nothing of the batch was committed, and the collector drops a batch answered 500
        # for good (OTLP retries 429/502/503/504 only): every store failure of an insert is
        # answered 503, so the batch waits in the collector's queue instead of being lost
        # (a retry is idempotent). Logged, because the cause is the store's, not the batch's.
        log.error("storing a batch of %d spans failed; answered 503 so it is retried: %s",
                  len(batch.rows), exc)
        raise errors.StoreUnavailable(f"span store could not store the batch: {exc}") from exc
    return len(batch.rows), written, batch.rejected_spans


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


async def ingest(request: Request) -> Response:
    limits = limits_of(request)
    content_type = request.headers.get("content-type", "")
    body = await read_limited(request, limits.max_body_bytes, errors.PayloadTooLarge)
    received, written, rejected = await run_in_threadpool(
        _ingest, store_of(request), body, content_type,
        request.headers.get("content-encoding"), limits, request.app.state.native_walker)
    counters_of(request).add(received, written, rejected)
    return _otlp_response(content_type, rejected)
