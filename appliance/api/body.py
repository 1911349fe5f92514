"""Request bodies and callers for the JSON API routes that change state.

Bodies are read with a size limit (413 before the whole body is in memory) and
validated into a pydantic model, so a bad field is a 400 in the one error shape
naming the field, never FastAPI's default 422 shape. The actor recorded in the
audit log comes from ``x-tracehold-user`` (the CLI sends ``cli:<user>``, the
console its signed-in user, detectors ``detector:<name>``); a caller that sends
none is recorded as ``api``. Anyone on loopback can claim a name: the daemon
listens on loopback only.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from appliance.errors import (
    ContentTooLarge,
    Forbidden,
    InvalidRequest,
    TraceholdError,
    UnsupportedContent,
)
from appliance.headers import USER_HEADER

M = TypeVar("M", bound=BaseModel)
_ACTOR = re.compile(r"^[\w.@:+/ -]{1,128}$")
DEFAULT_LIMIT = 256 * 1024


async def read_limited(request: Request, limit: int,
                       too_large: type[TraceholdError] = ContentTooLarge) -> bytes:
    """The body, refused with `too_large` (a 413) before more than `limit` bytes are held."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(f"body of {declared} bytes is over the {limit}-byte limit")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(f"body is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def validation_message(exc: ValidationError | RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


async def json_body(request: Request, model: type[M], limit: int = DEFAULT_LIMIT) -> M:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind and not (kind == "application/json" or kind.endswith("+json")):
        raise UnsupportedContent(f"the body must be application/json, not {kind}")
    raw = await read_limited(request, limit)
    if not raw.strip():
        raise InvalidRequest("a JSON body is required")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise InvalidRequest(validation_message(exc)) from exc


def actor_of(request: Request) -> str:
    name = request.headers.get(USER_HEADER, "").strip()
    if not name:
        return "api"
    if not _ACTOR.match(name):
        raise InvalidRequest(f"{USER_HEADER} must be 1 to 128 letters, digits or . @ : + / - _")
    return name


def require_loopback(request: Request) -> None:
    host = request.client.host if request.client else ""
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise Forbidden(f"{request.url.path} is only open to loopback callers")
