"""GET /api/v1/traces/{trace_id}/evaluations: the built-in scores of a trace's spans, with
who made them, read through the daemon (the one process that has the database open)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from appliance.demo.replay import replay
from appliance.evals.store import EvalStore, Evaluation
from appliance.store.spans import SpanStore
from tests.casework import app_for


def _get(store: SpanStore, path: str) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app_for(store))
        async with httpx.AsyncClient(transport=transport, base_url="http://daemon") as c:
            return await c.get(path)
    return asyncio.run(go())


def test_a_trace_s_built_in_scores_with_their_source(tmp_path: Path) -> None:
    store = SpanStore(tmp_path / "spans.duckdb")
    try:
        replay(store, tmp_path, 5, 1.0, seed=1, app_scores=False)
        span = store.read("SELECT trace_id, span_id FROM spans WHERE operation = 'chat' "
                          "ORDER BY span_id LIMIT 1")[0]
        path = f"/api/v1/traces/{span['trace_id'].upper()}/evaluations"
        unscored = _get(store, path)
        assert unscored.status_code == 200 and unscored.json()["evaluations"] == []

        EvalStore(store.db).put([
            Evaluation(span["trace_id"], span["span_id"], "groundedness", 0.25,
                       "tracehold/groundedness-1", detail={"sentences": [0.25]}),
            Evaluation(span["trace_id"], span["span_id"], "refusal", None,
                       "tracehold/refusal-1", reason="empty output")])
        body = _get(store, path).json()
        assert body["trace_id"] == span["trace_id"]
        got = {e["name"]: e for e in body["evaluations"]}
        assert got["groundedness"]["score"] == 0.25
        assert got["groundedness"]["source"] == "tracehold"
        assert got["groundedness"]["evaluator_version"] == "tracehold/groundedness-1"
        assert got["groundedness"]["detail"] == {"sentences": [0.25]}
        assert got["refusal"]["score"] is None and got["refusal"]["reason"] == "empty output"

        unknown = _get(store, f"/api/v1/traces/{'0' * 32}/evaluations")
        assert unknown.status_code == 404 and unknown.json()["type"] == "not_found"
    finally:
        store.close()
