"""/api/v1/notify and a case's tickets: the outbox (pending, sent, dead letters), retry,
per-destination health, and "create ticket"."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from appliance.api.body import actor_of, json_body
from appliance.api.state import records_of
from appliance.errors import InvalidRequest
from appliance.notify.outbox import STATES
from appliance.notify.service import Notifications


class Retry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: int | None = Field(None, description="one dead letter; null: every dead letter")


class TicketRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: Literal["github", "jira"]


def notifications_of(request: Request) -> Notifications:
    """What the composition root built (``app.state.notify``, its worker running). An app
    built without it (tests, tools) gets the outbox and tickets over its records, with no
    worker: reads and ticket creation work, queued messages wait for a daemon."""
    state = request.app.state
    found: Notifications | None = getattr(state, "notify", None)
    if found is None:
        found = state.notify = Notifications.open(records_of(request))
    return found


def outbox(request: Request, state: str | None = None, case_id: str | None = None,
           limit: Annotated[int, Query(ge=1, le=10_000)] = 200) -> dict[str, Any]:
    if state is not None and state not in STATES:
        raise InvalidRequest(f"state must be one of {', '.join(STATES)}")
    n = notifications_of(request)
    return {"messages": n.outbox.messages(state, case_id, limit),
            "destinations": n.outbox.health()}


def health(request: Request) -> dict[str, Any]:
    return {"destinations": notifications_of(request).outbox.health()}


async def retry(request: Request) -> dict[str, Any]:
    body = await json_body(request, Retry)
    n = notifications_of(request)
    count = await run_in_threadpool(n.outbox.retry, body.id)
    await run_in_threadpool(records_of(request).audit.append, actor_of(request),
                            "notify.retry", f"outbox:{body.id or 'all'}", {"retried": count})
    return {"retried": count}


async def ticket(request: Request, case_id: str) -> JSONResponse:
    body = await json_body(request, TicketRequest)
    await run_in_threadpool(records_of(request).cases.get, case_id)  # 404 first
    n = notifications_of(request)
    found = await run_in_threadpool(n.tickets.create, case_id, body.to, actor_of(request))
    return JSONResponse(found, status_code=200 if found["existing"] else 201)


def case_notifications(request: Request, case_id: str) -> dict[str, Any]:
    """Where the case was sent and when, its ticket, and the trackers it can go to."""
    records_of(request).cases.get(case_id)  # 404 for an unknown case
    n = notifications_of(request)
    s = records_of(request).settings.notify
    return {"case_id": case_id, "messages": n.outbox.messages(case_id=case_id, limit=1000),
            "ticket": n.tickets.get(case_id),
            "trackers": [name for name in ("github", "jira") if getattr(s, name) is not None]}
