"""/api/v1/cases: open (or join) a case, read, act on it, verify it by its detector,
export it."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from appliance.api.body import DEFAULT_LIMIT, actor_of, json_body
from appliance.api.state import records_of
from appliance.cases.check import check_case
from appliance.cases.model import Assign, Case, CaseOpen, Note, Rca, Resolve, StatusChange, Verify
from appliance.errors import Conflict
from appliance.headers import USER_HEADER
from appliance.times import parse_time


async def open_case(request: Request) -> JSONResponse:
    body = await json_body(request, CaseOpen)
    actor = (actor_of(request) if request.headers.get(USER_HEADER) or not body.detected_by
             else body.detector_actor or "api")
    records = records_of(request)
    case = await run_in_threadpool(records.cases.open, body, actor)
    return JSONResponse(case.model_dump(mode="json"),
                        status_code=200 if case.deduplicated else 201)


def list_cases(request: Request, status: str | None = None, service: str | None = None,
               failure_type: str | None = None,
               limit: Annotated[int, Query(ge=1, le=10_000)] = 200) -> dict[str, Any]:
    cases = records_of(request).cases
    return {"cases": [c.model_dump(mode="json")
                      for c in cases.list(status, service, failure_type, limit)]}


def get_case(request: Request, case_id: str) -> dict[str, Any]:
    return records_of(request).cases.get(case_id).model_dump(mode="json")


async def _act(request: Request, case_id: str, model: type[BaseModel], action: str,
               limit: int = DEFAULT_LIMIT) -> dict[str, Any]:
    """Parse the body, then run one CaseStore action with the caller as the actor."""
    cases = records_of(request).cases
    body = await json_body(request, model, limit=limit)
    case: Case = await run_in_threadpool(getattr(cases, action), case_id, body,
                                         actor_of(request))
    return case.model_dump(mode="json")


async def assign(request: Request, case_id: str) -> dict[str, Any]:
    return await _act(request, case_id, Assign, "assign")


async def status(request: Request, case_id: str) -> dict[str, Any]:
    return await _act(request, case_id, StatusChange, "set_status")


async def notes(request: Request, case_id: str) -> dict[str, Any]:
    note_max = records_of(request).cases.note_max_bytes
    # JSON escapes can take up to 6 bytes per byte of text; the text itself is checked exactly
    return await _act(request, case_id, Note, "add_note", limit=note_max * 6 + 4096)


async def resolve(request: Request, case_id: str) -> dict[str, Any]:
    return await _act(request, case_id, Resolve, "resolve")


async def verify(request: Request, case_id: str) -> dict[str, Any]:
    return await _act(request, case_id, Verify, "verify")


async def rca(request: Request, case_id: str) -> dict[str, Any]:
    return await _act(request, case_id, Rca, "set_rca", limit=2 * 1024 * 1024)


async def export(request: Request, case_id: str) -> Response:
    from appliance.export import bundle  # matplotlib and reportlab load on first export

    records = records_of(request)
    data, manifest = await run_in_threadpool(bundle.build, records, case_id, actor_of(request))
    name = f"tracehold-{case_id}-{manifest['export_id']}.zip"
    return Response(data, media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


async def check(request: Request, case_id: str) -> dict[str, Any]:
    records = records_of(request)
    case = await run_in_threadpool(records.cases.get, case_id)
    body = await run_in_threadpool(check_case, records.store, records.settings.detect, case)
    case = await run_in_threadpool(records.cases.verify, case_id, body, actor_of(request))
    return case.model_dump(mode="json")


async def rca_run(request: Request, case_id: str) -> JSONResponse:
    """Queue a run on the RCA worker; answers at once (the worker's thread does the work,
    never the API's)."""
    records = records_of(request)
    case = await run_in_threadpool(records.cases.get, case_id)  # 404 for an unknown id
    records.rca.request(case.id)
    return JSONResponse({"case_id": case.id, "queued": True,
                         "runs": case.rca.runs if case.rca else 0,
                         "worker_running": records.rca.running}, status_code=202)


class InvestigateBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    from_: str = Field(alias="from", description="ISO 8601 start of the window")
    to: str = Field(description="ISO 8601 end of the window")
    services: list[str] = Field(default_factory=list, max_length=200)


async def investigate(request: Request) -> dict[str, Any]:
    """The detectors and the RCA over a stored window, run on the RCA worker's thread
    (so it queues behind, and never beside, the live cases' runs)."""
    from appliance.rca.investigate import investigate as run

    body = await json_body(request, InvestigateBody)
    start, end = parse_time(body.from_, "from"), parse_time(body.to, "to")
    worker = records_of(request).rca
    if not worker.running:
        raise Conflict("the RCA worker is not running (rca_enabled is false); run "
                       "`tracehold investigate` with the daemon stopped to investigate "
                       "offline")
    future = worker.submit(lambda: run(worker.sources, start, end, body.services or None,
                                       worker.kb(), worker.model()))
    result: dict[str, Any] = await asyncio.wrap_future(future)
    return result
