"""One error shape for every JSON error the daemon returns.

    {"ok": false, "status": 400, "title": "Malformed payload", "error": "<why>"}

Built here only; ``tests/unit/test_api.py`` pins it.
"""

from __future__ import annotations

from fastapi.responses import JSONResponse

from appliance import errors

# Which HTTP status each of our exceptions means, most specific first.
STATUS: list[tuple[type[errors.TraceholdError], int, str]] = [
    (errors.PayloadTooLarge, 413, "Payload too large"),
    (errors.MalformedPayload, 400, "Malformed payload"),
    (errors.UnsupportedMediaType, 415, "Unsupported media type"),
    (errors.StoreUnavailable, 503, "Span store unavailable"),
    (errors.NotFound, 404, "Not found"),
    (errors.ContentTooLarge, 413, "Content too large"),
    (errors.InvalidRequest, 400, "Invalid request"),
    (errors.Conflict, 409, "Conflict"),
    (errors.Forbidden, 403, "Forbidden"),
    (errors.ConfigError, 400, "Invalid request"),
    (errors.TraceholdError, 500, "Internal error"),
]


def error_body(status: int, title: str, message: str) -> dict[str, object]:
    return {"ok": False, "status": status, "title": title, "error": message}


def error_response(status: int, title: str, message: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, title, message), status_code=status, headers=headers)


def from_exception(exc: errors.TraceholdError) -> JSONResponse:
    for cls, status, title in STATUS:
        if isinstance(exc, cls):
            # 503 asks the collector to retry the batch (it honours Retry-After).
            headers = {"Retry-After": "1"} if status == 503 else None
            return error_response(status, title, exc.message, headers)
    raise AssertionError("unreachable: TraceholdError is last")  # pragma: no cover
