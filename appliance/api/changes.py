"""/api/v1/changes: record and list change events."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from appliance.api.body import actor_of, json_body
from appliance.api.state import records_of
from appliance.changes.store import ChangeIn
from appliance.times import optional_time


async def record(request: Request) -> JSONResponse:
    body = await json_body(request, ChangeIn)
    records = records_of(request)
    event = await run_in_threadpool(records.changes.record, body, actor_of(request))
    return JSONResponse(event, status_code=201)


def list_changes(request: Request, service: str | None = None, since: str | None = None,
                 until: str | None = None,
                 limit: Annotated[int, Query(ge=1, le=10_000)] = 500) -> dict[str, Any]:
    records = records_of(request)
    return {"changes": records.changes.list(service, optional_time(since, "since"),
                                            optional_time(until, "until"), limit)}
