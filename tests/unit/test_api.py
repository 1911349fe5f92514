"""The daemon API in-process (ASGI transport, no socket) over a real DuckDB file."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from appliance.api.errors import error_body
from appliance.errors import MalformedPayload
from appliance.ingest.limits import IngestLimits
from appliance.store.spans import SpanStore
from tests.casework import app_for
from tests.otlp_payloads import export_request

PROTO = {"Content-Type": "application/x-protobuf"}


def call(store: SpanStore, method: str, url: str, limits: IngestLimits | None = None,
         **kw: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app_for(store, limits))
        async with httpx.AsyncClient(transport=transport, base_url="http://daemon") as c:
            return await c.request(method, url, **kw)
    return asyncio.run(go())


def test_error_shape_is_pinned() -> None:
    assert error_body(MalformedPayload("why"), "r1") == {
        "ok": False, "status": 400, "type": "malformed_payload", "title": "Malformed payload",
        "error": "why", "request_id": "r1"}


def test_ingest_protobuf_then_read_back(store: SpanStore) -> None:
    req = export_request("svc-a", 3)
    r = call(store, "POST", "/v1/traces", content=req.SerializeToString(), headers=PROTO)
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-protobuf"
    assert not ExportTraceServiceResponse.FromString(r.content).HasField("partial_success")
    assert call(store, "GET", "/api/v1/count", params={"service": "svc-a"}).json()["spans"] == 3
    trace_id = req.resource_spans[0].scope_spans[0].spans[0].trace_id.hex()
    spans = call(store, "GET", f"/api/v1/traces/{trace_id}").json()["spans"]
    assert spans[0]["request_model"] == "m1" and spans[0]["input_tokens"] == 800
    stats = call(store, "GET", "/api/v1/stats").json()
    assert stats["spans"] == 3 and stats["last_ingest"] is not None
    # the same batch again (at-least-once delivery) stores nothing new
    call(store, "POST", "/v1/traces", content=req.SerializeToString(), headers=PROTO)
    assert call(store, "GET", "/api/v1/stats").json()["spans"] == 3


def test_ingest_json_gzip(store: SpanStore) -> None:
    doc = {"resourceSpans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "json-svc"}}]},
        "scopeSpans": [{"spans": [{
            "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
            "name": "chat", "kind": 3, "startTimeUnixNano": "1700000000000000000",
            "endTimeUnixNano": "1700000001000000000",
            "attributes": [{"key": "gen_ai.request.model", "value": {"stringValue": "j1"}}],
        }, {"traceId": "", "spanId": "", "name": "no ids"}]}]}]}
    r = call(store, "POST", "/v1/traces", content=gzip.compress(json.dumps(doc).encode()),
             headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert r.status_code == 200, r.text
    assert r.json()["partialSuccess"]["rejectedSpans"] == 1
    span = call(store, "GET", "/api/v1/traces/5b8efff798038103d269b633813fc60c").json()["spans"][0]
    assert (span["service_name"], span["request_model"], span["kind"]) == ("json-svc", "j1",
                                                                           "client")


@pytest.mark.parametrize(("body", "headers", "status", "title"), [
    (b"\x0a\xff\xff\xff\xff\x0f", PROTO, 400, "Malformed payload"),
    (b"{", {"Content-Type": "application/json"}, 400, "Malformed payload"),
    (b"x", {"Content-Type": "text/plain"}, 415, "Unsupported media type"),
    (b"x", {**PROTO, "Content-Encoding": "br"}, 415, "Unsupported media type"),
    (b"x" * 2048, PROTO, 413, "Payload too large"),
])
def test_bad_ingest_gets_one_error_shape(store: SpanStore, body: bytes,
                                         headers: dict[str, str], status: int,
                                         title: str) -> None:
    r = call(store, "POST", "/v1/traces", IngestLimits(max_body_bytes=1024), content=body,
             headers=headers)
    assert r.status_code == status
    assert r.json()["ok"] is False and r.json()["status"] == status
    assert r.json()["title"] == title and r.json()["error"]
    assert store.count() == 0


def test_store_failure_is_retryable(store: SpanStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> int:
        from appliance.errors import StoreUnavailable
        raise StoreUnavailable("disk full")
    monkeypatch.setattr(store, "insert", broken)
    r = call(store, "POST", "/v1/traces", content=export_request("s", 1).SerializeToString(),
             headers=PROTO)
    assert r.status_code == 503 and r.headers["retry-after"] == "1"


def test_any_store_failure_of_an_insert_is_retryable_and_logged(
        store: SpanStore, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A 500 makes the collector drop the batch for good; an insert that failed committed
    nothing, so whatever the store's error, the answer is 503 (retry) and the log says
    why."""
    def broken(*_: object) -> int:
        from appliance.errors import StoreError
        raise StoreError("span store failed: TransactionException: write-write conflict")
    monkeypatch.setattr(store, "insert", broken)
    with caplog.at_level("ERROR", logger="tracehold.api.ingest"):
        r = call(store, "POST", "/v1/traces",
                 content=export_request("s", 3).SerializeToString(), headers=PROTO)
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert "write-write conflict" in r.json()["error"]
    assert "batch of 3 spans failed" in caplog.text and "write-write conflict" in caplog.text


def test_not_found_and_filters_are_parameters(store: SpanStore) -> None:
    r = call(store, "GET", "/api/v1/traces/00000000000000000000000000000000")
    assert r.status_code == 404 and r.json()["title"] == "Not found"
    assert call(store, "GET", "/nope").json()["status"] == 404
    evil = "x' OR 1=1; DROP TABLE spans; --"
    assert call(store, "GET", "/api/v1/spans", params={"service": evil}).json()["spans"] == []
    assert call(store, "GET", "/api/v1/count", params={"service": evil}).json()["spans"] == 0
    assert store.count() == 0  # the table is still there


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 24 MiB tmpfs: a real full disk for DuckDB to run into."""
    import subprocess
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.root  # mounts a tmpfs
def test_full_disk_answers_503_and_keeps_committed_spans(tiny_disk: Path) -> None:
    store = SpanStore(tiny_disk / "spans.duckdb")
    statuses, committed = [], 0
    for _ in range(200):
        req = export_request("full", 500, big=True).SerializeToString()
        r = call(store, "POST", "/v1/traces", content=req, headers=PROTO)
        statuses.append(r.status_code)
        if r.status_code != 200:
            break
        committed += 500
    assert statuses[-1] == 503, statuses
    assert call(store, "GET", "/v1/traces").status_code == 405  # still answering
    assert committed > 0
    try:
        assert store.count() == committed
    finally:
        store.close()
    # Nothing committed was lost: a fresh open of the file finds every span.
    con = duckdb.connect(str(tiny_disk / "spans.duckdb"), read_only=True)
    assert con.execute("select count(*) from spans").fetchone() == (committed,)
    con.close()


def test_wrongly_typed_parameters_get_the_one_error_shape(store: SpanStore) -> None:
    r = call(store, "GET", "/api/v1/spans", params={"limit": "abc"})
    assert r.status_code == 400
    body = r.json()
    assert set(body) == {"ok", "status", "type", "title", "error", "request_id"}
    assert "limit" in body["error"]
