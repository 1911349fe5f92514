"""/api/v1/cases: open (or join) a case, read, act on it, export it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from appliance.api.body import DEFAULT_LIMIT, USER_HEADER, actor_of, json_body
from appliance.cases.model import Assign, CaseOpen, Note, Rca, Resolve, StatusChange, Verify
from appliance.casework.services import records_for

router = APIRouter(prefix="/api/v1/cases", tags=["cases"])


@router.post("", summary="Open a case (detector or person); joins an open case with the "
                         "same signature and answers deduplicated: true")
async def open_case(request: Request) -> JSONResponse:
    body = await json_body(request, CaseOpen)
    actor = (actor_of(request) if request.headers.get(USER_HEADER) or not body.detected_by
             else body.detector_actor or "api")
    records = records_for(request.app.state.store)
    case = await run_in_threadpool(records.cases.open, body, actor)
    return JSONResponse(case, status_code=200 if case["deduplicated"] else 201)


@router.get("", summary="Cases, newest first, filtered by status, service, failure_type")
def list_cases(request: Request, status: str | None = None, service: str | None = None,
               failure_type: str | None = None,
               limit: Annotated[int, Query(ge=1, le=10_000)] = 200) -> dict[str, Any]:
    cases = records_for(request.app.state.store).cases
    return {"cases": cases.list(status, service, failure_type, limit)}


@router.get("/{case_id}", summary="One case with its timeline")
def get_case(request: Request, case_id: str) -> dict[str, Any]:
    return records_for(request.app.state.store).cases.get(case_id)


async def _act(request: Request, case_id: str, model: type[BaseModel], action: str,
               limit: int = DEFAULT_LIMIT) -> dict[str, Any]:
    """Parse the body, then run one CaseStore action with the caller as the actor."""
    cases = records_for(request.app.state.store).cases
    body = await json_body(request, model, limit=limit)
    result: dict[str, Any] = await run_in_threadpool(getattr(cases, action), case_id, body,
                                                     actor_of(request))
    return result


@router.post("/{case_id}/assign", summary="Assign (or unassign with null)")
async def assign(request: Request, case_id: str) -> dict[str, Any]:
    return await _act(request, case_id, Assign, "assign")


@router.post("/{case_id}/status", summary="Move to investigating/mitigated, or reopen")
async def status(request: Request, case_id: str) -> dict[str, Any]:
    return await _act(request, case_id, StatusChange, "set_status")


@router.post("/{case_id}/notes", summary="Add a note (at most case_note_max_kib)")
async def notes(request: Request, case_id: str) -> dict[str, Any]:
    note_max = records_for(request.app.state.store).cases.note_max_bytes
    # JSON escapes can take up to 6 bytes per byte of text; the text itself is checked exactly
    return await _act(request, case_id, Note, "add_note", limit=note_max * 6 + 4096)


@router.post("/{case_id}/resolve", summary="Resolve with root cause and fix applied")
async def resolve(request: Request, case_id: str) -> dict[str, Any]:
    return await _act(request, case_id, Resolve, "resolve")


@router.post("/{case_id}/verify", summary="Record a verification check (back to baseline?)")
async def verify(request: Request, case_id: str) -> dict[str, Any]:
    return await _act(request, case_id, Verify, "verify")


@router.put("/{case_id}/rca", summary="Store an RCA run's result")
async def rca(request: Request, case_id: str) -> dict[str, Any]:
    return await _act(request, case_id, Rca, "set_rca", limit=2 * 1024 * 1024)


@router.get("/{case_id}/export", summary="The signed evidence zip (audited)",
            response_class=Response)
async def export(request: Request, case_id: str) -> Response:
    from appliance.export import bundle  # matplotlib and reportlab load on first export

    records = records_for(request.app.state.store)
    data, manifest = await run_in_threadpool(bundle.build, records, case_id, actor_of(request))
    name = f"tracehold-{case_id}-{manifest['export_id']}.zip"
    return Response(data, media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
