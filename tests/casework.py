"""Helpers for the casework tests: the daemon API in-process over a real DuckDB file."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from appliance.api.app import create_app
from appliance.casework.services import Records, records_for
from appliance.settings import Settings
from appliance.store.spans import SpanStore


def open_records(tmp_path: Path, **settings: Any) -> Records:
    store = SpanStore(tmp_path / "spans.duckdb")
    return records_for(store, Settings(data_dir=tmp_path, **settings))


def call(store: SpanStore, method: str, url: str, client: tuple[str, int] = ("127.0.0.1", 5),
         **kw: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(store), client=client)
        async with httpx.AsyncClient(transport=transport, base_url="http://daemon") as c:
            return await c.request(method, url, **kw)
    return asyncio.run(go())


def case_body(**extra: Any) -> dict[str, Any]:
    return {"service": "rag-api", "failure_type": "hallucination",
            "signature": "eval:groundedness:drop", "trace_ids": ["ab" * 16],
            "signals": [{"name": "groundedness", "value": 0.41, "baseline": 0.88,
                         "window": "15m"}], "detected_by": "eval-drop", **extra}


def audit_count(store: SpanStore) -> int:
    return int(store.read("SELECT count(*) AS n FROM audit_log")[0]["n"])
