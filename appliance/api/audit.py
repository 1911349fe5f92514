"""/api/v1/audit: browse and verify the log, read signed heads; loopback clients append
entries the daemon cannot see itself (key changes made by the CLI, console logins)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from appliance.api.body import actor_of, json_body, require_loopback
from appliance.api.state import records_of
from appliance.errors import Forbidden

# Actions only the daemon writes: a client cannot forge a case action, an export, a
# notification retry or a console login (logins have their own route, below).
RESERVED = ("case.", "rca.", "change.", "audit.", "report.", "detection.", "notify.",
            "console.")


class ClientEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: str = Field(min_length=3, max_length=64)
    subject: str = Field(min_length=1, max_length=200)
    details: dict[str, Any] = Field(default_factory=dict)


class Login(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str = Field(min_length=1, max_length=128)
    ok: bool = True
    remote_addr: str | None = Field(None, max_length=100)


def entries(request: Request, subject: str | None = None, action: str | None = None,
            after: Annotated[int, Query(ge=0)] = 0,
            limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> dict[str, Any]:
    audit = records_of(request).audit
    return {"entries": audit.entries(subject, action, after, limit)}


def verify(request: Request) -> dict[str, Any]:
    records = records_of(request)
    return records.audit.verify(records.signer.public_pem)


def heads(request: Request, limit: Annotated[int, Query(ge=1, le=10_000)] = 30
          ) -> dict[str, Any]:
    records = records_of(request)
    return {"key_id": records.signer.key_id, "public_key": records.signer.public_pem.decode(),
            "heads": records.audit.heads(limit)}


async def append(request: Request) -> JSONResponse:
    require_loopback(request)
    body = await json_body(request, ClientEntry, limit=64 * 1024)
    if body.action.startswith(RESERVED):
        raise Forbidden(f"actions starting {', '.join(RESERVED)} are written by the daemon only")
    audit = records_of(request).audit
    entry = await run_in_threadpool(audit.append, actor_of(request), body.action, body.subject,
                                    body.details)
    return JSONResponse(entry, status_code=201)


async def login(request: Request) -> JSONResponse:
    require_loopback(request)
    body = await json_body(request, Login, limit=16 * 1024)
    audit = records_of(request).audit
    action = "console.login" if body.ok else "console.login_failed"
    entry = await run_in_threadpool(audit.append, body.user, action, f"user:{body.user}",
                                    {"remote_addr": body.remote_addr})
    return JSONResponse(entry, status_code=201)
