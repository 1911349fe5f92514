"""The console's read API over a real DuckDB file: search, facets, graph, cost, storage."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from appliance.settings import Price, Settings
from appliance.store.spans import SpanStore
from tests.casework import app_for
from tests.genai_traces import MS, AgentTrace, export

PROTO = {"Content-Type": "application/x-protobuf"}


def api(store: SpanStore, url: str, settings: Settings | None = None,
        body: bytes | None = None, **params: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        app = app_for(store, settings=settings)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://daemon") as c:
            if body is not None:
                return await c.post(url, content=body, headers=PROTO)
            return await c.get(url, params=params)
    return asyncio.run(go())


def send(store: SpanStore, *traces: AgentTrace) -> None:
    assert api(store, "/v1/traces", body=export(list(traces)).SerializeToString()).status_code \
        == 200


def ids(r: httpx.Response) -> list[str]:
    return [t["trace_id"] for t in r.json()["traces"]]


def test_search_filters_and_row_shape(store: SpanStore) -> None:
    now = time.time_ns()
    ok = AgentTrace(service="a", model="gpt-4o", start_ns=now - 3000 * MS)
    failed = AgentTrace(service="b", model="claude-3-haiku", chat_error=True,
                        start_ns=now - 2000 * MS)
    old = AgentTrace(service="a", start_ns=now - 3 * 3600 * 10**9)
    send(store, ok, failed, old)
    assert ids(api(store, "/api/v1/traces")) == [failed.trace_hex, ok.trace_hex]  # newest first
    assert ids(api(store, "/api/v1/traces", service="a")) == [ok.trace_hex]
    assert ids(api(store, "/api/v1/traces", model="claude-3-haiku")) == [failed.trace_hex]
    assert ids(api(store, "/api/v1/traces", status="error")) == [failed.trace_hex]
    assert ids(api(store, "/api/v1/traces", status="unset")) == [ok.trace_hex]
    assert ids(api(store, "/api/v1/traces", status="ok")) == []
    assert ids(api(store, "/api/v1/traces", min_duration_ms=1799)) == [failed.trace_hex,
                                                                        ok.trace_hex]
    assert ids(api(store, "/api/v1/traces", min_duration_ms=1801)) == []
    assert ids(api(store, "/api/v1/traces", limit=1)) == [failed.trace_hex]
    start = (datetime.now(UTC) - timedelta(hours=4)).isoformat()
    assert ids(api(store, "/api/v1/traces", start=start, service="a")) == [ok.trace_hex,
                                                                           old.trace_hex]
    row = api(store, "/api/v1/traces", service="b").json()["traces"][0]
    assert row["root_name"] == "POST /ask" and row["service"] == "b"
    assert row["span_count"] == 6 and row["error"] is True and row["status"] == "error"
    assert row["duration_ms"] == pytest.approx(1800) and row["models"] == ["claude-3-haiku"]
    assert row["input_tokens"] == failed.input_tokens


@pytest.mark.parametrize(("params", "status"), [
    ({"status": "broken"}, 400), ({"limit": 0}, 400), ({"start": "yesterday"}, 400),
    ({"start": "2024-05-01T10:00:00"}, 400),  # no zone
    ({"start": "2030-01-01T00:00:00Z", "end": "2029-01-01T00:00:00Z"}, 400),
])
def test_bad_search_parameters_are_refused(store: SpanStore, params: dict[str, Any],
                                           status: int) -> None:
    r = api(store, "/api/v1/traces", **params)
    assert r.status_code == status, r.text
    if status == 400:
        assert r.json()["ok"] is False and r.json()["error"]


def test_trace_view_has_what_the_waterfall_and_content_panels_need(store: SpanStore) -> None:
    t = AgentTrace()
    send(store, t)
    spans = api(store, f"/api/v1/traces/{t.trace_hex}").json()["spans"]
    by_name = {s["name"]: s for s in spans}
    for s in spans:
        for key in ("start_time", "end_time", "duration_ms", "parent_span_id", "kind",
                    "status_code", "attributes", "events", "operation", "retrieved_chunks"):
            assert key in s
    assert by_name["POST /ask"]["parent_span_id"] is None
    assert by_name["retrieve docs"]["retrieved_chunks"] == [
        {"id": f"doc-{i}", "content": c, "score": s} for i, (c, s) in enumerate(t.chunks)]
    chat = by_name[f"chat {t.model}"]
    assert t.prompt in chat["input_messages"] and t.output in chat["output_messages"]
    assert chat["eval_scores"] == pytest.approx(t.evaluations)
    assert [e["name"] for e in chat["events"]] == ["gen_ai.evaluation.result"] * 2


def test_facets(store: SpanStore) -> None:
    send(store, AgentTrace(service="a", model="m1"), AgentTrace(service="b", model="m2"))
    f = api(store, "/api/v1/facets").json()
    assert f["services"] == ["a", "b"] and f["models"] == ["m1", "m2"]
    assert f["agents"] == ["planner", "researcher"] and f["tools"] == ["search_docs"]
    old = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    older = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    assert api(store, "/api/v1/facets", start=old, end=older).json()["services"] == []


def test_call_graph_edges_counts_and_error_rates(store: SpanStore) -> None:
    send(store, *[AgentTrace(service="api", tool_error=i < 2) for i in range(4)],
         AgentTrace(service="batch"))
    start = (datetime.now(UTC) - timedelta(minutes=10)).isoformat()
    g = api(store, "/api/v1/graph", start=start).json()
    edges = {(e["source"], e["target"]): e for e in g["edges"]}
    assert set(edges) == {("service:api", "agent:planner"), ("service:batch", "agent:planner"),
                          ("agent:planner", "agent:researcher"),
                          ("agent:researcher", "tool:search_docs")}
    tool = edges[("agent:researcher", "tool:search_docs")]
    assert (tool["calls"], tool["errors"], tool["error_rate"]) == (5, 2, pytest.approx(0.4))
    assert tool["rate_per_s"] == pytest.approx(5 / g["window_s"], rel=0.01)
    assert edges[("service:api", "agent:planner")]["calls"] == 4
    nodes = {n["id"]: n for n in g["nodes"]}
    assert nodes["agent:researcher"]["calls"] == 5  # the chat span inside it opens no node


def test_agent_calling_itself_is_a_self_edge(store: SpanStore) -> None:
    """invoke_agent X under agent X is a real call (agent loops must show)."""
    t = AgentTrace()
    spans = t.spans()
    researcher = next(s for s in spans if s.name == "invoke_agent researcher")
    planner = next(s for s in spans if s.name == "invoke_agent planner")
    researcher.attributes[1].value.string_value = "planner"  # gen_ai.agent.name
    researcher.name = "invoke_agent planner"
    assert researcher.parent_span_id == planner.span_id
    req = export([])
    rs = req.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = "loop"
    rs.scope_spans.add().spans.extend(spans)
    api(store, "/v1/traces", body=req.SerializeToString())
    edges = {(e["source"], e["target"]) for e in api(store, "/api/v1/graph").json()["edges"]}
    assert ("agent:planner", "agent:planner") in edges
    assert ("agent:planner", "tool:search_docs") in edges


def test_cost_prices_models_and_never_prices_unknown_at_zero(store: SpanStore,
                                                            tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, prices={"gpt-4o": Price(input_per_million=2.5,
                                                            output_per_million=10)})
    a = AgentTrace(service="a", model="gpt-4o-2024-08-06", input_tokens=1_000_000,
                   output_tokens=100_000)
    b = AgentTrace(service="a", model="gpt-4o", input_tokens=2_000, output_tokens=0)
    c = AgentTrace(service="b", model="mystery-7b", input_tokens=500, output_tokens=50)
    send(store, a, b, c)
    r = api(store, "/api/v1/cost", settings=s).json()
    assert r["totals"]["cost"] == pytest.approx(2.5 + 1.0 + 0.005)
    assert r["totals"]["requests"] == 3 and r["totals"]["calls"] == 3
    assert r["totals"]["unpriced_input_tokens"] == 500
    assert r["unpriced_models"] == ["mystery-7b"]
    models = {m["model"]: m for m in r["by_model"]}
    assert models["gpt-4o-2024-08-06"]["price_key"] == "gpt-4o"
    assert models["mystery-7b"]["cost"] is None and models["mystery-7b"]["priced"] is False
    assert models["mystery-7b"]["input_tokens"] == 500
    services = {x["service"]: x for x in r["by_service"]}
    assert services["a"]["cost"] == pytest.approx(3.505) and services["b"]["cost"] is None
    assert [q["trace_id"] for q in r["requests"]][:2] == [a.trace_hex, b.trace_hex]
    assert r["requests"][2]["cost"] is None
    day = r["by_day"][0]
    assert day["day"] == datetime.now(UTC).date().isoformat() or len(r["by_day"]) == 2
    only_b = api(store, "/api/v1/cost", settings=s, service="b").json()
    assert only_b["totals"]["cost"] is None and only_b["totals"]["calls"] == 1


def test_storage_report(store: SpanStore, tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, span_retention_days=7)
    (tmp_path / "prometheus").mkdir()
    (tmp_path / "prometheus" / "chunk").write_bytes(os.urandom(4096))
    send(store, AgentTrace())
    r = api(store, "/api/v1/storage", settings=s).json()
    assert r["spans"] == 6 and r["traces"] == 1
    assert r["ingest"]["spans_per_s_1m"] == pytest.approx(6 / 60)
    assert r["disk_bytes"]["span_store"] > 0 and r["disk_bytes"]["prometheus"] == 4096
    assert r["disk_bytes"]["victoriametrics"] is None
    assert r["retention"]["span_retention_days"] == 7
