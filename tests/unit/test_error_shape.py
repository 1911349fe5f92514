"""One error shape for every API error (STYLE.md 5 and 14): every route is sent bad
input (a wrong method, a body that is not JSON, an oversized body, an unknown id, a
wrongly typed parameter) and every answer has the same fields; an unexpected exception
is a 500 in that shape with a request id and no stack trace; the CLI maps ``type``
back to the same exception class."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from appliance import errors
from appliance.api import routes
from appliance.api.app import create_app
from appliance.cli.client import error_from
from appliance.ingest.limits import IngestLimits
from appliance.records import Records
from appliance.settings import Settings
from appliance.store.spans import SpanStore
from tests.casework import app_for

SHAPE = {"ok", "status", "type", "title", "error", "request_id"}
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")
SERVED: dict[str, set[str]] = {}
for _r in routes.ROUTES:
    SERVED.setdefault(_r.path, set()).add(_r.method)


def _concrete(path: str) -> str:
    return path.replace("{case_id}", "case-nope").replace("{trace_id}", "0" * 32)


def send(store: SpanStore, method: str, url: str, **kw: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        app = app_for(store, IngestLimits(max_body_bytes=1024 * 1024))
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5))
        async with httpx.AsyncClient(transport=transport, base_url="http://daemon") as c:
            return await c.request(method, url, **kw)
    return asyncio.run(go())


def assert_shape(r: httpx.Response, status: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = r.json()
    assert set(body) == SHAPE, body
    assert body["ok"] is False and body["status"] == r.status_code and body["error"]
    assert errors.from_type(body["type"], r.status_code).status == r.status_code
    assert body["request_id"] == r.headers["x-request-id"]
    if status is not None:
        assert r.status_code == status, body
    return body


@pytest.mark.parametrize("path", sorted(SERVED))
def test_wrong_method_is_405_in_the_shape(store: SpanStore, path: str) -> None:
    method = next(m for m in METHODS if m not in SERVED[path])
    body = assert_shape(send(store, method, _concrete(path)), 405)
    assert body["type"] == "method_not_allowed"


# /check and /rca/run take no body: they never read one, whatever is sent
BODY_ROUTES = [r for r in routes.ROUTES if r.method in ("POST", "PUT")
               and not r.path.endswith(("/check", "/rca/run"))]


@pytest.mark.parametrize("route", BODY_ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_a_body_that_is_not_json_is_refused_in_the_shape(store: SpanStore,
                                                         route: routes.Route) -> None:
    r = send(store, route.method, _concrete(route.path), content=b"\xff{not json",
             headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500
    assert_shape(r)
    r = send(store, route.method, _concrete(route.path), content=b"<a/>",
             headers={"Content-Type": "text/xml"})
    assert r.status_code in (404, 415)  # an unknown case may be named before the body
    assert_shape(r)


@pytest.mark.parametrize("route", BODY_ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_an_oversized_body_is_413_in_the_shape(store: SpanStore, route: routes.Route) -> None:
    big = b"{" + b" " * (3 * 1024 * 1024) + b"}"  # past every route's limit (ingest: 1 MiB)
    r = send(store, route.method, _concrete(route.path), content=big,
             headers={"Content-Type": "application/json"})
    assert_shape(r, 413)


@pytest.mark.parametrize("route", [r for r in routes.ROUTES if "{" in r.path],
                         ids=lambda r: f"{r.method} {r.path}")
def test_an_unknown_id_is_404_or_400_in_the_shape(store: SpanStore, route: routes.Route) -> None:
    r = send(store, route.method, _concrete(route.path), json={})
    assert r.status_code in (400, 404)  # a body is checked before the case is looked up
    assert_shape(r)


TYPED = [r for r in routes.ROUTES if r.method == "GET" and r.path in (
    "/api/v1/spans", "/api/v1/traces", "/api/v1/cases", "/api/v1/changes", "/api/v1/audit",
    "/api/v1/audit/heads", "/api/v1/cost")]


@pytest.mark.parametrize("route", TYPED, ids=lambda r: r.path)
def test_a_wrongly_typed_parameter_is_400_naming_it(store: SpanStore,
                                                    route: routes.Route) -> None:
    body = assert_shape(send(store, "GET", route.path, params={"limit": "abc"}), 400)
    assert "limit" in body["error"] and body["type"] == "invalid_request"


def test_no_route_is_404_in_the_shape(store: SpanStore) -> None:
    assert assert_shape(send(store, "GET", "/nope"), 404)["type"] == "not_found"


def test_unexpected_exception_is_500_with_request_id_and_no_trace(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = SpanStore(tmp_path / "spans.duckdb")
    app = create_app(Records.open(store, Settings(data_dir=tmp_path)))

    def boom(*_: object, **__: object) -> int:
        raise RuntimeError("secret internals at /srv/x.py line 3")

    store.count = boom  # type: ignore[method-assign]  # a fault inside a handler

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://daemon") as c:
            return await c.get("/api/v1/stats", headers={"x-request-id": "req-42"})

    with caplog.at_level("ERROR", logger="tracehold.api"):
        r = asyncio.run(go())
    store.close()
    body = r.json()
    assert r.status_code == 500 and set(body) == SHAPE
    assert body["type"] == "internal_error" and body["request_id"] == "req-42"
    assert "secret internals" not in r.text and "Traceback" not in r.text
    assert any("req-42" in rec.getMessage() and rec.exc_info for rec in caplog.records)


@pytest.mark.parametrize(("status", "type_", "cls"), [
    (413, "payload_too_large", errors.PayloadTooLarge),
    (413, "content_too_large", errors.ContentTooLarge),
    (415, "unsupported_media_type", errors.UnsupportedMediaType),
    (415, "unsupported_content", errors.UnsupportedContent),
    (500, "internal_error", errors.InternalError),
    (409, "conflict", errors.Conflict),
    (404, None, errors.NotFound),  # a body without a type (a proxy's) falls back on status
])
def test_cli_maps_the_type_back_to_the_same_class(status: int, type_: str | None,
                                                  cls: type[errors.TraceholdError]) -> None:
    body = {"error": "why"} if type_ is None else {"error": "why", "type": type_}
    exc = error_from(httpx.Response(status, json=body))
    assert type(exc) is cls and "why" in exc.message


def test_every_error_class_has_its_own_type() -> None:
    classes = [errors.TraceholdError]
    for c in classes:
        classes.extend(c.__subclasses__())
    types = [c.type for c in classes]
    assert len(types) == len(set(types))
    assert all(re.fullmatch(r"[a-z_]+", t) for t in types)
