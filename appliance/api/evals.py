"""/api/v1/evals/run: score a stored window with the built-in evaluators in the daemon
(the one writer), for `tracehold evals run` while the stack runs.
/api/v1/traces/{trace_id}/evaluations: the built-in scores of one trace's spans with their
source and evaluator version (the app's own stay on the spans). /metrics: the built-in
scores as evaluation histograms for Prometheus and VictoriaMetrics
(``appliance/evals/metrics.py`` says why they are scraped from here)."""

from __future__ import annotations

import threading
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from appliance import errors
from appliance.api.body import json_body
from appliance.api.state import records_of
from appliance.evals.evaluators import Encoder
from appliance.evals.metrics import EvalMetrics
from appliance.evals.runner import score_window
from appliance.evals.store import EvalStore
from appliance.times import parse_time

_encoder_lock = threading.Lock()
_metrics_lock = threading.Lock()


class EvalRunIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    from_: str = Field(alias="from", description="ISO 8601 start of the window")
    to: str = Field(description="ISO 8601 end of the window")
    service: str | None = Field(None, description="Only this service's calls")


def _encoder(request: Request) -> Encoder:
    """The embedder, loaded at the first run (~0.6 s, ~200 MiB) and kept by the app."""
    from appliance.rca.embed import Embedder

    with _encoder_lock:
        encoder: Encoder | None = getattr(request.app.state, "evals_encoder", None)
        if encoder is None:
            encoder = request.app.state.evals_encoder = Embedder()
        return encoder


async def run(request: Request) -> dict[str, Any]:
    body = await json_body(request, EvalRunIn)
    start, end = parse_time(body.from_, "from"), parse_time(body.to, "to")
    records = records_of(request)
    encoder = await run_in_threadpool(_encoder, request)
    stats = await run_in_threadpool(score_window, records.store, encoder,
                                    records.settings.evals_evaluators, start, end,
                                    body.service)
    return stats.as_dict()


def trace_evaluations(request: Request, trace_id: str) -> dict[str, Any]:
    """Every built-in score of the trace, per span and name; [] until the worker (or
    ``tracehold evals run``) has scored it. An unknown trace is 404, as its spans are."""
    records, trace_id = records_of(request), trace_id.lower()
    if not records.store.read("SELECT 1 AS found FROM spans WHERE trace_id = ? LIMIT 1",
                              [trace_id]):
        raise errors.NotFound(f"no spans for trace {trace_id}")
    return {"trace_id": trace_id, "evaluations": EvalStore(records.store.db).for_trace(trace_id)}


def _metrics(request: Request) -> EvalMetrics:
    """The app's histograms, counting from its first scrape."""
    with _metrics_lock:
        found: EvalMetrics | None = getattr(request.app.state, "evals_metrics", None)
        if found is None:
            records = records_of(request)
            found = request.app.state.evals_metrics = EvalMetrics(
                records.store.db, records.settings.evaluation_names)
        return found


async def metrics(request: Request) -> PlainTextResponse:
    text = await run_in_threadpool(lambda: _metrics(request).exposition())
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")
