"""Every route of the daemon's API, registered in one place (as Prometheus'
``web/api/v1/api.go`` does): the table is the API's map. Handlers live in the module
named for what they serve; none declares its own path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from appliance.api import audit, cases, changes, console, evals, ingest, notify, report, spans
from appliance.domain.change_kinds import kinds_text


class Route(NamedTuple):
    method: str
    path: str
    handler: Callable[..., Any]
    summary: str
    tag: str
    status: int = 200
    # what the OpenAPI document says the route answers; a handler may return any Response
    response_class: type[Response] = JSONResponse


CASE = "/api/v1/cases/{case_id}"
ROUTES: tuple[Route, ...] = (
    # OTLP in, and the span store's own reads
    Route("POST", "/v1/traces", ingest.ingest,
          "OTLP/HTTP trace export (protobuf or JSON, gzip)", "ingest",
          response_class=Response),
    Route("GET", "/healthz", spans.healthz, "Liveness: the span store answers", "spans"),
    Route("GET", "/api/v1/stats", spans.stats, "Span store and ingest numbers", "spans"),
    Route("GET", "/api/v1/count", spans.count,
          "Number of spans stored, optionally for one service", "spans"),
    Route("GET", "/api/v1/traces/{trace_id}", spans.trace,
          "Every span of one trace, by start time", "spans"),
    Route("GET", "/api/v1/spans", spans.spans, "Spans, newest first, optionally filtered",
          "spans"),
    # what the console draws
    Route("GET", "/api/v1/traces", console.search_traces,
          "Search traces: one row per trace, newest first", "console"),
    Route("GET", "/api/v1/facets", console.facets,
          "Services, models, agents and tools seen in a time range", "console"),
    Route("GET", "/api/v1/graph", console.graph,
          "Agent/tool/service call graph with call and error rates", "console"),
    Route("GET", "/api/v1/cost", console.cost,
          "Cost per request, service, model and day from token counts", "console"),
    Route("GET", "/api/v1/storage", console.storage_stats,
          "Spans stored, ingest rate, disk per store, retention", "console"),
    # change events
    Route("POST", "/api/v1/changes", changes.record,
          f"Record a change event (kind: {kinds_text()})",
          "changes", status=201),
    Route("GET", "/api/v1/changes", changes.list_changes,
          "Change events, newest first; since/until are ISO 8601", "changes"),
    # built-in evaluations
    Route("POST", "/api/v1/evals/run", evals.run,
          "Score the model calls of a stored window [from, to) (ISO 8601) with the built-in "
          "evaluators", "evals"),
    Route("GET", "/api/v1/traces/{trace_id}/evaluations", evals.trace_evaluations,
          "Built-in evaluation scores of one trace's spans, with source and evaluator version "
          "([] until scored)", "evals"),
    Route("GET", "/metrics", evals.metrics,
          "The built-in scores as llm_evaluation_<name> histograms (Prometheus text), "
          "scraped by Prometheus and VictoriaMetrics", "evals", response_class=PlainTextResponse),
    # cases
    Route("POST", "/api/v1/cases", cases.open_case,
          "Open a case (detector or person); joins an open case with the same signature "
          "and answers deduplicated: true", "cases", status=201),
    Route("GET", "/api/v1/cases", cases.list_cases,
          "Cases, newest first, filtered by status, service, failure_type", "cases"),
    Route("GET", CASE, cases.get_case, "One case with its timeline", "cases"),
    Route("POST", f"{CASE}/assign", cases.assign, "Assign (or unassign with null)", "cases"),
    Route("POST", f"{CASE}/status", cases.status,
          "Move to investigating/mitigated, or reopen", "cases"),
    Route("POST", f"{CASE}/notes", cases.notes, "Add a note (at most case_note_max_kib)",
          "cases"),
    Route("POST", f"{CASE}/resolve", cases.resolve, "Resolve with root cause and fix applied",
          "cases"),
    Route("POST", f"{CASE}/verify", cases.verify,
          "Record a verification check (back to baseline?)", "cases"),
    Route("POST", f"{CASE}/check", cases.check,
          "Verify now: the case's detector judges the window", "cases"),
    Route("PUT", f"{CASE}/rca", cases.rca, "Store an RCA run's result", "cases"),
    Route("POST", f"{CASE}/rca/run", cases.rca_run,
          "Queue an RCA run on the daemon's RCA worker (202: queued; the case's rca.runs "
          "moves when it is done)", "cases", status=202),
    Route("POST", "/api/v1/investigate", cases.investigate,
          "Run the detectors and the RCA over a stored window [from, to) (ISO 8601), on "
          "the RCA worker; stores no case", "cases"),
    Route("GET", f"{CASE}/export", cases.export, "The signed evidence zip (audited)", "cases",
          response_class=Response),
    Route("POST", f"{CASE}/ticket", notify.ticket,
          "Create the case's ticket in GitHub or Jira ({to}); answers the existing one (200) "
          "if it has one", "notify", status=201),
    Route("GET", f"{CASE}/notifications", notify.case_notifications,
          "Where the case was sent and when, and its ticket", "notify"),
    # notifications
    Route("GET", "/api/v1/notify/outbox", notify.outbox,
          "Outbox messages (pending, sent, dead), newest first, and each destination's health",
          "notify"),
    Route("GET", "/api/v1/notify/health", notify.health,
          "Each destination's pending and dead counts and last error", "notify"),
    Route("POST", "/api/v1/notify/retry", notify.retry,
          "Dead letters back to pending: {id} for one, {} for all (audited)", "notify"),
    # audit log
    Route("GET", "/api/v1/audit", audit.entries, "Audit entries in chain order", "audit"),
    Route("GET", "/api/v1/audit/verify", audit.verify,
          "Recompute the hash chain; names the first broken entry", "audit"),
    Route("GET", "/api/v1/audit/heads", audit.heads,
          "Signed chain heads, newest first, and the public key", "audit"),
    Route("POST", "/api/v1/audit", audit.append,
          "Append an entry (loopback only; e.g. `tracehold keys`)", "audit", status=201),
    Route("POST", "/api/v1/audit/login", audit.login,
          "Record a console sign-in (loopback only)", "audit", status=201),
    # compliance report
    Route("GET", "/api/v1/report", report.report,
          "Compliance report for [from, to) (ISO 8601): JSON, HTML or PDF", "report"),
)


def register(app: FastAPI) -> None:
    for r in ROUTES:
        app.add_api_route(r.path, r.handler, methods=[r.method], summary=r.summary,
                          tags=[r.tag], status_code=r.status, response_model=None,
                          response_class=r.response_class)
