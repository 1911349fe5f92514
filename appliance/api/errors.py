"""One error shape for every JSON error the daemon returns, whatever raised it:

    {"ok": false, "status": 404, "type": "not_found", "title": "Not found",
     "error": "<why>", "request_id": "<id>"}

``type`` is stable and names a class of ``appliance.errors`` (the CLI maps it back
with ``errors.from_type``); ``request_id`` is also the ``x-request-id`` response
header and appears in the daemon's log line for an unexpected error. No stack trace
ever reaches a body. Built here only (``error_body``); ``install`` routes our
exceptions, FastAPI's validation errors, Starlette's 404/405 and any unexpected
exception through it. ``tests/unit/test_error_shape.py`` pins it for every route.
"""

from __future__ import annotations

import logging
import re
import uuid

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from appliance import errors
from appliance.api.body import validation_message
from appliance.headers import REQUEST_ID_HEADER

log = logging.getLogger("tracehold.api")
_SANE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def error_body(exc: errors.TraceholdError, request_id: str) -> dict[str, object]:
    return {"ok": False, "status": exc.status, "type": exc.type, "title": exc.title,
            "error": exc.message, "request_id": request_id}


def request_id_of(request: Request) -> str:
    rid: str = request.scope.get("state", {}).get("request_id") or "-"
    return rid


def from_exception(exc: errors.TraceholdError, request: Request) -> JSONResponse:
    # 503 asks the collector to retry the batch (it honours Retry-After).
    headers = {"Retry-After": "1"} if exc.status == 503 else None
    return JSONResponse(error_body(exc, request_id_of(request)), status_code=exc.status,
                        headers=headers)


class RequestIdMiddleware:
    """Gives every request an id (the caller's ``x-request-id`` if sane) and echoes it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")
        rid = given if _SANE_ID.match(given) else uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = rid
            await send(message)

        await self.app(scope, receive, send_with_id)


def _http_error(exc: HTTPException, request: Request) -> errors.TraceholdError:
    if exc.status_code == 404:
        return errors.NotFound(f"no route {request.url.path}")
    if exc.status_code == 405:
        return errors.MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}")
    cls = errors.from_type(None, exc.status_code)
    return cls(str(exc.detail))


def install(app: FastAPI) -> None:
    """Route every error of ``app`` through the one shape."""
    app.add_middleware(RequestIdMiddleware)

    @app.exception_handler(errors.TraceholdError)
    async def _ours(request: Request, exc: errors.TraceholdError) -> Response:
        return from_exception(exc, request)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return from_exception(errors.InvalidRequest(validation_message(exc)), request)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        return from_exception(_http_error(exc, request), request)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        rid = request_id_of(request)
        log.error("request %s %s %s failed", rid, request.method, request.url.path,
                  exc_info=exc)
        internal = errors.InternalError(f"unexpected error; the daemon log has request {rid}")
        return from_exception(internal, request)
